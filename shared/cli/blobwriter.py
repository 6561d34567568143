"""Blob writes over plain HTTP: Put Blob, Put Block and Put Block List, for ``parallelrun upload``
(:mod:`shared.cli.uploads`), the write-side counterpart of :mod:`shared.scoring.blobreader`.

Each thread keeps one connection to the blob endpoint. A request is authorised by :class:`KeyAuth`
(signed with the account key: Shared Key, the SDK's canonical form, :func:`string_to_sign`) or
:class:`SasAuth` (a SAS token, made again before it expires or once when storage refuses it).
Every body carries its ``Content-MD5``, so storage refuses a body damaged on the way; that
refusal, 408, 429, 5xx and dropped, refused or stalled connections are tried again with the SDK
clients' backoff (:mod:`shared.backoff`). The writes replace what a blob held, so a repeat after
a lost answer stores the same bytes once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Protocol

from shared import backoff
from shared.scoring.blobreader import SAS_LIFETIME, SAS_RENEW_BEFORE, TRANSIENT, closed_by_server

CORRUPTED_CODES = {"Md5Mismatch", "Crc64Mismatch"}
OnRetry = Callable[[], None]


class BlobWriteError(OSError):
    """A write that failed for good: a status that is not transient, or retries used up.
    ``status`` is 0 when no answer came; ``tries`` counts the requests sent."""

    def __init__(self, message: str, status: int = 0, code: str = "", tries: int = 1) -> None:
        super().__init__(message)
        self.status, self.code, self.tries = status, code, tries


class Stopped(Exception):
    """The caller set the stop event while a write waited to try again."""


def content_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def block_id(index: int) -> str:
    """Block ``index``'s id: base64 of a fixed-width number (every id of a blob has one length)."""
    return base64.b64encode(f"{index:08d}".encode()).decode()


def block_list_xml(count: int) -> bytes:
    """The Put Block List body committing blocks ``0 .. count-1`` in order."""
    ids = "".join(f"<Latest>{block_id(i)}</Latest>" for i in range(count))
    return f'<?xml version="1.0" encoding="utf-8"?><BlockList>{ids}</BlockList>'.encode()


def string_to_sign(method: str, account: str, path: str, params: Sequence[tuple[str, str]],
                   headers: dict[str, str], length: int) -> str:
    """A request's canonical form for Shared Key (the blob service's, version 2009-09-19 on):
    the standard headers in their fixed order (``Content-Length`` empty when 0), the ``x-ms-``
    headers sorted, then ``/<account><encoded path>`` and the query's names (lower case, sorted)
    with their decoded values."""
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    standard = [str(length) if length else "", *(lower.get(h, "") for h in (
        "content-md5", "content-type", "date", "if-modified-since", "if-match", "if-none-match",
        "if-unmodified-since", "range"))]
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in sorted(lower.items()) if k.startswith("x-ms-"))
    query = "".join(f"\n{k.lower()}:{v}" for k, v in sorted(params, key=lambda kv: kv[0].lower()))
    return "\n".join([method, lower.get("content-encoding", ""), lower.get("content-language", ""),
                      *standard]) + "\n" + canonical_headers + f"/{account}{path}" + query


def retryable(status: int, error_code: str, body: bytes) -> bool:
    """Whether an answer (status 0: none came) is worth another try: a transient status, no
    answer at all, or a body storage refused as damaged: its MD5 did not match (Azure says
    ``Md5Mismatch``, Azurite an ``InvalidOperation`` naming the content MD5), or Azurite could
    not parse it (a damaged block list: a 400 without an error code, which Azure never sends)."""
    if status == 0 or status in TRANSIENT:
        return True
    return status == 400 and (error_code in CORRUPTED_CODES or not error_code
                              or b"contentmd5" in body.lower())


@dataclass(frozen=True)
class Retry:
    """How often and after how long a request is tried again: the SDK clients' schedule."""

    attempts: int = backoff.BACKOFF["retry_total"]
    delay_s: Callable[[int], float] = backoff.delay_s


# -- authorisation --------------------------------------------------------------------------
class Auth(Protocol):
    kind: str

    def target(self, path: str, params: Sequence[tuple[str, str]], headers: dict[str, str],
               length: int) -> str:
        """The request target (path and query) of a PUT, its authorisation added to ``headers``
        or the query."""

    def renew(self) -> None:
        """Storage refused the authorisation: make it again, if it can be."""


def _query(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in params)


class KeyAuth:
    """Shared Key: each request signed with the account key (:func:`string_to_sign`)."""

    kind = "key"

    def __init__(self, account: str, key: str) -> None:
        self._account = account
        self._key = base64.b64decode(key)

    def target(self, path: str, params: Sequence[tuple[str, str]], headers: dict[str, str],
               length: int) -> str:
        headers["x-ms-date"] = formatdate(usegmt=True)
        signed = string_to_sign("PUT", self._account, path, params, headers, length)
        digest = hmac.new(self._key, signed.encode(), hashlib.sha256).digest()
        headers["Authorization"] = f"SharedKey {self._account}:{base64.b64encode(digest).decode()}"
        return f"{path}?{_query(params)}" if params else path

    def renew(self) -> None:
        pass


