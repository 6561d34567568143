"""Scoring processes owned by the worker: ``process_count_per_node`` children per job key, each
having run ``init()`` once.

A child that exceeds ``run_invocation_timeout`` is killed and replaced (the next lease starts a new
one, which runs ``init()`` again); a child that dies (``os._exit``, a segfault, the OOM killer)
fails one try and is replaced. The worker process itself lives on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .scoring import ScoringConfig
from .settings import Settings

log = logging.getLogger("parallelrun.pool")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
INIT_TIMEOUT_S = 600.0
WARM_CHECK_S = 0.25   # how often the pool looks at its spares


@dataclass(frozen=True)
class RunOutcome:
    """The result of one ``run()`` try."""

    kind: str                 # "ok" | "error" | "timeout" | "crash" | "init"
    text: str | bytes = ""    # the rows (kind == "ok")
    rows: int = 0
    loaded: int = -1          # rows of a tabular mini-batch, once read (-1: not a table, or unknown)
    header: str = ""          # output_format csv: the header line of a DataFrame result
    message: str = ""
    traceback: str = ""
    seconds: float = 0.0
    pid: int = 0
    process: str = ""

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


class ScoringProcess:
    """One child running ``shared.scoring`` over a private pair of pipes.

    Started with a config it imports the entry script and runs ``init()`` at once. Started without
    one (a warm spare) it imports the common libraries (``shared.scoring.WARM_IMPORTS``) and waits
    for :meth:`assign`.
    """

    def __init__(self, config: ScoringConfig | None, env: dict[str, str]) -> None:
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shared.scoring", str(cmd_r), str(res_w),
             *(() if config is not None else ("--warm",))],
            pass_fds=(cmd_r, res_w), env=env, cwd=str(PROJECT_ROOT),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        os.close(cmd_r)
        os.close(res_w)
        self._to_child = Connection(cmd_w, readable=False)
        self._from_child = Connection(res_r, writable=False)
        self.pid = self.proc.pid
        self.healthy = True
        self.config = ScoringConfig(job_id="", entry_script="", source_dir="", work_dir="")
        self.warm: bool | None = None      # a spare: None until it reports its imports done
        if config is not None:
            self.assign(config)

    def is_warm(self) -> bool:
        """A spare that has imported its libraries (and may run at normal priority again)."""
        if self.warm is None and self.healthy and self.proc.poll() is None:
            with contextlib.suppress(EOFError, OSError):
                if self._from_child.poll(0):
                    reply = self._from_child.recv()
                    self.warm = reply[0] == "warm" and bool(reply[1])
        return bool(self.warm)

    def assign(self, config: ScoringConfig) -> None:
        """Give the process its job: it prepares the environment, imports the script, runs init()."""
        self.config = config
        try:
            self._to_child.send(config)
        except OSError:   # a spare that died while waiting: wait_ready() reports it
            self.healthy = False

    def wait_ready(self, timeout_s: float = INIT_TIMEOUT_S) -> RunOutcome | None:
        """None when ``init()`` succeeded, else an outcome of kind "init"."""
        reply = self._receive(timeout_s)
        if reply is None or reply[0] != "ready":
            self.kill()
            if reply is None:
                return RunOutcome("init", message=self._death_note("during init()"), pid=self.pid, process=self.config.process_name)
            return RunOutcome("init", message=reply[1], traceback=reply[2], pid=self.pid, process=self.config.process_name)
        return None

    def run(self, payload: list[str] | dict[str, Any], context: dict[str, Any],
            timeout_s: float) -> RunOutcome:
        """``run()`` on file paths, or on a table the child loads first (``payload`` a dict)."""
        started = time.perf_counter()
        try:
            self._to_child.send(("run", payload, context))
        except OSError:
            self.kill()
            return RunOutcome("crash", message=self._death_note("before run()"), pid=self.pid, process=self.config.process_name)
        loaded = -1
        if isinstance(payload, dict):   # a table: reading it is not part of run()'s timeout
            reply = self._receive(INIT_TIMEOUT_S)
            if reply is not None and reply[0] == "loaded":
                loaded = reply[1]
                reply = self._receive(timeout_s)
        else:
            reply = self._receive(timeout_s)
        outcome = self._outcome(reply, timeout_s, time.perf_counter() - started)
        return replace(outcome, loaded=loaded) if loaded >= 0 else outcome

    def _outcome(self, reply: Any, timeout_s: float, elapsed: float) -> RunOutcome:
        if reply is None:
            if self.proc.poll() is None:
                self.kill()
                return RunOutcome("timeout", message=f"run() exceeded run_invocation_timeout "
                                  f"({timeout_s:g} s); its process was killed and replaced",
                                  seconds=elapsed, pid=self.pid, process=self.config.process_name)
            self.kill()
            return RunOutcome("crash", message=self._death_note("in run()"), seconds=elapsed,
                              pid=self.pid, process=self.config.process_name)
        if reply[0] == "ok":
            return RunOutcome("ok", text=reply[1], rows=reply[2], seconds=reply[3], header=reply[4],
                              pid=self.pid, process=self.config.process_name)
        return RunOutcome("error", message=reply[1], traceback=reply[2], seconds=reply[3],
                          pid=self.pid, process=self.config.process_name)

    def _receive(self, timeout_s: float) -> Any:
        try:
            if not self._from_child.poll(timeout_s):
                return None
            return self._from_child.recv()
        except (EOFError, OSError):
            self.proc.wait(5)
            return None

    def _death_note(self, when: str) -> str:
        code = self.proc.poll()
        if code is None:
            return f"scoring process {self.pid} stopped answering {when}"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else code
            return f"scoring process {self.pid} was killed by signal {name} {when}"
        return f"scoring process {self.pid} exited with code {code} {when}"

    def kill(self) -> None:
        self.healthy = False
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        for conn in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                conn.close()

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the script to ``shutdown()``, then make sure the process is gone."""
        if self.healthy and self.proc.poll() is None:
            with contextlib.suppress(OSError, EOFError):
                self._to_child.send(("shutdown",))
                self._receive(timeout_s)
        self.kill()


