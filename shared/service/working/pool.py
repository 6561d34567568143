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
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared.scoring import protocol, reaper
from shared.scoring.protocol import OutcomeKind, RunOutcome, ScoringConfig
from shared.service.working import baseview
from shared.settings import AZURITE_KEY, Settings

log = logging.getLogger("parallelrun.pool")

PROJECT_ROOT = Path(__file__).resolve().parents[3]
INIT_TIMEOUT_S = 600.0
WARM_CHECK_S = 0.25   # how often the pool looks at its spares


class ScoringProcess:
    """One child running ``shared.scoring.child`` over a private pair of pipes (:mod:`shared.scoring.protocol`).

    Started with a config it imports the entry script and runs ``init()`` at once. Started without
    one (a warm spare) it imports the common libraries (``shared.scoring.child.WARM_IMPORTS``) and waits
    for :meth:`assign`. Everything it answers is checked; every wait for an answer has a deadline.
    """

    def __init__(self, config: ScoringConfig | None, env: dict[str, str],
                 limits: protocol.Limits = protocol.Limits()) -> None:
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        protocol.widen(res_w)
        self.token = secrets.token_hex(12)
        self.proc = subprocess.Popen(
            # -S: no site-packages; what it may import is on PYTHONPATH (child_env, baseview)
            [sys.executable, "-S", "-m", "shared.scoring", str(cmd_r), str(res_w),
             *(() if config is not None else ("--warm",))],
            pass_fds=(cmd_r, res_w), cwd=str(PROJECT_ROOT),
            env={**env, protocol.ENV_PROCESS_TOKEN: self.token,
                 protocol.ENV_PARENT_PID: str(os.getpid())},
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        os.close(cmd_r)
        os.close(res_w)
        os.set_blocking(cmd_w, False)          # a child that does not read cannot block the worker
        self._to_child = cmd_w
        self._from_child = protocol.Reader(res_r, limits)
        self.pid = self.proc.pid
        self.healthy = True
        self.config = ScoringConfig(job_id="", entry_script="", source_dir="", work_dir="")
        self.warm: bool | None = None      # a spare: None until it reports its imports done
        self._seq = 0
        self._killed = False
        if config is not None:
            self.assign(config)

    def is_warm(self) -> bool:
        """A spare that has imported its libraries (and may run at normal priority again)."""
        if self.warm is None and self.healthy and self.proc.poll() is None:
            try:
                if self._from_child.ready():
                    reply = self._from_child.read(time.monotonic())
                    self.warm = isinstance(reply, protocol.Warm) and reply.ok
            except (protocol.ProtocolError, protocol.ChannelClosed, protocol.ChannelTimeout):
                self.kill()
        return bool(self.warm)

    def alive(self) -> bool:
        return self.healthy and self.proc.poll() is None

    def _send(self, message: protocol.Message) -> bool:
        try:
            protocol.write(self._to_child, message, protocol.WRITE_TIMEOUT_S)
            return True
        except (protocol.ChannelClosed, protocol.ChannelTimeout, OSError):
            return False

    def assign(self, config: ScoringConfig) -> None:
        """Give the process its job: it prepares the environment, imports the script, runs init()."""
        self.config = config
        if not self._send(protocol.Assign(config)):
            self.healthy = False    # a spare that died while waiting: wait_ready() reports it

    def wait_ready(self, timeout_s: float = INIT_TIMEOUT_S) -> RunOutcome | None:
        """None when ``init()`` succeeded, else an outcome of kind init."""
        reply = self._receive(time.monotonic() + timeout_s)
        if isinstance(reply, protocol.Ready):
            return None
        self.kill()
        if isinstance(reply, protocol.InitFailed):
            return self._failed(OutcomeKind.INIT, reply.message, reply.traceback)
        if isinstance(reply, str):
            return self._failed(OutcomeKind.INIT, f"init(): {reply}")
        return self._failed(OutcomeKind.INIT, self._death_note("during init()"))

    def run(self, payload: list[str] | dict[str, Any], context: dict[str, Any],
            timeout_s: float) -> RunOutcome:
        """``run()`` on file paths, or on a table the child loads first (``payload`` a dict).

        An outcome of kind "lost" means the process was dead (or died) before it took the request:
        not the mini-batch's failure; the caller runs it on another process."""
        started = time.perf_counter()
        self._seq += 1
        seq = self._seq
        if not self.alive() or not self._send(protocol.RunRequest(seq, payload, context)):
            self.kill()
            return self._failed(OutcomeKind.LOST, self._death_note("before run()"))
        begin = self._receive(time.monotonic() + protocol.WRITE_TIMEOUT_S + timeout_s)
        if not isinstance(begin, protocol.Begin) or begin.seq != seq:
            self.kill()
            if begin is None and not self._timed_out:
                return self._failed(OutcomeKind.LOST, self._death_note("before run()"))
            return self._bad_answer(begin, seq, timeout_s, started)
        loaded = -1
        reply = self._receive(time.monotonic() + (INIT_TIMEOUT_S if isinstance(payload, dict)
                                                  else timeout_s))
        if isinstance(payload, dict) and isinstance(reply, protocol.Loaded) and reply.seq == seq:
            loaded = reply.rows   # a table: reading it is not part of run()'s timeout
            reply = self._receive(time.monotonic() + timeout_s)
        outcome = self._outcome(reply, seq, timeout_s, time.perf_counter() - started)
        return replace(outcome, loaded=loaded) if loaded >= 0 else outcome

    def _outcome(self, reply: protocol.Message | str | None, seq: int, timeout_s: float,
                 elapsed: float) -> RunOutcome:
        if isinstance(reply, protocol.Result) and reply.seq == seq:
            return RunOutcome(OutcomeKind.OK, text=reply.body, rows=reply.rows, seconds=reply.seconds,
                              header=reply.header, pid=self.pid, process=self.config.process_name)
        if isinstance(reply, protocol.RunFailed) and reply.seq == seq:
            return replace(self._failed(OutcomeKind.ERROR, reply.message, reply.traceback),
                           seconds=reply.seconds)
        self.kill()
        return replace(self._bad_answer(reply, seq, timeout_s, elapsed), seconds=elapsed)

    def _bad_answer(self, reply: protocol.Message | str | None, seq: int, timeout_s: float,
                    elapsed: float) -> RunOutcome:
        """The try's outcome when the answer is missing or not one to request ``seq`` (the
        process has been killed)."""
        if isinstance(reply, str):
            return self._failed(OutcomeKind.ERROR, f"the scoring process sent a malformed answer ({reply}); "
                                "it was killed and replaced")
        if reply is not None:
            return self._failed(OutcomeKind.ERROR, f"the scoring process sent {type(reply).__name__} out of "
                                f"turn (request {seq}); it was killed and replaced")
        if not self._timed_out:
            return self._failed(OutcomeKind.CRASH, self._death_note("in run()"))
        return self._failed(OutcomeKind.TIMEOUT, f"run() exceeded run_invocation_timeout ({timeout_s:g} s); "
                            "its process was killed and replaced")

    def _receive(self, deadline: float) -> protocol.Message | str | None:
        """The next message; None if the child died or timed out (``_timed_out`` says which),
        the error as text if what it sent is not a valid message."""
        self._timed_out = False
        try:
            return self._from_child.read(deadline)
        except protocol.ChannelTimeout:
            self._timed_out = True
        except protocol.ChannelClosed:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
        except protocol.ProtocolError as exc:
            return str(exc)
        return None

    _timed_out = False

    def _failed(self, kind: OutcomeKind, message: str, traceback: str = "") -> RunOutcome:
        return RunOutcome(kind, message=message, traceback=traceback, pid=self.pid,
                          process=self.config.process_name)

    def _death_note(self, when: str) -> str:
        code = self.proc.poll()
        if code is None:
            return f"scoring process {self.pid} stopped answering {when}"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else code
            return f"scoring process {self.pid} was killed by signal {name} {when}"
        return f"scoring process {self.pid} exited with code {code} {when}"

    def kill(self) -> None:
        """SIGKILL the process, its process group and whatever its script started elsewhere."""
        self.healthy = False
        if self._killed:
            return
        self._killed = True
        escaped = reaper.kill_tree(self.pid, self.token, reaped=self.proc.returncode is not None)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        escaped += reaper.sweep(self.token)
        if escaped:
            log.warning("job=%s process=%s: killed %d process(es) its script had moved out of the "
                        "scoring process's group: %s", self.config.job_id or "-",
                        self.config.process_name, len(escaped), escaped)
        with contextlib.suppress(OSError):
            os.close(self._to_child)
        self._to_child = -1
        with contextlib.suppress(OSError):
            self._from_child.close()

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the script to ``shutdown()``, then make sure the process (and its children) is gone."""
        if self.alive() and self._send(protocol.Shutdown()):
            self._receive(time.monotonic() + timeout_s)
        self.kill()


# What a scoring process gets of the worker's environment: never a storage secret or an identity
# endpoint (AzureWebJobsStorage*, IDENTITY_*, MSI_*, AZURE_*), only what programs need to run.
ENV_ALLOWED = frozenset({"PATH", "LANG", "LANGUAGE", "TZ", "TERM", "SSL_CERT_FILE", "SSL_CERT_DIR",
                         "PYTHONHASHSEED", "PYTHONUTF8", "PYTHONDONTWRITEBYTECODE"})
ENV_ALLOWED_PREFIXES = ("LC_",)


def child_env(parent: dict[str, str] | os._Environ[str], home: Path, imports: Path) -> dict[str, str]:
    """The environment a scoring process starts with: the allowed variables of ``parent``, a
    ``PYTHONPATH`` of the project and ``imports`` (the app's packages: :mod:`baseview`; not the
    parent's path, which may hold anything), and ``HOME``/``TMPDIR`` in ``home`` (the job's own
    folder replaces them before the script is imported). The job's ``environment_variables`` and
    the compatibility layer's variables are added by the process itself (``shared.scoring.child``)."""
    env = {k: v for k, v in parent.items()
           if k in ENV_ALLOWED or k.startswith(ENV_ALLOWED_PREFIXES)}
    env["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), str(imports)])
    env["HOME"] = env["TMPDIR"] = str(home)
    return env


def with_python_path(env: dict[str, str], folders: tuple[str, ...]) -> dict[str, str]:
    """``env`` with ``folders`` (a job environment's packages) on the import path after the
    project (our scoring runtime stays ours) and before the app's site-packages (the
    environment's versions win)."""
    if not folders:
        return env
    parts = env.get("PYTHONPATH", "").split(os.pathsep)
    return {**env, "PYTHONPATH": os.pathsep.join([parts[0], *folders, *parts[1:]])}


def holds_secret(settings: Settings) -> bool:
    """Whether the worker's own environment holds a storage secret a script must not read: an
    account key or SAS other than the local emulator's published development key. (A managed
    identity's IDENTITY_HEADER counts too.)"""
    conn = settings.connection_string or ""
    secret = ("AccountKey=" in conn and AZURITE_KEY not in conn) or "SharedAccessSignature=" in conn
    return secret or "IDENTITY_HEADER" in os.environ or "MSI_SECRET" in os.environ


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
