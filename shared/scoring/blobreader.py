"""Blob reads over plain HTTP: the fast path of input downloads and of tabular pieces.

A mini-batch of small files is dominated by the client's cost per request, not by bytes: through
the SDK a GET of a 400-byte blob costs ~2.4 ms of client CPU (pipeline policies, signing, the
requests library), a GET on a kept-alive ``http.client`` connection ~0.3 ms. So input downloads
skip the SDK: each thread keeps one connection per storage endpoint and sends
``GET /<container>/<blob>?<SAS>``, authorised by a read-only container SAS made once per container
and renewed before it expires:

* with an account key (connection string, Azurite): a service SAS signed with the key;
* with a managed identity: a *user delegation* SAS, signed with a delegation key the SDK obtains
  with the identity's token (Storage Blob Data Reader is enough; nothing secret is configured);
* with a connection string that carries a SAS: that SAS.

Tabular pieces (:mod:`shared.scoring.tables`) read byte ranges the same way (:meth:`BlobReader.read_range`,
``Range: bytes=a-b``): each answer's ``Content-Range`` also gives the blob's size, so a piece never
asks for the blob's properties.

Everything else - listing, writes, the ledger - stays on the SDK. Transient faults (408, 429, 5xx,
a dropped connection, a stalled answer past ``storage_timeout_s``) are retried with the same
backoff as the SDK clients (:data:`BACKOFF`); 404 raises
:class:`BlobNotFound` (the SDK's ``ResourceNotFoundError`` without importing the SDK).
"""

from __future__ import annotations

import datetime as dt
import http.client
import logging
import select
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from shared.backoff import BACKOFF, delay_s

log = logging.getLogger("parallelrun.blobreader")

SAS_LIFETIME = dt.timedelta(hours=1)
SAS_RENEW_BEFORE = dt.timedelta(minutes=10)
TRANSIENT = {408, 429, 500, 502, 503, 504}
CHUNK = 1 << 20
T = TypeVar("T")
_backoff = delay_s   # the wait before each retry (a module global: tests shorten it)


class BlobNotFound(FileNotFoundError):
    """The blob does not exist (HTTP 404)."""


class BlobReadError(OSError):
    """A read that failed for good: a status that is not transient, retries used up, or an answer
    that cannot be used."""


@dataclass
class _Sas:
    token: str
    expires: dt.datetime


class BlobReader:
    """Reads blobs, whole or by byte range, of one storage account; thread-safe, one connection
    per thread.

    :meth:`shared.storage.Storage.blob_reader` makes and renews its own SAS tokens; :meth:`with_tokens` uses tokens made
    elsewhere, so a scoring process reads its tables with this module and ``http.client`` alone
    (importing the storage SDKs would cost it ~0.4 s of CPU at every start)."""

    def __init__(self, url: str, api_version: str, timeout_s: float,
                 make_token: Callable[[str, dt.datetime], str], cache_tokens: bool = True) -> None:
        self.url = url
        parts = urllib.parse.urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._base = parts.path.rstrip("/")       # "/devstoreaccount1" on Azurite, "" on Azure
        self._timeout = timeout_s
        self._make_token = make_token
        self._sas: dict[str, _Sas] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self.api_version = api_version
        self._cache_tokens = cache_tokens   # False: make_token is a cheap lookup of given tokens

    @classmethod
    def with_tokens(cls, url: str, api_version: str, timeout_s: float,
                    tokens: dict[str, str]) -> BlobReader:
        """A reader of the containers in ``tokens`` (container -> SAS query string), which the
        caller may update: each request uses the token there at that moment."""
        def token(container: str, now: dt.datetime) -> str:
            if container not in tokens:
                raise PermissionError(f"no read token for container {container!r}")
            return tokens[container]
        return cls(url, api_version, timeout_s, token, cache_tokens=False)

    def read_grant(self, containers: list[str]) -> dict[str, Any]:
        """What :meth:`with_tokens` needs to read ``containers`` for the next ``SAS_RENEW_BEFORE``
        (a plain dict, to pass to another process)."""
        return {"url": self.url, "api_version": self.api_version, "timeout_s": self._timeout,
                "tokens": {c: self._token(c) for c in containers}}

    # -- authorisation ---------------------------------------------------------------------
    def _token(self, container: str, renew: bool = False) -> str:
        now = dt.datetime.now(dt.UTC)
        if not self._cache_tokens:
            return self._make_token(container, now)
        with self._lock:
            sas = self._sas.get(container)
            if sas is None or renew or sas.expires - now < SAS_RENEW_BEFORE:
                sas = self._sas[container] = _Sas(self._make_token(container, now),
                                                  now + SAS_LIFETIME)
            return sas.token

    # -- transport -------------------------------------------------------------------------
    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh or closed_by_server(conn):
            if conn is not None:
                conn.close()
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self._timeout)
            conn.response_class = LeanResponse
        return conn

    def read_into(self, container: str, name: str, fh: IO[bytes]) -> int:
        """Write blob ``container/name`` into ``fh``; returns its size. Retries transient faults."""
        start = fh.tell()

        def reset() -> None:   # every attempt starts over where fh was
            fh.seek(start)
            fh.truncate()

        return self._get(container, name, {}, (200,), lambda response: self._copy(response, fh),
                         before_attempt=reset)

    def read_range(self, container: str, name: str, offset: int, length: int) -> tuple[bytes, int]:
        """Bytes ``[offset, offset + length)`` of blob ``container/name``, and the blob's size.

        The range is cut short at the end of the blob, and is empty from the end on, so a caller
        that does not know the size yet learns it from its first read instead of asking for it
        (a request of its own). Retries transient faults like :meth:`read_into`.
        """
        if offset < 0 or length < 1:
            raise ValueError(f"read_range({name!r}): offset {offset} must be >= 0 and length "
                             f"{length} >= 1")
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"}
        return self._get(container, name, headers, (200, 206, 416),
                         lambda response: _ranged_body(response, offset, length))

    def _get(self, container: str, name: str, headers: dict[str, str], ok: tuple[int, ...],
             handle: Callable[[http.client.HTTPResponse], T],
             before_attempt: Callable[[], None] | None = None) -> T:
        """GET the blob until an answer with a status in ``ok``, which ``handle`` reads.

        A transient fault (or an ``http.client`` error raised by ``handle``, such as a body cut
        short) is retried on a fresh connection with the SDK's backoff; the GET is idempotent.
        """
        path = f"{self._base}/{container}/{urllib.parse.quote(name, safe='/')}"
        headers = {"x-ms-version": self.api_version, **headers}
        renewed = False
        attempt = 0
        while True:
            if before_attempt is not None:
                before_attempt()
            token = self._token(container)     # outside the try: not a connection fault
            conn = self._connection()
            try:
                conn.request("GET", f"{path}?{token}", headers=headers)
                response = conn.getresponse()
                status = response.status
                if status in ok:
                    return handle(response)
                body = response.read()
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                # a dropped or stalled connection: the GET may be repeated safely
                self._connection(fresh=True)
                status, body = 0, str(exc).encode()
            if status == 404:
                raise BlobNotFound(f"blob {container}/{name} does not exist")
            if status == 403 and not renewed:   # a SAS revoked or expired early: one new one
                self._token(container, renew=True)
                renewed = True
                continue
            if status not in TRANSIENT and status != 0 or attempt >= BACKOFF["retry_total"]:
                raise BlobReadError(f"GET {container}/{name}: HTTP {status or 'no answer'}: "
                                        f"{body[:300].decode(errors='replace')}")
            time.sleep(_backoff(attempt))
            attempt += 1

    @staticmethod
    def _copy(response: http.client.HTTPResponse, fh: IO[bytes]) -> int:
        expected = response.getheader("Content-Length")
        size = 0
        while chunk := response.read(CHUNK):
            fh.write(chunk)
            size += len(chunk)
        if expected is not None and int(expected) != size:
            raise http.client.IncompleteRead(b"", int(expected) - size)
        return size


