"""The HTTP side of DICOMweb: credentials, the connection (retries, timeout, TLS, a cap on concurrent requests
per executor) and one-line failure reasons without URLs or credentials.

Shared by the reader, the writer and the SEG/SR header retrieval in
:mod:`bigdl_medimg.io.dicomweb`.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field

from ..errors import ConfigError, MedImgError

__all__ = ["Credentials", "resolve_credentials", "load_credentials", "DicomWebConnection", "DicomWebError",
           "RequestSlots", "http_reason", "timed_out", "ENV_USER", "ENV_PASSWORD", "ENV_TOKEN", "ENV_CA_BUNDLE"]

ENV_USER, ENV_PASSWORD, ENV_TOKEN = ("BIGDL_MEDIMG_DICOMWEB_USER", "BIGDL_MEDIMG_DICOMWEB_PASSWORD",
                                     "BIGDL_MEDIMG_DICOMWEB_TOKEN")
ENV_CA_BUNDLE = "BIGDL_MEDIMG_DICOMWEB_CA_BUNDLE"


class DicomWebError(MedImgError):
    """A DICOMweb request failed (the query on the driver; retrievals become row errors)."""


@dataclass(frozen=True)
class Credentials:
    """HTTP basic (``user``, ``password``) or a bearer ``token``; never shown by ``repr``/``str``."""

    user: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    #: the CA bundle that verifies the server's TLS certificate (an internal authority), if not the system's
    ca_bundle: str = ""

    def __str__(self) -> str:
        return "Credentials(bearer token)" if self.token else f"Credentials(basic, user set: {bool(self.user)})"

    __repr__ = __str__


def resolve_credentials(credentials: Credentials | str | None) -> Credentials | None:
    """Credentials as given, read from a file path, or (None) from the environment."""
    if isinstance(credentials, Credentials):
        return credentials
    return load_credentials(credentials)


def load_credentials(path: str | None = None) -> Credentials | None:
    """Credentials from ``path`` (JSON: ``user``/``password`` or ``token``, optionally ``ca_bundle``), else from
    the environment (and ``BIGDL_MEDIMG_DICOMWEB_CA_BUNDLE``), else None."""
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"DICOMweb credentials file {path}: {type(exc).__name__}") from None
        if not isinstance(data, dict) or not (data.get("token") or (data.get("user") and "password" in data)
                                              or data.get("ca_bundle")):
            raise ConfigError(f"DICOMweb credentials file {path}: needs 'user' and 'password', or 'token' "
                              "(and/or 'ca_bundle')")
        return Credentials(str(data.get("user", "")), str(data.get("password", "")), str(data.get("token", "")),
                           str(data.get("ca_bundle", "")))
    ca = os.environ.get(ENV_CA_BUNDLE, "")
    if os.environ.get(ENV_TOKEN):
        return Credentials(token=os.environ[ENV_TOKEN], ca_bundle=ca)
    if os.environ.get(ENV_USER):
        return Credentials(os.environ[ENV_USER], os.environ.get(ENV_PASSWORD, ""), ca_bundle=ca)
    return Credentials(ca_bundle=ca) if ca else None


class RequestSlots:
    """At most ``n`` requests at once to one server from one executor, across its Python worker processes.

    Spark runs each task of an executor in a Python worker process of its own
    (forked by the executor's pyspark daemon), so a lock inside one process
    caps nothing.  The slots are ``n`` lock files (``flock``) in the temp
    folder, named by the server's address and the daemon's pid (the workers'
    parent: one per executor); a request holds one for its duration, and a
    worker that finds them all taken waits.
    """

    def __init__(self, where: str, n: int):
        import hashlib
        import tempfile
        from pathlib import Path

        key = hashlib.sha1(f"{where}|{os.getppid()}".encode()).hexdigest()[:16]
        self.folder = Path(tempfile.gettempdir()) / f"bigdl-medimg-dicomweb-{key}"
        self.n = max(1, int(n))
        self._held = threading.local()

    def __enter__(self):
        import random
        import time

        try:
            import fcntl
        except ImportError:  # not on a POSIX executor: no cap across processes
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        order = list(range(self.n))
        while True:
            random.shuffle(order)
            for i in order:
                f = open(self.folder / f"slot-{i}", "a")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    f.close()
                    continue
                self._held.f = f
                return self
            time.sleep(0.02)

    def __exit__(self, *exc):
        f = getattr(self._held, "f", None)
        if f is not None:
            f.close()  # releases the lock
            self._held.f = None
        return False


def _session_class():
    """A ``requests.Session`` whose CA bundle wins over the environment's: requests lets ``REQUESTS_CA_BUNDLE``
    or ``CURL_CA_BUNDLE`` (often set machine-wide) replace a session's ``verify`` (psf/requests#3829)."""
    import requests

    class Session(requests.Session):
        ca_bundle = ""

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if self.ca_bundle and verify is None:
                settings["verify"] = self.ca_bundle
            return settings

    return Session


@dataclass(frozen=True)
class DicomWebConnection:
    """Where and how to reach a DICOMweb server; picklable, shipped to the executors with the tasks."""

    url: str
    credentials: Credentials | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 0.5
    max_concurrent: int = 4

    def client(self):
        """A ``dicomweb_client.DICOMwebClient`` on a session with retries, auth and TLS settings."""
        from dicomweb_client import DICOMwebClient
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        session = _session_class()()
        retry = Retry(total=self.retries, connect=self.retries, read=self.retries, status=self.retries,
                      backoff_factor=self.backoff, status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=None, respect_retry_after_header=True, raise_on_status=False)
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=max(1, self.max_concurrent))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        c = self.credentials
        ca_bundle = self.ca_bundle or (c.ca_bundle if c is not None else "")
        if ca_bundle:
            session.verify = session.ca_bundle = ca_bundle
        if c is not None and c.token:
            session.headers["Authorization"] = f"Bearer {c.token}"
        elif c is not None and c.user:
            session.auth = (c.user, c.password)
        client = DICOMwebClient(self.url, session=session, timeout=self.timeout)
        # one retry policy, the session's: the client's own would retry a refused connection for ~30 s more
        client.set_http_retry_params(retry=False)
        return client

    def where(self) -> str:
        """The server's address for messages: scheme, host and port (no path, no credentials)."""
        from urllib.parse import urlsplit

        u = urlsplit(self.url)
        return f"{u.scheme}://{u.hostname}" + (f":{u.port}" if u.port else "")


