"""Many files to blob storage at once: what ``parallelrun upload`` sends, over plain HTTP.

Through the storage SDK a small file costs ~1.5 ms of client CPU (pipeline policies, request
signing, the requests library) under the GIL, so 16 threads uploaded ~140 small files/s. Here each
of ``IN_FLIGHT`` threads keeps one connection to the blob endpoint and sends
``PUT /<container>/<blob>`` (Put Blob, ``x-ms-blob-type: BlockBlob``) itself, ~0.3 ms each:

* authorised, with an account key (a connection string, Azurite), by signing each request with
  the key (Shared Key, as the SDK does: an HMAC of the request's canonical form, ~20 us); else by
  one create/write container SAS made for the run (:meth:`shared.storage.Storage.upload_sas`: a
  user delegation SAS for an identity, or the connection string's own SAS), made again before it
  expires. Where no SAS can be made (an identity that may not ask for a delegation key), the SDK
  path (:func:`upload_with_sdk`) is used and the caller is told why. (A SAS made with the key
  would do too, but Azurite checks a SAS's create-or-write right with a scan of the account's
  blobs on every Put Blob: at 5,000 blobs that was 2.2 ms of Azurite's CPU per file instead of
  1.5, and about half the rate: docs/performance.md "Uploads");
* each body carries its ``Content-MD5``, so storage refuses a body changed on the way; the
  refusal is retried (the file is read again);
* a file above ``LARGE_FILE_BYTES`` goes as ``BLOCK_BYTES`` blocks (Put Block, each with its
  MD5, then Put Block List): memory holds at most one small file or one block per thread;
* transient faults (408, 429, 5xx, dropped, refused or stalled connections) are retried with
  the SDK clients' backoff (:mod:`shared.backoff`); uploads overwrite, so a repeat is harmless;
* the content type is guessed from the name (:mod:`mimetypes`).

The first file that fails for good stops the run: files not started are left, those in flight
finish, and the error names the file and how many were uploaded before it.

Names are those ``upload`` has always given (:func:`files_to_upload`): a file is
``PREFIX/<its name>``, a folder's files (hidden ones too) ``PREFIX/<path under the folder>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import mimetypes
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from pathlib import Path
from typing import Any, Protocol

from azure.core.exceptions import AzureError
from azure.storage.blob import ContainerClient, ContentSettings

from shared import backoff
from shared.errors import OperatorError, ParallelRunError, SubmitterError
from shared.scoring.blobreader import SAS_LIFETIME, SAS_RENEW_BEFORE, TRANSIENT, closed_by_server
from shared.storage import Storage, blob_path

IN_FLIGHT = 32                  # requests in flight, one connection each
SDK_THREADS = 16                # the SDK path's threads (what `upload` always used)
LARGE_FILE_BYTES = 4 << 20      # above: uploaded in blocks
BLOCK_BYTES = 4 << 20
TICK_S = 0.1                    # how often the caller hears of progress
COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}
CORRUPTED_CODES = {"Md5Mismatch", "Crc64Mismatch"}


# -- what goes where (pure) --------------------------------------------------------------------
@dataclass(frozen=True)
class LocalFile:
    """One file to upload: where it is, its blob name, its size when listed."""

    path: Path
    name: str
    size: int


def files_to_upload(local: Path, prefix: str) -> list[LocalFile]:
    """The files under ``local`` (or ``local`` itself) with their blob names under ``prefix``,
    in name order; hidden files too. Only names and sizes are read."""
    paths = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    base = local.parent if local.is_file() else local
    return [LocalFile(p, blob_path(prefix, p.relative_to(base).as_posix()), p.stat().st_size)
            for p in paths]


def content_type(name: str) -> str:
    """The blob's content type, from its name. A compressed file (``rows.csv.gz``) is stored as
    it is (no ``Content-Encoding``, which would make browsers unpack it) and typed as the archive."""
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:
        return COMPRESSED.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


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
    answer at all, or a body storage refused as corrupted (its MD5 did not match: Azure says
    ``Md5Mismatch``, Azurite an ``InvalidOperation`` naming the content MD5)."""
    if status == 0 or status in TRANSIENT:
        return True
    return status == 400 and (error_code in CORRUPTED_CODES or b"contentmd5" in body.lower())


@dataclass(frozen=True)
class Retry:
    """How often and after how long a request is tried again: the SDK clients' schedule."""

    attempts: int = backoff.BACKOFF["retry_total"]
    delay_s: Callable[[int], float] = backoff.delay_s


# -- progress and the report -------------------------------------------------------------------
@dataclass
class Tally:
    """Files and bytes uploaded so far, and requests tried again (updated by every worker)."""

    files: int = 0
    bytes: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, files: int = 0, nbytes: int = 0, retries: int = 0) -> None:
        with self._lock:
            self.files += files
            self.bytes += nbytes
            self.retries += retries


