"""N local host processes standing in for N Function App instances (``--nodes N``).

Each node is ``python -m shared.local.node`` with the environment ``os.environ + settings.to_env()``
and its stdout/stderr in ``<log_dir>/<node id>.log``. Only node 0 serves HTTP. The cluster waits for
each node's readiness line and, when HTTP is served, for ``GET /<routePrefix>/health`` to answer.
:meth:`kill` (SIGKILL) and :meth:`restart` exist for chaos tests.

Every node holds the read end of a pipe whose write end only the cluster's process has: if that
process dies, even by SIGKILL, the nodes see end-of-file and stop (``--parent-fd``).

``supervise=True`` (``parallelrun up``) does what the Functions host does for a crashed worker: a
node that exits without being asked to is started again, with a warning (``node1 exited with code
-9; restarting in 1 s (restart 1)``) and an exponential backoff (:func:`restart_delay`), so a node
that crashes at start does not spin. A node that stayed up for ``STABLE_S`` starts the count
afresh. :meth:`kill` and :meth:`stop` are intentional and never restarted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from shared.local.host import DEFAULT_APP, DEFAULT_HOST_JSON, PROJECT_ROOT
from shared.local.hostconfig import load_host_config
from shared.local.node import READY
from shared.local.procs import children
from shared.settings import Settings
from shared.storage import Storage

log = logging.getLogger("parallelrun.local.cluster")

STABLE_S = 60.0   # a node that ran this long before it died is restarted without delay growth


def restart_delay(restarts: int, base_s: float = 1.0, max_s: float = 30.0) -> float:
    """Seconds to wait before restart number ``restarts`` (1, 2, ...): base, 2 x base, ... max."""
    return min(max_s, base_s * 2 ** max(0, restarts - 1))


@dataclass
class _Node:
    node_id: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    url: str | None = None
    wanted: bool = False       # it should be running (a death is unexpected)
    restarts: int = 0          # restarts since it last stayed up for STABLE_S
    started_at: float = 0.0


class LocalCluster:
    """Start, watch, kill and restart ``nodes`` local host processes over one :class:`Settings`."""

    def __init__(self, settings: Settings, nodes: int, http_port: int | None = None,
                 app_path: str | Path = DEFAULT_APP, *, log_dir: str | Path | None = None,
                 host_json: str | Path = DEFAULT_HOST_JSON, env: Mapping[str, str] | None = None,
                 startup_timeout_s: float = 60.0, supervise: bool = False,
                 restart_backoff_s: float = 1.0, max_restart_backoff_s: float = 30.0) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, not {nodes}")
        self.settings = settings
        self.http_port = http_port
        self.app_path = Path(app_path).resolve()
        self.host_json = Path(host_json).resolve()
        self.route_prefix = load_host_config(self.host_json).route_prefix
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="parallelrun-nodes-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.startup_timeout_s = startup_timeout_s
        self._env = {**os.environ, **settings.to_env(), **(env or {}), "PYTHONUNBUFFERED": "1"}
        self._env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PROJECT_ROOT), self._env.get("PYTHONPATH", "")) if p)
        self.nodes = [_Node(f"node{i}", self.log_dir / f"node{i}.log") for i in range(nodes)]
        self.supervise = supervise
        self.restart_backoff_s = restart_backoff_s
        self.max_restart_backoff_s = max_restart_backoff_s
        self._lock = threading.RLock()          # spawning and killing vs. the supervisor
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._pipe: tuple[int, int] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalCluster:
        """Start every node and wait until each is ready; on failure stop those that started."""
        self._stopping.clear()
        self._pipe = os.pipe()   # the nodes hold the read end; only this process the write end
        try:
            offsets = [self._spawn(i) for i in range(len(self.nodes))]
            for i, offset in enumerate(offsets):
                self._wait_ready(i, offset)
        except BaseException:
            self.stop(timeout_s=10)
            raise
        if self.supervise:
            self._supervisor = threading.Thread(target=self._supervise, name="node-supervisor",
                                                daemon=True)
            self._supervisor.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM every node (each finishes its in-flight invocations), SIGKILL stragglers
        together with their scoring processes."""
        self._stopping.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join()
        self._supervisor = None
        with self._lock:
            for node in self.nodes:
                node.wanted = False
                if node.process and node.process.poll() is None:
                    node.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            for node in self.nodes:
                if node.process:
                    try:
                        node.process.wait(max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        log.warning("%s did not stop within %.0fs; killing it", node.node_id,
                                    timeout_s)
                        self._kill_with_children(node.process)
                self._close_log(node)
            if self._pipe is not None:
                for fd in self._pipe:
                    if fd >= 0:
                        with contextlib.suppress(OSError):
                            os.close(fd)
                self._pipe = None

    def kill(self, index: int) -> None:
        """SIGKILL one node: its in-flight messages reappear once their lease runs out."""
        with self._lock:
            node = self.nodes[index]
            node.wanted = False   # on purpose: the supervisor leaves it dead
            if node.process and node.process.poll() is None:
                node.process.kill()
                node.process.wait()
                log.info("killed %s (pid %d)", node.node_id, node.process.pid)
            self._close_log(node)

    def abandon(self) -> None:
        """Let go of the nodes as a parent that died would (for tests): they see end-of-file on
        their pipe and stop by themselves, taking their scoring processes with them."""
        with self._lock:
            self._stopping.set()
            for node in self.nodes:
                node.wanted = False
            if self._pipe is not None:
                os.close(self._pipe[1])
                self._pipe = (self._pipe[0], -1)

    def restart(self, index: int) -> None:
        with self._lock:
            self.kill(index)
            self._wait_ready(index, self._spawn(index))

    def is_alive(self, index: int) -> bool:
        process = self.nodes[index].process
        return process is not None and process.poll() is None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def http_url(self) -> str:
        url = self.nodes[0].url
        if url is None:
            raise RuntimeError("this cluster serves no HTTP (http_port=None)")
        return url

    def log_path(self, index: int) -> Path:
        return self.nodes[index].log_path

    # -- stepping --------------------------------------------------------------------------
    def drain(self, timeout_s: float = 120.0, queues: Sequence[str] | None = None) -> None:
        """Wait until the queues (default: the settings' trigger queues) hold no message, visible
        or invisible, three checks in a row. Blob triggers are not observed from outside."""
        names = list(queues) if queues is not None else list(self.settings.queues)
        storage = Storage(self.settings)
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while quiet < 3:
            counts = {n: storage.queue(n).get_queue_properties().approximate_message_count
                      for n in names}
            busy = {n: c for n, c in counts.items() if c}
            quiet = 0 if busy else quiet + 1
            if busy and time.monotonic() > deadline:
                raise TimeoutError(f"cluster drain timed out after {timeout_s:.0f}s; "
                                   f"queues still holding messages: {busy}")
            time.sleep(0.1)

    # -- supervision -----------------------------------------------------------------------
    def _supervise(self) -> None:
        """Restart nodes that exited unexpectedly, with backoff (the supervisor thread)."""
        due: dict[int, float] = {}     # node index -> when to start it again
        while not self._stopping.wait(0.2):
            for i, node in enumerate(self.nodes):
                with self._lock:
                    if self._stopping.is_set() or not node.wanted or node.process is None:
                        continue
                    code = node.process.poll()
                    if code is None:
                        continue
                    if i not in due:
                        self._close_log(node)
                        if time.monotonic() - node.started_at >= STABLE_S:
                            node.restarts = 0
                        node.restarts += 1
                        delay = restart_delay(node.restarts, self.restart_backoff_s,
                                              self.max_restart_backoff_s)
                        log.warning("%s exited with code %s; restarting in %g s (restart %d)",
                                    node.node_id, code, delay, node.restarts)
                        due[i] = time.monotonic() + delay
                    if time.monotonic() < due[i]:
                        continue
                    del due[i]
                    try:
                        self._wait_ready(i, self._spawn(i))
                        log.warning("%s is back (pid %d)", node.node_id, node.process.pid)
                    except (RuntimeError, TimeoutError, OSError) as exc:
                        log.warning("%s did not come back: %s", node.node_id,
                                    str(exc).splitlines()[0])
                        if node.process is not None and node.process.poll() is None:
                            self._kill_with_children(node.process)

    @staticmethod
    def _kill_with_children(process: subprocess.Popen[bytes]) -> None:
        """SIGKILL a node and the process groups of its children (its scoring processes)."""
        kids = children(process.pid)
        process.kill()
        for kid in kids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(kid, signal.SIGKILL)
        process.wait()

    # -- internals -------------------------------------------------------------------------
    def _spawn(self, index: int) -> int:
        node = self.nodes[index]
        if self._pipe is None:
            raise RuntimeError("the cluster is not started")
        args = [sys.executable, "-m", "shared.local.node", "--node-id", node.node_id,
                "--app", str(self.app_path), "--host-json", str(self.host_json),
                "--parent-fd", str(self._pipe[0])]
        if index == 0 and self.http_port is not None:
            args += ["--http-port", str(self.http_port)]
        node.log_file = open(node.log_path, "ab")  # noqa: SIM115 - closed in _close_log
        offset = node.log_file.tell()
        node.process = subprocess.Popen(args, cwd=PROJECT_ROOT, env=self._env,
                                        stdin=subprocess.DEVNULL, stdout=node.log_file,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        pass_fds=(self._pipe[0],))
        node.wanted = True
        node.started_at = time.monotonic()
        log.info("started %s (pid %d), log %s", node.node_id, node.process.pid, node.log_path)
        return offset

    def _wait_ready(self, index: int, offset: int) -> None:
        node = self.nodes[index]
        marker = READY.format(node_id=node.node_id)
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            with open(node.log_path, "rb") as f:
                f.seek(offset)
                lines = f.read().decode(errors="replace").splitlines()
            ready = [line for line in lines if line.startswith(marker)]
            if ready:
                node.url = ready[0].partition(" http=")[2].strip() or None
                break
            if self._stopping.is_set() and self._supervisor is threading.current_thread():
                raise RuntimeError(f"{node.node_id}: the cluster is stopping")
            if node.process is None or node.process.poll() is not None:
                raise RuntimeError(f"{node.node_id} exited during startup; last lines of "
                                   f"{node.log_path}:\n" + "\n".join(lines[-20:]))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.node_id} was not ready within "
                                   f"{self.startup_timeout_s:.0f}s; see {node.log_path}")
            time.sleep(0.05)
        if node.url:
            path = "/".join(p for p in (self.route_prefix, "health") if p)
            self._wait_http(f"{node.url}/{path}", deadline)

    @staticmethod
    def _wait_http(url: str, deadline: float) -> None:
        """Wait for any non-5xx answer (404 just means the app has no health function)."""
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer")
            time.sleep(0.1)

    @staticmethod
    def _close_log(node: _Node) -> None:
        if node.log_file is not None:
            node.log_file.close()
            node.log_file = None