class SasAuth:
    """The run's SAS token: made at once (so a failure shows before any upload), again before it
    expires or when storage refuses it."""

    kind = "sas"

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._renew_after_s = (SAS_LIFETIME - SAS_RENEW_BEFORE).total_seconds()
        self._token, self._made = make(), time.monotonic()

    def target(self, path: str, params: Sequence[tuple[str, str]], headers: dict[str, str],
               length: int) -> str:
        with self._lock:
            if time.monotonic() - self._made > self._renew_after_s:
                self._token, self._made = self._make(), time.monotonic()
            token = self._token
        return f"{path}?{token}" + (f"&{_query(params)}" if params else "")

    def renew(self) -> None:
        with self._lock:
            self._token, self._made = self._make(), time.monotonic()


# -- the writer -----------------------------------------------------------------------------
class BlobWriter:
    """PUTs blobs of one container over one kept-alive connection per thread: thread-safe."""

    def __init__(self, url: str, api_version: str, container: str, auth: Auth, timeout_s: float,
                 retry: Retry, stop: threading.Event) -> None:
        parts = urllib.parse.urlsplit(url)     # its query (a connection string's SAS) is auth's
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self.auth = auth
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._base = f"{parts.path.rstrip('/')}/{container}"   # "/devstoreaccount1/c" on Azurite
        self._version = api_version
        self._timeout_s = timeout_s
        self._retry = retry
        self._stop = stop
        self._local = threading.local()
        self._opened: set[http.client.HTTPConnection] = set()
        self._opened_lock = threading.Lock()

    def put_blob(self, name: str, data: bytes, content_type: str, on_retry: OnRetry) -> None:
        """Put Blob: ``name`` holds ``data`` (replacing what it held)."""
        self._put(name, (), data, {"x-ms-blob-type": "BlockBlob", "Content-Type": content_type},
                  on_retry)

    def put_block(self, name: str, index: int, data: bytes, on_retry: OnRetry) -> None:
        """Put Block: block ``index`` of ``name``, staged (uncommitted)."""
        self._put(name, (("comp", "block"), ("blockid", block_id(index))), data, {}, on_retry)

    def put_block_list(self, name: str, count: int, content_type: str, on_retry: OnRetry) -> None:
        """Put Block List: ``name`` becomes blocks ``0 .. count-1``, in order."""
        self._put(name, (("comp", "blocklist"),), block_list_xml(count),
                  {"x-ms-blob-content-type": content_type}, on_retry)

    def put_in_blocks(self, name: str, read: Callable[[int, int], bytes], block_bytes: int,
                      content_type: str, on_retry: OnRetry) -> int:
        """``name`` holds what ``read(offset, length)`` gives, block by block until a short one
        (one block in memory at a time); returns the size.

        A commit that storage refuses as naming blocks it does not hold (``InvalidBlockList``) is
        staged and committed once more: Azurite does not check a block list's MD5, so a list
        damaged on the way names blocks that do not exist (Azure refuses it as ``Md5Mismatch``,
        which is tried again like any damaged body).
        """
        for again in (False, True):
            index = size = 0
            while True:
                data = read(size, block_bytes)
                if data or not index:
                    self.put_block(name, index, data, on_retry)
                    index, size = index + 1, size + len(data)
                if len(data) < block_bytes:
                    break
            try:
                self.put_block_list(name, index, content_type, on_retry)
                return size
            except BlobWriteError as exc:
                if again or exc.code != "InvalidBlockList":
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._opened_lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()

    def _put(self, name: str, params: Sequence[tuple[str, str]], body: bytes,
             headers: dict[str, str], on_retry: OnRetry) -> None:
        """PUT until storage accepts it: transient faults wait and try again, a refused SAS is
        made again once; anything else, or the last try, raises :class:`BlobWriteError`."""
        path = f"{self._base}/{urllib.parse.quote(name, safe='/~')}"
        md5 = content_md5(body)
        attempt, renewed = 0, False
        while True:
            sent = {"x-ms-version": self._version, "Content-MD5": md5, **headers}
            status, code, answer = self._send(self.auth.target(path, params, sent, len(body)), body, sent)
            if status in (200, 201):
                return
            if status == 403 and not renewed:   # a SAS revoked or expired early: one new one
                self.auth.renew()
                renewed = True
                continue
            if not retryable(status, code, answer) or attempt >= self._retry.attempts:
                raise BlobWriteError(self._describe(status, code, answer, attempt + 1), status, code,
                                     attempt + 1)
            on_retry()
            if self._stop.wait(self._retry.delay_s(attempt)):
                raise Stopped
            attempt += 1

    def _describe(self, status: int, code: str, answer: bytes, tries: int) -> str:
        text = answer[:300].decode(errors="replace").strip()
        if status == 0:
            return f"no answer from storage at {self.endpoint} after {tries} tries ({text})"
        return (f"HTTP {status} {code}".rstrip() + (f" after {tries} tries" if tries > 1 else "")
                + (f": {text}" if text and not text.startswith("<?xml") else ""))

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._opened_lock:
            self._opened.discard(conn)

    def _send(self, target: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, x-ms-error-code, body) of one PUT; status 0 and the error's text when no
        answer came (the connection is then replaced)."""
        conn = self._connection()
        try:
            conn.request("PUT", target, body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            return response.status, response.getheader("x-ms-error-code") or "", answer
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            self._drop(conn)
            return 0, "", (str(exc) or type(exc).__name__).encode()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and closed_by_server(conn):   # dropped while idle (Azurite: 5 s)
            self._drop(conn)
            conn = None
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = self._local.conn = cls(self._host, self._port, timeout=self._timeout_s)
            with self._opened_lock:
                self._opened.add(conn)
        return conn