class Headers(dict[str, str]):
    """An answer's headers by lower-case name (a repeated header's values joined by ", "), with
    the lookups ``http.client`` makes of its ``HTTPMessage``."""

    @classmethod
    def parse(cls, lines: list[bytes]) -> Headers:
        headers = cls()
        for raw in lines:
            name, sep, value = raw.decode("iso-8859-1").partition(":")
            if not sep:
                continue     # the blank line that ends them (or a line that is not a header)
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def get_all(self, name: str, default: Any = None) -> Any:
        value = super().get(name.lower())
        return default if value is None else [value]


class LeanResponse(http.client.HTTPResponse):
    """``http.client``'s answer with its headers read into :class:`Headers` instead of through the
    ``email`` package, which cost ~40 us of a GET's ~140 us of client CPU. The rest is the
    standard library's own: the status line, the header lines' limits, chunked and
    Content-Length framing, keep-alive."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:   # skip any 100 Continue
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            http.client._read_headers(self.fp)
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = Headers.parse(http.client._read_headers(self.fp))
        self.chunked = (self.headers.get("transfer-encoding") or "").lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked and length.strip().isdigit():
            self.length = int(length)
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) or 100 <= status < 200 \
                or self._method == "HEAD":
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


def closed_by_server(conn: http.client.HTTPConnection) -> bool:
    """Whether the server has closed this idle kept-alive connection (as urllib3 checks).

    Servers drop idle connections (Azurite after 5 s); a GET sent on one fails and would be retried
    only after a backoff sleep (up to 1.5 s). Between requests nothing is due from the server, so a
    readable socket means it was closed (or sent something unexpected): open a new one instead.
    """
    sock = conn.sock
    if sock is None:        # not connected yet: http.client connects on the next request
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _ranged_body(response: http.client.HTTPResponse, offset: int, length: int) -> tuple[bytes, int]:
    """The data and blob size of an answer to ``Range: bytes=offset-(offset + length - 1)``.

    206 carries ``Content-Range: bytes a-b/size``; 416 (the range starts past the end, or the blob
    is empty) carries ``bytes */size`` and no data; 200 is a server that ignored the range and sent
    the whole blob. Only the size after the ``/`` is used: Azurite writes odd first/last offsets
    for ranges at the very end (``bytes 10-9/10``). A body of the wrong length raises
    ``IncompleteRead``, which the caller retries.
    """
    body = response.read()   # always read whole: the connection is reused
    if response.status == 200:
        return body[offset:offset + length], len(body)
    content_range = response.getheader("Content-Range") or ""
    total = content_range.rpartition("/")[2].strip()
    if not content_range.startswith("bytes ") or not total.isdigit():
        raise BlobReadError(f"HTTP {response.status} with an unusable Content-Range "
                                f"{content_range!r}")
    size = int(total)
    data = b"" if response.status == 416 else body
    expected = max(0, min(offset + length, size) - offset)
    if len(data) != expected:
        raise http.client.IncompleteRead(data, expected - len(data))
    return data, size
