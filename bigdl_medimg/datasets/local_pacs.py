"""A throw-away local PACS: Orthanc with its DICOMweb plugin on 127.0.0.1, basic auth on, temporary storage.

For trying ``read_dicomweb`` / ``write_dicomweb`` without a hospital's PACS,
and for the tests and benchmarks.  It needs Debian's ``orthanc`` and
``orthanc-dicomweb`` packages (``make test`` installs them).
"""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

from ..errors import ConfigError
from ..ports import free_port

__all__ = ["LocalOrthanc", "ORTHANC", "DICOMWEB_PLUGIN", "orthanc_available"]

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def orthanc_available() -> bool:
    """Whether Orthanc and its DICOMweb plugin are installed."""
    return Path(ORTHANC).exists() and Path(DICOMWEB_PLUGIN).exists()


class LocalOrthanc:
    """Start Orthanc under ``root`` (config, storage, log); ``url`` is its DICOMweb root. Stop with :meth:`stop`."""

    def __init__(self, root, start_timeout: float = 60.0):
        if not orthanc_available():
            raise ConfigError("Orthanc with its DICOMweb plugin is not installed "
                              "(Debian/Ubuntu: apt-get install orthanc orthanc-dicomweb; `make test` does it)")
        self.root, self.port = Path(root), free_port()
        self.user, self.password = "bigdl", secrets.token_hex(8)
        self.root.mkdir(parents=True, exist_ok=True)
        cfg = {"Name": "bigdl-medimg-local", "StorageDirectory": str(self.root / "db"),
               "IndexDirectory": str(self.root / "db"), "HttpPort": self.port, "DicomServerEnabled": False,
               "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
               "RegisteredUsers": {self.user: self.password}, "Plugins": [DICOMWEB_PLUGIN],
               "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True}}
        (self.root / "orthanc.json").write_text(json.dumps(cfg))
        self._log = open(self.root / "orthanc.log", "w")
        self.proc = subprocess.Popen([ORTHANC, str(self.root / "orthanc.json")], stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/dicom-web"
        deadline = time.time() + start_timeout
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{self.port}/system", headers=self._auth_header())
                with urllib.request.urlopen(req, timeout=2):
                    break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError("Orthanc did not start: " + (self.root / "orthanc.log").read_text()[-2000:])
                time.sleep(0.3)

    def _auth_header(self) -> dict:
        return {"Authorization": "Basic " + b64encode(f"{self.user}:{self.password}".encode()).decode()}

    @property
    def credentials(self):
        """The :class:`~bigdl_medimg.io.dicomweb.Credentials` of this server's one user."""
        from ..io.dicomweb import Credentials

        return Credentials(self.user, self.password)

    def store(self, paths, batch: int = 50) -> None:
        """Load DICOM files through STOW-RS, as a user loading a PACS would."""
        import pydicom

        from ..io.dicomweb import DicomWebConnection

        client = DicomWebConnection(self.url, self.credentials).client()
        paths = [str(p) for p in paths]
        for i in range(0, len(paths), batch):
            client.store_instances([pydicom.dcmread(p) for p in paths[i:i + batch]])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()
