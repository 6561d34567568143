"""A blob-trigger listener: poll a container and run the function once per blob version.

In Azure a blob trigger (polling, or ``source="EventGrid"``) fires for every new or changed blob
and keeps a *receipt* per blob version so it fires once even across restarts and instances. Here
the container is listed every ~1 s and the receipts are small blobs
``<system container>/receipts/<function>/<blob name>`` whose content is the source blob's ETag and
whose metadata holds the state (``running`` / ``retry`` / ``done`` / ``failed``), the attempt count,
the node and a heartbeat. A receipt is claimed with a conditional write (``If-None-Match: *`` for a
new one, ``If-Match`` on the receipt's ETag otherwise), so on several nodes only one runs a version.
A running receipt whose heartbeat is older than ``lease_s`` (its node died) is taken over. A
failed invocation is retried on a later scan, up to 5 attempts, then given up with an error log.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import azure.functions as func
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.local.cpustats import stage
from shared.local.invocation import FunctionSpec, StatsBook, resolve_expression
from shared.local.receipts import MAX_ATTEMPTS, PENDING, Receipt, decide
from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger("parallelrun.local.blobs")

SCAN_INTERVAL_S = 1.0
FAST_SCAN_S = 0.05
RECEIPTS = "receipts"


def compile_path(path: str) -> tuple[str, str, re.Pattern[str]]:
    """Split a resolved ``container/pattern`` into container, literal name prefix and a regex."""
    container, _, pattern = path.strip("/").partition("/")
    if not container or "{" in container:
        raise ValueError(f"blob trigger path {path!r} must start with a literal container name")
    pattern = pattern or "{name}"
    regex = "".join(f"(?P<{tok[1:-1].strip()}>.+?)" if tok.startswith("{") else re.escape(tok)
                    for tok in re.split(r"(\{[^}]*\})", pattern) if tok)
    return container, pattern.split("{", 1)[0], re.compile(regex)


def _strip(etag: str | None) -> str:
    return (etag or "").strip('"')


@dataclass
class _Running:
    name: str
    receipt: Receipt
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False


class BlobTrigger:
    """Runs one blob-triggered function over the blobs of one container."""

    def __init__(self, spec: FunctionSpec, storage: Storage, settings: Settings, stats: StatsBook,
                 *, node_id: str, lease_s: float, concurrency: int = 8) -> None:
        self.spec = spec
        self.path = resolve_expression(settings, str(spec.trigger["path"]))
        self.container_name, self._prefix, self._pattern = compile_path(self.path)
        self._source: ContainerClient = storage.container(self.container_name)
        self._receipts: ContainerClient = storage.container(settings.system_container)
        self._receipt_prefix = f"{RECEIPTS}/{spec.name}/"
        self._skip_prefix = (f"{RECEIPTS}/" if self.container_name == settings.system_container
                             else None)
        self._stats = stats
        self._node = node_id
        self.lease_s = lease_s
        self._concurrency = concurrency
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"fn-{spec.name}")
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._fast = False
        self._next_scan = 0.0
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        for container in (self._source, self._receipts):
            try:
                container.create_container()
            except ResourceExistsError:
                pass
        self._thread = threading.Thread(target=self._loop, name=f"scan-{self.spec.name}",
                                        daemon=True)
        self._thread.start()
        log.info("blob trigger %s watching %s", self.spec.name, self.path)

    def stop(self) -> None:
        """Stop scanning and wait for running invocations (their heartbeats continue meanwhile)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        self._pool.shutdown(wait=True)

    def set_fast(self, fast: bool) -> None:
        self._fast = fast
        self._next_scan = 0.0
        self._wake.set()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._running)

    def pending(self) -> int:
        """Blob versions not yet finished by any node (a fresh listing) plus local invocations."""
        now = time.time()
        receipts = self._list_receipts()
        waiting = sum(decide(etag, receipts.get(name), now, self.lease_s) in PENDING
                      for name, etag in self._list_blobs())
        return waiting + self.in_flight

    # -- the scan loop ---------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            with stage("blob trigger: scan and heartbeat"):
                self._heartbeat()
                if time.monotonic() >= self._next_scan:
                    try:
                        self._scan()
                    except AzureError as exc:
                        log.warning("blob trigger %s: scanning %s failed: %s", self.spec.name,
                                    self.path, exc)
                    self._next_scan = time.monotonic() + (FAST_SCAN_S if self._fast
                                                          else SCAN_INTERVAL_S)
            self._wake.wait(min(FAST_SCAN_S if self._fast else SCAN_INTERVAL_S, self.lease_s / 6))
            self._wake.clear()
        while self.in_flight:   # keep the claims alive until the invocations end
            self._heartbeat()
            time.sleep(min(0.2, self.lease_s / 6))

    def _list_blobs(self) -> list[tuple[str, str]]:
        found = []
        for props in self._source.list_blobs(name_starts_with=self._prefix or None):
            if self._skip_prefix and props.name.startswith(self._skip_prefix):
                continue
            if self._pattern.fullmatch(props.name):
                found.append((props.name, _strip(props.etag)))
        return found

    def _list_receipts(self) -> dict[str, Receipt]:
        start = len(self._receipt_prefix)
        return {props.name[start:]: Receipt.from_properties(props)
                for props in self._receipts.list_blobs(name_starts_with=self._receipt_prefix,
                                                       include=["metadata"])}

    def _scan(self) -> None:
        receipts = self._list_receipts()
        now = time.time()
        for name, etag in self._list_blobs():
            with self._lock:
                if name in self._running or len(self._running) >= self._concurrency:
                    continue
            receipt = receipts.get(name)
            verdict = decide(etag, receipt, now, self.lease_s)
            if verdict == "give_up" and receipt is not None:
                if self._write(name, replace(receipt, state="failed"), receipt.etag):
                    self._gave_up(name, receipt)
            elif verdict in ("new", "retry"):
                attempts = 1 if verdict == "new" else (receipt.attempts + 1 if receipt else 1)
                claimed = self._write(name, Receipt(etag, "running", attempts, self._node, now),
                                      receipt.etag if receipt else None)
                if claimed is not None:
                    entry = _Running(name, claimed)
                    with self._lock:
                        self._running[name] = entry
                    self._pool.submit(self._run, entry)

    # -- receipts --------------------------------------------------------------------------
    def _write(self, name: str, receipt: Receipt, if_match: str | None) -> Receipt | None:
        """Write a receipt if nobody changed it meanwhile; ``None`` when another node won."""
        blob = self._receipts.get_blob_client(self._receipt_prefix + name)
        condition: dict[str, Any] = ({"overwrite": False} if if_match is None else
                                     {"overwrite": True, "etag": if_match,
                                      "match_condition": MatchConditions.IfNotModified})
        try:
            result = blob.upload_blob(receipt.blob_etag.encode(), metadata=receipt.metadata(),
                                      **condition)
        except (ResourceExistsError, ResourceModifiedError):
            return None
        return replace(receipt, etag=result["etag"])

    def _update(self, entry: _Running, **changes: Any) -> None:
        new = replace(entry.receipt, **changes)
        blob = self._receipts.get_blob_client(self._receipt_prefix + entry.name)
        try:
            result = blob.set_blob_metadata(new.metadata(), etag=entry.receipt.etag,
                                            match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            log.warning("blob trigger %s blob=%s: receipt was taken over by another node",
                        self.spec.name, entry.name)
            return
        entry.receipt = replace(new, etag=str(result["etag"]))

    def _heartbeat(self) -> None:
        with self._lock:
            entries = list(self._running.values())
        for entry in entries:
            with entry.lock:
                if not entry.done and time.time() - entry.receipt.heartbeat >= self.lease_s / 3:
                    try:
                        self._update(entry, heartbeat=time.time())
                    except AzureError as exc:
                        log.warning("blob trigger %s blob=%s: heartbeat failed: %s",
                                    self.spec.name, entry.name, exc)

    # -- one invocation --------------------------------------------------------------------
    def _run(self, entry: _Running) -> None:
        try:
            self._invoke(entry)
        except AzureError as exc:
            log.warning("blob trigger %s blob=%s: storage failed, the claim will expire and be "
                        "retried: %s", self.spec.name, entry.name, exc)
        except Exception:  # noqa: BLE001 - a host bug must not kill the worker thread silently
            log.exception("blob trigger %s blob=%s: unexpected host error", self.spec.name,
                          entry.name)
        finally:
            with self._lock:
                self._running.pop(entry.name, None)

    def _invoke(self, entry: _Running) -> None:
        receipt = entry.receipt
        client = self._source.get_blob_client(entry.name)
        try:
            with stage("blob trigger: binding"):
                download = client.download_blob(etag=receipt.blob_etag,
                                                match_condition=MatchConditions.IfNotModified)
                data = download.readall()
        except (ResourceModifiedError, ResourceNotFoundError):
            log.info("blob trigger %s blob=%s: version %s is gone, skipping", self.spec.name,
                     entry.name, receipt.blob_etag)
            self._finish(entry, "done")
            return
        props = download.properties
        stream = func.blob.InputStream(
            data=data, name=f"{self.container_name}/{entry.name}", uri=client.url, length=len(data),
            metadata=dict(props.metadata or {}),
            blob_properties={"ETag": receipt.blob_etag, "Length": len(data),
                             "ContentType": props.content_settings.content_type,
                             "LastModified": props.last_modified})
        self._stats.add(self.spec.name, invocations=1)
        started = time.monotonic()
        try:
            self.spec.invoke(stream)
        except Exception:  # noqa: BLE001 - any failure of user code is a failed invocation
            log.exception("blob trigger %s blob=%s attempt=%d failed after %.3fs", self.spec.name,
                          entry.name, receipt.attempts, time.monotonic() - started)
            self._stats.add(self.spec.name, failures=1)
            if receipt.attempts >= MAX_ATTEMPTS:
                self._finish(entry, "failed")
                self._gave_up(entry.name, receipt)
            else:
                self._finish(entry, "retry")
            return
        log.info("blob trigger %s blob=%s attempt=%d succeeded in %.3fs", self.spec.name,
                 entry.name, receipt.attempts, time.monotonic() - started)
        self._stats.add(self.spec.name, successes=1)
        self._finish(entry, "done")

    def _finish(self, entry: _Running, state: str) -> None:
        with stage("blob trigger: receipt"), entry.lock:
            entry.done = True
            self._update(entry, state=state, heartbeat=time.time())
        self._wake.set()

    def _gave_up(self, name: str, receipt: Receipt) -> None:
        self._stats.add(self.spec.name, poisoned=1)
        log.error("blob trigger %s blob=%s: giving up after %d attempts (version %s)",
                  self.spec.name, name, receipt.attempts, receipt.blob_etag)
