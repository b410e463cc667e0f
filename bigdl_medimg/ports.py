"""A free TCP port, for the servers the library and its tests start (Orthanc, torch's rendezvous, MLflow,
a standalone Spark cluster)."""
from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` now (``""``: on every interface, for a port other machines
    connect to).  Another process may take it before the caller binds it; callers start their server at once."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