@dataclass(frozen=True)
class UploadReport:
    """What a run uploaded, how fast, and by which path (``http`` or ``sdk``)."""

    files: int
    bytes: int
    seconds: float
    retries: int
    via: str
    note: str = ""
    auth: str = ""      # "key" (Shared Key) or "sas" on the plain-HTTP path

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {"files": self.files, "bytes": self.bytes, "seconds": round(self.seconds, 3),
                "files_per_s": round(self.files_per_s, 1), "bytes_per_s": round(self.bytes_per_s),
                "retries": self.retries, "via": self.via, **({"auth": self.auth} if self.auth else {}),
                **({"note": self.note} if self.note else {})}


Progress = Callable[[Tally], None]


class _Stopped(Exception):
    """Another file failed for good: this worker stops where it is."""


# -- the run -----------------------------------------------------------------------------------
def upload(storage: Storage, container: str, files: Sequence[LocalFile], *,
           on_progress: Progress | None = None, notify: Callable[[str], None] = lambda _: None,
           in_flight: int = IN_FLIGHT, retry: Retry = Retry(), sign_with_key: bool = True) -> UploadReport:
    """Upload ``files`` to ``container`` (which exists), overwriting; plain HTTP signed with the
    account key where there is one (unless ``sign_with_key`` is false), else with a SAS, else
    the SDK (``notify`` hears why). ``on_progress`` is called every ``TICK_S`` from this thread.
    Raises :class:`OperatorError` (storage) or :class:`SubmitterError` (a file that cannot be
    read) naming the first file that failed."""
    service = storage.blob_service
    key = getattr(service.credential, "account_key", None)
    auth: _Auth
    if key and sign_with_key:
        auth = _KeyAuth(service.account_name or "", key)
    else:
        try:
            auth = _SasAuth(lambda: storage.upload_sas(container))
        except AzureError as exc:
            note = (f"no upload SAS could be made ({_first_line(exc)}): uploading through the "
                    "storage SDK instead, which is slower")
            notify(note)
            return replace(upload_with_sdk(storage, container, files, on_progress=on_progress),
                           note=note)
    stop = threading.Event()
    uploads = _HttpUploads(storage, container, auth, retry, stop)
    try:
        report = _run(files, uploads.upload_one, in_flight, on_progress, "http", stop)
    finally:
        uploads.close()
    return replace(report, auth=auth.kind)


def upload_with_sdk(storage: Storage, container: str, files: Sequence[LocalFile], *,
                    on_progress: Progress | None = None, threads: int = SDK_THREADS) -> UploadReport:
    """The SDK path: one ``upload_blob`` per file on ``threads`` threads (what ``upload`` did
    before the plain-HTTP path; kept for identities without a delegation SAS and to compare)."""
    client = storage.container(container)
    return _run(files, lambda f, tally: _sdk_put(client, container, f, tally), threads,
                on_progress, "sdk")


def _run(files: Sequence[LocalFile], one: Callable[[LocalFile, Tally], None], threads: int,
         on_progress: Progress | None, via: str, stop: threading.Event | None = None) -> UploadReport:
    """``one(file, tally)`` for every file on ``threads`` workers; the first error sets ``stop``
    and the workers end (each after the file it is on)."""
    tally, stop = Tally(), stop or threading.Event()
    pending: Iterator[LocalFile] = iter(files)
    take = threading.Lock()
    errors: list[ParallelRunError] = []

    def work() -> None:
        while not stop.is_set():
            with take:
                f = next(pending, None)
            if f is None:
                return
            try:
                one(f, tally)
            except _Stopped:
                return
            except ParallelRunError as exc:
                errors.append(exc)
                stop.set()

    started = time.monotonic()
    workers = max(1, min(threads, len(files)))
    with ThreadPoolExecutor(workers, thread_name_prefix="upload") as pool:
        futures = [pool.submit(work) for _ in range(workers)]
        try:
            while not all(f.done() for f in futures):
                if on_progress is not None:
                    on_progress(tally)
                time.sleep(TICK_S)
        except BaseException:   # Ctrl-C: the workers finish the file they are on, and stop
            stop.set()
            raise
        for future in futures:
            future.result()   # a bug in a worker surfaces here
    if on_progress is not None:
        on_progress(tally)
    if errors:
        raise type(errors[0])(f"{errors[0]} ({tally.files:,} of {len(files):,} files uploaded "
                              "before it stopped)")
    return UploadReport(tally.files, tally.bytes, time.monotonic() - started, tally.retries, via)


