"""The local host: runs a FunctionApp's own functions with the Azure Functions host's semantics.

It reads the app's trigger declarations (``app.get_functions()``) and ``host.json``, installs the
process-wide runtime (:func:`shared.service.runtime.configure`), then runs a listener per function: queue
triggers (:mod:`.queues`), blob triggers (:mod:`.blobs`), timer triggers (:mod:`.timers`) and HTTP
triggers (:mod:`.http`, on 127.0.0.1). Other trigger types are reported and skipped. Tests call
:meth:`LocalHost.drain` to step the system until every trigger has nothing left to do.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from shared.local.blobs import BlobTrigger
from shared.local.hostconfig import HostConfig, load_host_config
from shared.local.http import FunctionsAsgiApp, HttpServer
from shared.local.invocation import FunctionSpec, FunctionStats, StatsBook, resolve_expression
from shared.local.queues import QueueConsumer
from shared.local.timers import TimerTrigger
from shared.service import runtime
from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger("parallelrun.local.host")

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_APP = PROJECT_ROOT / "function_app.py"
DEFAULT_HOST_JSON = PROJECT_ROOT / "host.json"
LEASE_ENV = "PARALLELRUN_LOCAL_LEASE_S"
DEFAULT_LEASE_S = 30.0


def load_app(path: str | Path = DEFAULT_APP) -> Any:
    """Execute a function app module file afresh and return its FunctionApp (``app``).

    Every call builds a new module object (under a unique name), so each call yields a FunctionApp
    whose ``get_functions()`` has not been called yet. The project root goes first on
    ``sys.path`` and the file's own folder (the app root, which the Functions Python worker puts
    on the path) last, so a test app's folder cannot shadow the project's modules.
    """
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"function app module not found: {path}")
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    name = f"_parallelrun_app_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    app = getattr(module, "app", None)
    if app is None or not hasattr(app, "get_functions"):
        raise ImportError(f"{path} defines no FunctionApp named 'app'")
    return app


def default_lease_s() -> float:
    return float(os.environ.get(LEASE_ENV) or DEFAULT_LEASE_S)



class _Listener(Protocol):
    """What the host starts and stops: a queue consumer, a blob trigger, a timer."""

    def start(self) -> Any: ...
    def stop(self) -> Any: ...


class _Polling(_Listener, Protocol):
    """A listener that polls storage (queue consumers, blob triggers): it can poll fast."""

    def set_fast(self, fast: bool) -> Any: ...


class LocalHost:
    """Runs one app's functions over one :class:`Settings`; one instance stands for one node."""

    def __init__(self, app: Any, settings: Settings, *, host_json: str | Path = DEFAULT_HOST_JSON,
                 config: HostConfig | None = None, node_id: str = "node0",
                 http_port: int | None = None, lease_s: float | None = None) -> None:
        self.settings = settings
        self.node_id = node_id
        self.config = config if config is not None else load_host_config(host_json)
        self.lease_s = lease_s if lease_s is not None else default_lease_s()
        if self.lease_s < 1:
            raise ValueError(f"lease_s must be at least 1 second, not {self.lease_s}")
        self.functions = [FunctionSpec.from_function(f) for f in app.get_functions()]
        self._runtime = runtime.configure(settings, node_id)
        self.storage: Storage = self._runtime.storage
        self._stats = StatsBook()
        self.consumers: list[QueueConsumer] = []
        self.blob_triggers: list[BlobTrigger] = []
        self.timers: list[TimerTrigger] = []
        http_specs: list[FunctionSpec] = []
        for spec in self.functions:
            self._add_listener(spec, http_specs)
        self.asgi_app = FunctionsAsgiApp(http_specs, self.config.route_prefix, self._stats,
                                         local_key=settings.local_key,
                                         max_body_bytes=settings.limits.max_request_bytes)
        self._http: HttpServer | None = (HttpServer(self.asgi_app, http_port)
                                         if http_port is not None else None)
        self._state = "new"

    def _add_listener(self, spec: FunctionSpec, http_specs: list[FunctionSpec]) -> None:
        for binding in spec.extra_bindings:
            if not (binding.get("type") == "http" and binding.get("name") == "$return"):
                log.warning("function %s: %s binding %r is not supported locally and is ignored",
                            spec.name, binding.get("type"), binding.get("name"))
        if spec.trigger_type == "queueTrigger":
            queue = resolve_expression(self.settings, str(spec.trigger["queueName"]))
            self.consumers.append(QueueConsumer(
                spec, self.storage, queue, self.config.queues, self._stats,
                lease_s=self.lease_s, poison_suffix=self.settings.poison_suffix))
        elif spec.trigger_type == "blobTrigger":
            self.blob_triggers.append(BlobTrigger(
                spec, self.storage, self.settings, self._stats, node_id=self.node_id,
                lease_s=self.lease_s, concurrency=self.config.queues.batch_size))
        elif spec.trigger_type == "timerTrigger":
            self.timers.append(TimerTrigger(spec, self.storage, self.settings, self._stats,
                                            node_id=self.node_id))
        elif spec.trigger_type == "httpTrigger":
            http_specs.append(spec)
        else:
            log.warning("function %s: %s triggers are not supported by the local host; skipped",
                        spec.name, spec.trigger_type)

    # -- lifecycle -------------------------------------------------------------------------
    def _listeners(self) -> tuple[_Listener, ...]:
        return (*self.consumers, *self.blob_triggers, *self.timers)

    def start(self) -> LocalHost:
        """Start every listener in background threads (idempotent); returns ``self``."""
        if self._state == "started":
            return self
        if self._state == "stopped":
            raise RuntimeError("a stopped LocalHost cannot be started again; build a new one")
        self._state = "started"
        try:
            self.storage.ensure()
            for listener in self._listeners():
                listener.start()
            if self._http is not None:
                self._http.start()
            self._runtime.warm_up()
        except BaseException:
            self.stop()
            raise
        log.info("local host %s started: %d queue, %d blob, %d timer, %d http function(s)",
                 self.node_id, len(self.consumers), len(self.blob_triggers), len(self.timers),
                 len(self.asgi_app.routes))
        return self

    def stop(self) -> None:
        """Stop polling, wait for in-flight invocations, shut down HTTP and the runtime."""
        if self._state == "stopped":
            return
        started, self._state = self._state == "started", "stopped"
        for listener in self._listeners():
            listener.stop()   # a listener that never started just releases its threads
        if self._http is not None:
            self._http.stop()
        self._runtime.close()
        if started:
            log.info("local host %s stopped", self.node_id)

    def __enter__(self) -> LocalHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Start, block until SIGINT, SIGTERM or SIGHUP, then stop cleanly (main thread only)."""
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            log.info("local host %s: signal %d, stopping", self.node_id, signum)
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM,
                                                       signal.SIGHUP)}
        try:
            self.start()
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()

    # -- observation -----------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        """Base URL of the HTTP server, e.g. ``http://127.0.0.1:7071`` (routes add the prefix)."""
        if self._http is None:
            raise RuntimeError("this LocalHost serves no HTTP (http_port=None)")
        return self._http.url

    @property
    def stats(self) -> dict[str, FunctionStats]:
        """Invocations, successes, failures and poisoned messages per function name."""
        return self._stats.snapshot()

    def busy(self) -> list[str]:
        """What still has work: ``queue <name>: N message(s), M in flight``, ``blobs <path>: N``."""
        found = []
        for consumer in self.consumers:
            in_flight = consumer.in_flight
            count = consumer.approximate_count()
            if count or in_flight:
                found.append(f"queue {consumer.queue_name}: {count} message(s), "
                             f"{in_flight} in flight")
        for trigger in self.blob_triggers:
            pending = trigger.pending()
            if pending:
                found.append(f"blobs {trigger.path}: {pending} pending")
        return found

    def drain(self, timeout_s: float = 120.0, *, quiet_checks: int = 2) -> None:
        """Process until no trigger has work left, checked ``quiet_checks`` times in a row.

        Starts the host if needed. Polling is fast (50 ms) meanwhile. Messages that are invisible
        (running elsewhere, or released after a failure with ``visibilityTimeout``) count as
        work: Azurite's and Azure's approximate message count include them.
        """
        self.start()
        listeners: tuple[_Polling, ...] = (*self.consumers, *self.blob_triggers)
        for listener in listeners:
            listener.set_fast(True)
        deadline = time.monotonic() + timeout_s
        try:
            quiet = 0
            while quiet < quiet_checks:
                busy = self.busy()
                quiet = 0 if busy else quiet + 1
                if busy and time.monotonic() > deadline:
                    raise TimeoutError(f"drain timed out after {timeout_s:.0f}s; still busy: "
                                       + "; ".join(busy))
                time.sleep(0.05)
        finally:
            for listener in listeners:
                listener.set_fast(False)
