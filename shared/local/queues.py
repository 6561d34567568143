"""A queue-trigger listener with the Azure Functions host's semantics.

* Poll the queue; when it is empty, back off exponentially (randomised) up to ``maxPollingInterval``.
* Fetch ``batchSize`` messages whenever no more than ``newBatchThreshold`` are in flight, and run
  them on a thread pool of ``batchSize + newBatchThreshold`` workers.
* Messages are received invisible for ``lease_s`` and their visibility is renewed every
  ``lease_s / 3`` while the invocation runs, so a long invocation is never handed to a second
  consumer; the newest pop receipt is kept for the final delete or release.
* Success deletes the message. A failure logs the exception and either releases the message
  (visible again after ``visibilityTimeout``; its dequeue count grows on the next receive) or, once
  its dequeue count has reached ``maxDequeueCount``, copies its content unchanged to
  ``<queue><poison suffix>`` and deletes it. A message received with a dequeue count already above
  ``maxDequeueCount`` (its earlier consumers died) goes to the poison queue without running.

Messages are read and copied as they are on the wire; the base64 decoding the host performs
(``messageEncoding``) is done per message, so an undecodable message fails like any other.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import azure.functions as func
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.queue import QueueClient, QueueMessage

from shared.local.cpustats import stage
from shared.local.hostconfig import QueueHostConfig
from shared.local.invocation import FunctionSpec, StatsBook
from shared.storage import Storage

log = logging.getLogger("parallelrun.local.queues")

MIN_POLL_S = 0.1     # first back-off step after an empty receive
JITTER = 0.2         # the host's randomisation of each back-off step below the maximum


def idle_wait(delay: float, maximum: float, rand: Callable[[float, float], float] = random.uniform
              ) -> tuple[float, float]:
    """After an empty receive: the next back-off step (doubled, at most ``maximum``) and how long
    to wait now. As the Functions host's randomised exponential back-off, each step below the
    maximum is varied by +-20 %, so a host's queues (and several hosts) do not poll in step; at
    the maximum the wait is the maximum."""
    delay = min(delay * 2, maximum)
    return delay, delay if delay >= maximum else delay * rand(1 - JITTER, 1 + JITTER)
FAST_POLL_S = 0.05   # polling interval while the host is draining


@dataclass
class InFlight:
    """One message being processed: its newest pop receipt, guarded against concurrent renewal."""

    message: QueueMessage
    pop_receipt: str
    renewed_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    lost: bool = False


class QueueConsumer:
    """Runs one queue-triggered function against one queue."""

    def __init__(self, spec: FunctionSpec, storage: Storage, queue_name: str,
                 config: QueueHostConfig, stats: StatsBook, *, lease_s: float,
                 poison_suffix: str = "-poison") -> None:
        self.spec = spec
        self.queue_name = queue_name
        self.poison_name = queue_name + poison_suffix
        self.config = config
        self.lease_s = lease_s
        self._stats = stats
        # No encode/decode policy: content is sent and returned exactly as on the wire.
        raw = {"message_encode_policy": None, "message_decode_policy": None}
        self._queue: QueueClient = storage.queue_service.get_queue_client(queue_name, **raw)
        self._poison: QueueClient = storage.queue_service.get_queue_client(self.poison_name, **raw)
        self._pool = ThreadPoolExecutor(config.max_concurrency,
                                        thread_name_prefix=f"fn-{spec.name}")
        self._in_flight: dict[str, InFlight] = {}
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._finished = threading.Event()   # set once the pool has no more invocations
        self._fast = False
        self._poller: threading.Thread | None = None
        self._renewer: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        for queue in (self._queue, self._poison):
            try:
                queue.create_queue()
            except ResourceExistsError:
                pass
        self._poller = threading.Thread(target=self._poll_loop, name=f"poll-{self.spec.name}",
                                        daemon=True)
        self._renewer = threading.Thread(target=self._renew_loop, name=f"renew-{self.spec.name}",
                                         daemon=True)
        self._poller.start()
        self._renewer.start()
        log.info("queue trigger %s listening on %s (batch=%d threshold=%d lease=%.1fs)",
                 self.spec.name, self.queue_name, self.config.batch_size,
                 self.config.new_batch_threshold, self.lease_s)

    def stop(self) -> None:
        """Stop fetching, let in-flight invocations finish (renewing their leases), then return."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            self._lock.notify_all()
        if self._poller is not None:
            self._poller.join()
        self._pool.shutdown(wait=True)
        self._finished.set()
        with self._lock:
            self._lock.notify_all()
        if self._renewer is not None:
            self._renewer.join()

    def set_fast(self, fast: bool) -> None:
        """Drain mode: poll every 50 ms instead of backing off."""
        self._fast = fast
        self._wake.set()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def approximate_count(self) -> int:
        """Messages in the queue, visible or not (Azure and Azurite both count invisible ones)."""
        return self._queue.get_queue_properties().approximate_message_count or 0

    # -- polling ---------------------------------------------------------------------------
    def _poll_loop(self) -> None:
        delay = MIN_POLL_S
        while not self._stop.is_set():
            with self._lock:
                while (len(self._in_flight) > self.config.new_batch_threshold
                       and not self._stop.is_set()):
                    self._lock.wait(0.5)
            if self._stop.is_set():
                return
            try:
                with stage("queue: receive"):
                    received = self._receive()
            except AzureError as exc:
                log.warning("queue trigger %s: receive from %s failed: %s",
                            self.spec.name, self.queue_name, exc)
                received = 0
            if received:
                delay = MIN_POLL_S
                continue
            delay, wait = idle_wait(delay, self.config.max_polling_interval_s)
            self._wake.wait(FAST_POLL_S if self._fast else wait)
            self._wake.clear()

    def _receive(self) -> int:
        lease = max(1, math.ceil(self.lease_s))
        messages = list(self._queue.receive_messages(
            messages_per_page=self.config.batch_size, max_messages=self.config.batch_size,
            visibility_timeout=lease))
        for message in messages:
            entry = InFlight(message, message.pop_receipt or "", time.monotonic())
            with self._lock:
                self._in_flight[message.id] = entry
            self._pool.submit(self._process, entry)
        return len(messages)

    # -- one message -----------------------------------------------------------------------
    def _process(self, entry: InFlight) -> None:
        message = entry.message
        try:
            if (message.dequeue_count or 0) > self.config.max_dequeue_count:
                log.error("queue trigger %s msg=%s dequeue=%d: above maxDequeueCount=%d, "
                          "moving to %s without running", self.spec.name, message.id,
                          message.dequeue_count, self.config.max_dequeue_count, self.poison_name)
                self._finish(entry, self._to_poison)
                return
            self._stats.add(self.spec.name, invocations=1)
            started = time.monotonic()
            try:
                with stage("queue: binding"):
                    binding = self._binding(message)
                self.spec.invoke(binding)
            except Exception:  # noqa: BLE001 - any failure of user code is a failed invocation
                log.exception("queue trigger %s msg=%s dequeue=%d failed after %.3fs",
                              self.spec.name, message.id, message.dequeue_count,
                              time.monotonic() - started)
                self._stats.add(self.spec.name, failures=1)
                self._finish(entry, self._to_poison if (message.dequeue_count or 0)
                             >= self.config.max_dequeue_count else self._release)
                return
            log.info("queue trigger %s msg=%s dequeue=%d succeeded in %.3fs", self.spec.name,
                     message.id, message.dequeue_count, time.monotonic() - started)
            self._stats.add(self.spec.name, successes=1)
            self._finish(entry, self._delete)
        except Exception:  # noqa: BLE001 - a host bug must not vanish inside the thread pool
            log.exception("queue trigger %s msg=%s: unexpected host error; the message will "
                          "reappear when its lease expires", self.spec.name, message.id)
        finally:
            with self._lock:
                self._in_flight.pop(message.id, None)
                self._lock.notify_all()

    def _binding(self, message: QueueMessage) -> func.queue.QueueMessage:
        content = message.content or ""
        if self.config.message_encoding == "base64":
            try:
                body = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"message {message.id} is not valid base64 "
                                 "(host.json messageEncoding is base64)") from exc
        else:
            body = content.encode("utf-8")
        return func.queue.QueueMessage(
            id=message.id, body=body, dequeue_count=message.dequeue_count,
            insertion_time=message.inserted_on, expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on, pop_receipt=message.pop_receipt)

    def _finish(self, entry: InFlight, action: Callable[[InFlight, str], None]) -> None:
        with stage("queue: delete or release"), entry.lock:
            entry.done = True
            if entry.lost:
                log.warning("queue trigger %s msg=%s: lease was lost, leaving the message to "
                            "its new consumer", self.spec.name, entry.message.id)
                return
            try:
                action(entry, entry.pop_receipt)
            except AzureError as exc:
                log.warning("queue trigger %s msg=%s dequeue=%d: %s failed (lease lost?): %s",
                            self.spec.name, entry.message.id, entry.message.dequeue_count,
                            action.__name__.strip("_"), exc)

    def _delete(self, entry: InFlight, pop_receipt: str) -> None:
        self._queue.delete_message(entry.message.id, pop_receipt)

    def _release(self, entry: InFlight, pop_receipt: str) -> None:
        self._queue.update_message(entry.message.id, pop_receipt,
                                   visibility_timeout=math.ceil(self.config.visibility_timeout_s))
        log.info("queue trigger %s msg=%s dequeue=%d released, visible again in %.0fs",
                 self.spec.name, entry.message.id, entry.message.dequeue_count,
                 self.config.visibility_timeout_s)

    def _to_poison(self, entry: InFlight, pop_receipt: str) -> None:
        self._poison.send_message(entry.message.content)
        self._queue.delete_message(entry.message.id, pop_receipt)
        self._stats.add(self.spec.name, poisoned=1)
        log.error("queue trigger %s msg=%s dequeue=%d moved to poison queue %s",
                  self.spec.name, entry.message.id, entry.message.dequeue_count, self.poison_name)

    # -- lease renewal ---------------------------------------------------------------------
    def _renew_loop(self) -> None:
        every = self.lease_s / 3
        while not self._finished.is_set():
            with self._lock:
                self._lock.wait(min(every, 1.0) / 2)
                entries = list(self._in_flight.values())
            for entry in entries:
                if time.monotonic() - entry.renewed_at >= every:
                    with stage("queue: lease renewal"):
                        self._renew(entry)

    def _renew(self, entry: InFlight) -> None:
        with entry.lock:
            if entry.done or entry.lost:
                return
            try:
                updated = self._queue.update_message(
                    entry.message.id, entry.pop_receipt,
                    visibility_timeout=max(1, math.ceil(self.lease_s)))
            except AzureError as exc:
                # 404: the message is gone; 400: pop receipt mismatch - someone else holds it now.
                entry.lost = isinstance(exc, HttpResponseError) and exc.status_code in (400, 404)
                log.warning("queue trigger %s msg=%s dequeue=%d: could not renew the lease%s: %s",
                            self.spec.name, entry.message.id, entry.message.dequeue_count,
                            " (lost)" if entry.lost else "", exc)
                return
            entry.pop_receipt = updated.pop_receipt or entry.pop_receipt
            entry.renewed_at = time.monotonic()
