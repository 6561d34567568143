"""Scoring processes owned by the worker: ``process_count_per_node`` children per job key, each
having run ``init()`` once (:mod:`shared.service.working.process` is one of them).

A child that exceeds ``run_invocation_timeout`` is killed and replaced (the next lease starts a new
one, which runs ``init()`` again); a child that dies (``os._exit``, a segfault, the OOM killer)
fails one try and is replaced. The worker process itself lives on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from shared.scoring import protocol, reaper
from shared.scoring.protocol import RunOutcome, ScoringConfig
from shared.service.working import baseview
from shared.service.working.process import ScoringProcess, child_env, holds_secret, with_python_path
from shared.settings import Settings

log = logging.getLogger("parallelrun.pool")

WARM_CHECK_S = 0.25   # how often the pool looks at its spares


class _Slot:
    """The processes of one job key on this node."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = threading.Semaphore(size)
        self.idle: list[ScoringProcess] = []
        self.starting: list[ScoringProcess] = []   # started ahead (:meth:`ScoringPool.prestart`)
        self.leased = 0
        self.reserved = 0                           # being started ahead right now
        self.last_used = time.monotonic()

    @property
    def count(self) -> int:
        """Processes of this key: leased, idle, or starting (at most ``size``)."""
        return self.leased + len(self.idle) + len(self.starting) + self.reserved


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
        if holds_secret(settings) and not reaper.hide_from_children():
            log.warning("node=%s: the worker could not make itself undumpable: scoring processes "
                        "of the same user may read its environment in /proc", node_id)
        self.settings = settings
        self.node_id = node_id
        self.max_idle_keys = max_idle_keys
        self._lock = threading.Lock()
        self._started = threading.Condition(self._lock)   # a process started ahead is in place
        self._slots: dict[str, _Slot] = {}
        self._serial = 0
        self._spares: list[ScoringProcess] = []
        self._closed = threading.Event()
        self._warmer: threading.Thread | None = None
        self._home: Path | None = None

    def warm_up(self) -> None:
        """Start keeping ``settings.warm_processes`` spares (idempotent; 0 turns spares off)."""
        with self._lock:
            if self._warmer is not None or self.settings.warm_processes <= 0 or self._closed.is_set():
                return
            self._warmer = threading.Thread(target=self._keep_warm, name="pool-warmer", daemon=True)
        self._warmer.start()

    def _reap_idle(self) -> None:
        """Idle processes that died (the OOM killer, a kill from outside) are retired at once, not
        when next leased, which may be never: what their scripts started is killed with them."""
        with self._lock:
            dead = [p for slot in self._slots.values() for p in slot.idle if not p.alive()]
            for slot in self._slots.values():
                slot.idle = [p for p in slot.idle if p not in dead]
        for proc in dead:
            log.warning("job=%s: idle scoring process %s (pid %d) died (%s); retired",
                        proc.config.job_id, proc.config.process_name, proc.pid,
                        proc._death_note("while idle"))
            proc.kill()

    def _keep_warm(self) -> None:
        while not self._closed.wait(WARM_CHECK_S):
            self._reap_idle()
            with self._lock:
                for dead in [p for p in self._spares if not p.alive()]:
                    dead.kill()
                    self._spares.remove(dead)
                for warm in self._spares:
                    warm.is_warm()                # collects the reports that have come in
                if any(p.warm is False for p in self._spares):
                    log.warning("node=%s: warm scoring processes turned off: a spare could not "
                                "return to normal priority after its imports", self.node_id)
                    for p in self._spares:
                        p.kill()
                    self._spares = []
                    return
                if len(self._spares) >= self.settings.warm_processes:
                    continue
            spare = ScoringProcess(None, self._env(), self.limits)
            with self._lock:
                kept = not self._closed.is_set()
                if kept:
                    self._spares.append(spare)
            if not kept:   # closed meanwhile
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
        """A scoring process's environment, from an allow-list (:func:`child_env`), plus the
        sandbox's settings (no secrets), which the process applies before the script runs."""
        with self._lock:
            if self._home is None:   # private to this pool: mode 0700, removed at close
                if self.settings.scratch_dir:   # the host's configured scratch: its processes there
                    self._home = Path(self.settings.scratch_dir) / self.node_id / "spares"
                    self._home.mkdir(mode=0o700, parents=True, exist_ok=True)
                else:
                    self._home = Path(tempfile.mkdtemp(prefix=f"parallelrun-spares-{self.node_id}-"))
            home = self._home
        return child_env(os.environ, home, baseview.view(home.parent / "imports"
                                                         if self.settings.scratch_dir else home))

    @property
    def limits(self) -> protocol.Limits:
        return protocol.Limits(max_body_bytes=self.settings.max_result_bytes,
                               body_timeout_s=protocol.BODY_TIMEOUT_S)

    def _slot(self, key: str, size: int) -> _Slot:
        """The key's slot, made on first use (caller holds the lock)."""
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(size)
            self._evict_idle(keep=key)
        return slot

    def prestart(self, key: str, config: ScoringConfig, size: int) -> bool:
        """Start a process for ``key`` without waiting for it, if the key has none idle or
        starting and fewer than ``size`` in all: its script's import and ``init()`` then overlap
        with what the caller does before it leases (a mini-batch's downloads), and the next
        :meth:`lease` takes it. Returns whether one was started."""
        with self._lock:
            if self._closed.is_set():
                return False
            slot = self._slot(key, size)
            if slot.idle or slot.starting or slot.reserved or slot.count >= slot.size:
                return False
            slot.reserved += 1
        proc: ScoringProcess | None = None
        try:
            proc = self._start(config)
        finally:
            with self._lock:
                slot.reserved -= 1
                kept = proc is not None and not self._closed.is_set() \
                    and self._slots.get(key) is slot
                if kept and proc is not None:
                    slot.starting.append(proc)
                self._started.notify_all()
        if proc is not None and not kept:     # the pool closed, or the key was evicted meanwhile
            proc.kill()
        return kept

    @contextlib.contextmanager
    def lease(self, key: str, config: ScoringConfig, size: int) -> Iterator[ScoringProcess | RunOutcome]:
        """Yield a ready process for ``key`` (waiting for a free one), or the failed init outcome."""
        with self._lock:
            slot = self._slot(key, size)
        slot.free.acquire()
        proc: ScoringProcess | None = None
        leased = False
        try:
            with self._lock:
                slot.leased += 1
                leased = True
                while not slot.idle and not slot.starting and slot.reserved:
                    self._started.wait()       # one is being started ahead: take it, not another
                proc = slot.idle.pop() if slot.idle else None
                started = slot.starting.pop(0) if proc is None and slot.starting else None
                slot.last_used = time.monotonic()
            if started is not None:    # started ahead: its init() may still be running
                proc = started
                failed = proc.wait_ready()
                if failed is not None:
                    yield failed
                    return
            if proc is not None and not proc.alive():   # died while idle: not this try's failure
                log.warning("job=%s: idle scoring process %s (pid %d) was found dead (%s); "
                            "starting another", config.job_id, proc.config.process_name, proc.pid,
                            proc._death_note("while idle"))
                proc.kill()
                proc = None
            if proc is None:
                proc = self._start(config)
                failed = proc.wait_ready()
                if failed is not None:
                    yield failed
                    return
            yield proc
        finally:
            with self._lock:
                if leased:
                    slot.leased -= 1
                if proc is not None and proc.healthy and proc.proc.poll() is None:
                    slot.idle.append(proc)
            slot.free.release()

    def _start(self, config: ScoringConfig) -> ScoringProcess:
        """A process for ``config``: a warm spare when one is ready, else a new one."""
        with self._lock:
            self._serial += 1
            name = f"process{self._serial:03d}"
        work_dir = str(Path(config.work_dir) / name)
        cfg = replace(config, work_dir=work_dir, process_name=name, node_id=self.node_id,
                      max_result_bytes=self.settings.max_result_bytes, sandbox=self.settings.sandbox,
                      sandbox_writable=tuple(self.settings.sandbox_writable))
        # a warm spare has imported the app's libraries: not for a job that sets variables read
        # at import time, nor for one whose environment brings other versions of them
        spare = None if cfg.environment or cfg.python_path else self._take_spare()
        if spare is not None:
            spare.assign(cfg)
            if not spare.healthy:      # it died after it was taken: not the job's failure
                spare.kill()
                spare = None
        proc = spare or ScoringProcess(cfg, with_python_path(self._env(), cfg.python_path), self.limits)
        log.info("scoring process started: job=%s node=%s process=%s pid=%d%s", config.job_id,
                 self.node_id, name, proc.pid, " (warm spare)" if spare is not None else "")
        return proc

    def _evict_idle(self, keep: str) -> None:
        """Close idle processes of the least recently used other keys (caller holds the lock)."""
        others = sorted((s.last_used, k) for k, s in self._slots.items() if k != keep)
        for _, key in others[: max(0, len(others) - self.max_idle_keys + 1)]:
            slot = self._slots[key]
            while slot.idle or slot.starting:
                proc = slot.idle.pop() if slot.idle else slot.starting.pop()
                threading.Thread(target=proc.close, daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            procs = [p for s in self._slots.values() for p in [*s.idle, *s.starting]]
            spares, self._spares = self._spares, []
            self._slots.clear()
        for p in procs:
            p.close()
        for p in spares:
            p.kill()
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