def timed_out(exc: BaseException) -> bool:
    """Whether a failed request ran out of time: under a retry policy requests reports a read timeout as a
    ConnectionError wrapping urllib3's MaxRetryError wrapping its ReadTimeoutError."""
    import requests
    import urllib3

    seen: BaseException | None = exc
    for _ in range(6):
        if isinstance(seen, urllib3.exceptions.NewConnectionError):  # a ConnectTimeoutError by inheritance only
            return False
        if isinstance(seen, (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)):
            return True
        nested = getattr(seen, "reason", None)
        if nested is None and seen is not None and seen.args and isinstance(seen.args[0], BaseException):
            nested = seen.args[0]
        if not isinstance(nested, BaseException):
            return False
        seen = nested
    return False


def http_reason(exc: BaseException, conn: DicomWebConnection) -> str:
    """One line for a failed request: the status, or what kept it from being answered (no URL, no credentials)."""
    import requests

    resp = getattr(exc, "response", None)
    if resp is not None and getattr(resp, "status_code", None):
        status = resp.status_code
        hint = {401: "the credentials were refused", 403: "access denied for these credentials",
                404: "not found on the server", 429: "too many requests (retried)",
                503: "service unavailable (retried)"}.get(status, resp.reason or "")
        return f"HTTP {status}" + (f" ({hint})" if hint else "")
    if timed_out(exc):
        return f"no answer within {conn.timeout:g} s"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut short (connection lost mid-transfer)"
    if isinstance(exc, requests.exceptions.SSLError):
        return (f"TLS verification of {conn.where()} failed (a certificate from an internal authority needs "
                "its CA bundle: ca_bundle=, or ca_bundle in the credentials file)")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.RetryError)):
        return f"cannot reach {conn.where()}"
    return type(exc).__name__
