"""Many files to blob storage at once: what ``parallelrun upload`` sends, over plain HTTP.

Through the storage SDK a small file costs ~1.5 ms of client CPU (pipeline policies, request
signing, the requests library) under the GIL, so 16 threads uploaded ~140 small files/s. Here each
of ``IN_FLIGHT`` threads keeps one connection to the blob endpoint and sends
``PUT /<container>/<blob>`` (Put Blob, ``x-ms-blob-type: BlockBlob``) itself, ~0.3 ms each
(:mod:`shared.cli.blobwriter`):

* authorised, with an account key (a connection string, Azurite), by signing each request with
  the key (Shared Key, as the SDK does: an HMAC of the request's canonical form, ~20 us); else by
  one create/write container SAS made for the run (:meth:`shared.storage.Storage.upload_sas`: a
  user delegation SAS for an identity, or the connection string's own SAS), made again before it
  expires. Where no SAS can be made (an identity that may not ask for a delegation key), the SDK
  path (:func:`upload_with_sdk`) is used and the caller is told why. (A SAS made with the key
  would do too, but Azurite checks a SAS's create-or-write right with a scan of the account's
  blobs on every Put Blob: at 5,000 blobs that was 2.2 ms of Azurite's CPU per file instead of
  1.5, and about half the rate: docs/performance.md "Uploads");
* each body carries its ``Content-MD5``, so storage refuses a body changed on the way, and it
  is sent again;
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

import functools
import mimetypes
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.cli import blobwriter
from shared.cli.blobwriter import Retry
from shared.errors import OperatorError, ParallelRunError, SubmitterError
from shared.storage import Storage, blob_path

IN_FLIGHT = 32                  # requests in flight, one connection each
SDK_THREADS = 16                # the SDK path's threads (what `upload` always used)
LARGE_FILE_BYTES = 4 << 20      # above: uploaded in blocks
BLOCK_BYTES = 4 << 20
TICK_S = 0.1                    # how often the caller hears of progress
COMPRESSED = {"gzip": "application/gzip", "bzip2": "application/x-bzip2", "xz": "application/x-xz"}


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


# -- the run -----------------------------------------------------------------------------------
def upload(storage: Storage, container: str, files: Sequence[LocalFile], *,
           on_progress: Progress | None = None, notify: Callable[[str], None] = lambda _: None,
           in_flight: int = IN_FLIGHT, retry: Retry = Retry(), sign_with_key: bool = True) -> UploadReport:
    """Upload ``files`` to ``container`` (which exists), overwriting; plain HTTP signed with the
    account key where there is one (unless ``sign_with_key`` is false), else with a SAS, else
    the SDK (``notify`` hears why). ``on_progress`` is called every ``TICK_S`` from this thread.
    Raises :class:`OperatorError` (storage) or :class:`SubmitterError` (a file that cannot be
    read) naming the first file that failed."""
    try:
        auth = _auth(storage, container, sign_with_key)
    except AzureError as exc:
        note = (f"no upload SAS could be made ({_first_line(exc)}): uploading through the "
                "storage SDK instead, which is slower")
        notify(note)
        return replace(upload_with_sdk(storage, container, files, on_progress=on_progress), note=note)
    stop = threading.Event()
    service = storage.blob_service
    writer = blobwriter.BlobWriter(service.url, service.api_version, container, auth,
                                   storage.settings.storage_timeout_s, retry, stop)
    try:
        report = _run(files, lambda f, tally: _upload_one(writer, container, f, tally), in_flight,
                      on_progress, "http", stop)
    finally:
        writer.close()
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
            except blobwriter.Stopped:    # another file failed for good
                return
            except ParallelRunError as exc:
                errors.append(exc)
                stop.set()
            except BaseException:       # a bug: stop the others too, and show it
                stop.set()
                raise

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
def _auth(storage: Storage, container: str, sign_with_key: bool) -> blobwriter.Auth:
    """Shared Key with the account key where there is one, else the run's SAS (raises the SDK's
    error when none can be made)."""
    service = storage.blob_service
    key = getattr(service.credential, "account_key", None)
    if key and sign_with_key:
        return blobwriter.KeyAuth(service.account_name or "", key)
    return blobwriter.SasAuth(lambda: storage.upload_sas(container))


def _upload_one(writer: blobwriter.BlobWriter, container: str, f: LocalFile, tally: Tally) -> None:
    kind = content_type(f.name)
    retried = functools.partial(tally.add, retries=1)
    try:
        data = b"" if f.size > LARGE_FILE_BYTES else _read(f, 0, LARGE_FILE_BYTES + 1)
        if f.size > LARGE_FILE_BYTES or len(data) > LARGE_FILE_BYTES:   # (or it grew since)
            size = writer.put_in_blocks(f.name, lambda offset, length: _read(f, offset, length),
                                        BLOCK_BYTES, kind, retried)     # one block in memory
        else:
            writer.put_blob(f.name, data, kind, retried)
            size = len(data)
    except blobwriter.BlobWriteError as exc:
        raise OperatorError(f"cannot upload {f.path} to {container}/{f.name}: {exc}") from None
    tally.add(1, size)


def _read(f: LocalFile, offset: int = 0, length: int = -1) -> bytes:
    try:
        with open(f.path, "rb") as fh:
            if offset:
                fh.seek(offset)
            return fh.read(length)
    except OSError as exc:
        raise SubmitterError(f"cannot read {f.path}: {exc.strerror or exc}") from None