def _sdk_put(client: ContainerClient, container: str, f: LocalFile, tally: Tally) -> None:
    try:
        with open(f.path, "rb") as fh:
            client.upload_blob(f.name, fh, overwrite=True,
                               content_settings=ContentSettings(content_type=content_type(f.name)))
            size = fh.tell()
    except OSError as exc:
        raise SubmitterError(f"cannot read {f.path}: {exc.strerror or exc}") from None
    except AzureError as exc:
        raise OperatorError(f"cannot upload {f.path} to {container}/{f.name}: "
                            f"{_first_line(exc)}") from None
    tally.add(1, size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- plain HTTP --------------------------------------------------------------------------------
class _Auth(Protocol):
    kind: str

    def target(self, path: str, params: Sequence[tuple[str, str]], headers: dict[str, str],
               length: int) -> str:
        """The request target (path and query) of a PUT, its authorisation added to ``headers``
        or the query."""

    def renew(self) -> None:
        """Storage refused the authorisation: make it again, if it can be."""


def _query(params: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in params)


class _KeyAuth:
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


class _SasAuth:
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


class _HttpUploads:
    """Put Blob / Put Block / Put Block List over one kept-alive connection per worker thread."""

    def __init__(self, storage: Storage, container: str, auth: _Auth, retry: Retry,
                 stop: threading.Event) -> None:
        service = storage.blob_service
        parts = urllib.parse.urlsplit(service.url)     # its query: a connection string's SAS
        self.endpoint = f"{parts.scheme}://{parts.netloc}"
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._base = f"{parts.path.rstrip('/')}/{container}"     # "/devstoreaccount1/c" on Azurite, "/c" on Azure
        self._container = container
        self._version = service.api_version
        self._timeout_s = storage.settings.storage_timeout_s
        self._auth = auth
        self._retry = retry
        self._local = threading.local()
        self._stop = stop
        self._opened: set[http.client.HTTPConnection] = set()
        self._opened_lock = threading.Lock()

    def close(self) -> None:
        with self._opened_lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()

    def _drop(self, conn: http.client.HTTPConnection) -> None:
        conn.close()
        self._local.conn = None
        with self._opened_lock:
            self._opened.discard(conn)

    def upload_one(self, f: LocalFile, tally: Tally) -> None:
        kind = content_type(f.name)
        if f.size > LARGE_FILE_BYTES:
            size = self._put_blocks(f, kind, tally)
        else:
            data = _read(f)
            self._put(f, (), data, {"x-ms-blob-type": "BlockBlob", "Content-Type": kind}, tally)
            size = len(data)
        tally.add(1, size)

    def _put_blocks(self, f: LocalFile, kind: str, tally: Tally) -> int:
        count = size = 0
        while True:
            data = _read(f, size, BLOCK_BYTES)
            if data or not count:
                self._put(f, (("comp", "block"), ("blockid", block_id(count))), data, {}, tally)
                count, size = count + 1, size + len(data)
            if len(data) < BLOCK_BYTES:
                break
        self._put(f, (("comp", "blocklist"),), block_list_xml(count), {"x-ms-blob-content-type": kind},
                  tally)
        return size

    def _put(self, f: LocalFile, params: Sequence[tuple[str, str]], body: bytes,
             headers: dict[str, str], tally: Tally) -> None:
        """PUT until storage accepts it: transient faults wait and try again, a refused SAS is
        made again once, anything else (or the last try) raises naming the file."""
        path = f"{self._base}/{urllib.parse.quote(f.name, safe='/~')}"
        md5 = content_md5(body)
        attempt, renewed = 0, False
        while True:
            sent = {"x-ms-version": self._version, "Content-MD5": md5, **headers}
            status, code, answer = self._send(self._auth.target(path, params, sent, len(body)), body, sent)
            if status in (200, 201):
                return
            if status == 403 and not renewed:   # a SAS revoked or expired early: one new one
                self._auth.renew()
                renewed = True
                continue
            if not retryable(status, code, answer) or attempt >= self._retry.attempts:
                raise OperatorError(f"cannot upload {f.path} to {self._container}/{f.name}: "
                                    + self._describe(status, code, answer, attempt + 1))
            tally.add(retries=1)
            if self._stop.wait(self._retry.delay_s(attempt)):
                raise _Stopped
            attempt += 1

    def _describe(self, status: int, code: str, answer: bytes, tries: int) -> str:
        text = answer[:300].decode(errors="replace").strip()
        if status == 0:
            return f"no answer from storage at {self.endpoint} after {tries} tries ({text})"
        return f"HTTP {status} {code}".rstrip() + (f" after {tries} tries" if tries > 1 else "") + \
            (f": {text}" if text and not text.startswith("<?xml") else "")

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


def _read(f: LocalFile, offset: int = 0, length: int = -1) -> bytes:
    try:
        with open(f.path, "rb") as fh:
            if offset:
                fh.seek(offset)
            return fh.read(length)
    except OSError as exc:
        raise SubmitterError(f"cannot read {f.path}: {exc.strerror or exc}") from None
