"""Is storage there? A cheap probe the CLI makes before its real work.

The storage SDKs retry an unreachable endpoint for minutes (the service's retry policy, which
jobs depend on, see :mod:`shared.storage`); a user who forgot ``parallelrun up`` should hear so in
about two seconds instead. So the CLI first opens one TCP connection to each endpoint it will use,
with a short timeout, and says which one did not answer and what to do.
"""

from __future__ import annotations

import socket
import urllib.parse

from shared.errors import OperatorError
from shared.storage import Storage

PROBE_TIMEOUT_S = 2.0


class StorageUnreachable(OperatorError):
    """No storage answers at an endpoint the CLI needs."""


def endpoint(url: str) -> tuple[str, int]:
    """(host, port) of a service URL, the scheme's port when it names none (pure)."""
    parsed = urllib.parse.urlsplit(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.hostname or "", port


def advice(host: str, port: int) -> str:
    """What a user whose storage did not answer at ``host:port`` should do (pure)."""
    where = f"{host}:{port}"
    if host in ("127.0.0.1", "localhost", "::1"):
        return (f"no storage at {where}: start it with `parallelrun up`, or set "
                "AzureWebJobsStorage")
    return (f"no storage at {where}: check the network and AzureWebJobsStorage (or "
            "AzureWebJobsStorage__accountName)")


def probe(storage: Storage, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise :class:`StorageUnreachable` unless the blob, queue and table endpoints accept a
    connection within ``timeout_s`` each (building the clients makes no request)."""
    urls = (storage.blob_service.url, storage.queue_service.url, storage.table_service.url)
    seen: set[tuple[str, int]] = set()
    for url in urls:
        host, port = endpoint(url)
        if (host, port) in seen:
            continue
        seen.add((host, port))
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                pass
        except OSError:
            raise StorageUnreachable(advice(host, port)) from None