class _Slot:
    """The processes of one job key on this node."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = threading.Semaphore(size)
        self.idle: list[ScoringProcess] = []
        self.last_used = time.monotonic()


class ScoringPool:
    """Processes per job key (code snapshot, models, environment); at most ``size`` per key.

    Besides them the pool keeps ``settings.warm_processes`` spares that have already imported the
    common libraries: a job's new process is a spare when one is ready (unless the job sets
    environment variables, which must be in place before those imports), so a job's first try pays
    for its script's import and ``init()`` but not for starting Python, numpy, pandas, pyarrow and
    onnxruntime. A spare imports under ``SCHED_IDLE`` (it gets CPU only when nothing else wants it)
    and is handed out only once it reports its imports done, so it is replaced at once and never
    takes CPU from a running job. Where a spare cannot return to normal priority, spares are turned
    off.
    """

    def __init__(self, settings: Settings, node_id: str = "node0", max_idle_keys: int = 2) -> None:
        self.settings = settings
        self.node_id = node_id
        self.max_idle_keys = max_idle_keys
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._serial = 0
        self._spares: list[ScoringProcess] = []
        self._closed = threading.Event()
        self._warmer: threading.Thread | None = None

    def warm_up(self) -> None:
        """Start keeping ``settings.warm_processes`` spares (idempotent; 0 turns spares off)."""
        with self._lock:
            if self._warmer is not None or self.settings.warm_processes <= 0 or self._closed.is_set():
                return
            self._warmer = threading.Thread(target=self._keep_warm, name="pool-warmer", daemon=True)
        self._warmer.start()

    def _keep_warm(self) -> None:
        while not self._closed.wait(WARM_CHECK_S):
            with self._lock:
                self._spares = [p for p in self._spares if p.healthy and p.proc.poll() is None]
                for spare in self._spares:
                    spare.is_warm()                # collects the reports that have come in
                if any(spare.warm is False for spare in self._spares):
                    log.warning("node=%s: warm scoring processes turned off: a spare could not "
                                "return to normal priority after its imports", self.node_id)
                    for spare in self._spares:
                        spare.kill()
                    self._spares = []
                    return
                if len(self._spares) >= self.settings.warm_processes:
                    continue
            spare = ScoringProcess(None, self._env())
            with self._lock:
                if not self._closed.is_set():
                    self._spares.append(spare)
                    spare = None
            if spare is not None:   # closed meanwhile
                spare.kill()

    @property
    def spares(self) -> int:
        """Spares alive and warm right now."""
        with self._lock:
            return sum(1 for p in self._spares if p.proc.poll() is None and p.is_warm())

    def _take_spare(self) -> ScoringProcess | None:
        """A warm spare, if one is ready (one still importing is left to finish)."""
        with self._lock:
            for spare in self._spares:
                if spare.proc.poll() is None and spare.is_warm():
                    self._spares.remove(spare)
                    return spare
        return None

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self.settings.to_env()}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
        return env

    @contextlib.contextmanager
    def lease(self, key: str, config: ScoringConfig, size: int) -> Iterator[ScoringProcess | RunOutcome]:
        """Yield a ready process for ``key`` (waiting for a free one), or the failed init outcome."""
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot(size)
                self._evict_idle(keep=key)
        slot.free.acquire()
        proc: ScoringProcess | None = None
        try:
            with self._lock:
                proc = slot.idle.pop() if slot.idle else None
                slot.last_used = time.monotonic()
            if proc is None:
                proc = self._start(config)
                failed = proc.wait_ready()
                if failed is not None:
                    yield failed
                    return
            yield proc
        finally:
            with self._lock:
                if proc is not None and proc.healthy and proc.proc.poll() is None:
                    slot.idle.append(proc)
            slot.free.release()

    def _start(self, config: ScoringConfig) -> ScoringProcess:
        with self._lock:
            self._serial += 1
            name = f"process{self._serial:03d}"
        work_dir = str(Path(config.work_dir) / name)
        cfg = ScoringConfig(**{**config.__dict__, "work_dir": work_dir, "process_name": name,
                               "node_id": self.node_id})
        spare = None if cfg.environment else self._take_spare()
        if spare is not None:
            spare.assign(cfg)
            if not spare.healthy:      # it died after it was taken: not the job's failure
                spare.kill()
                spare = None
        proc = spare or ScoringProcess(cfg, self._env())
        log.info("scoring process started: job=%s node=%s process=%s pid=%d%s", config.job_id,
                 self.node_id, name, proc.pid, " (warm spare)" if spare is not None else "")
        return proc

    def _evict_idle(self, keep: str) -> None:
        """Close idle processes of the least recently used other keys (caller holds the lock)."""
        others = sorted((s.last_used, k) for k, s in self._slots.items() if k != keep)
        for _, key in others[: max(0, len(others) - self.max_idle_keys + 1)]:
            slot = self._slots[key]
            while slot.idle:
                threading.Thread(target=slot.idle.pop().close, daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            procs = [p for s in self._slots.values() for p in s.idle]
            spares, self._spares = self._spares, []
            self._slots.clear()
        for p in procs:
            p.close()
        for p in spares:
            p.kill()
