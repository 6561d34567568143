"""One scoring process: a child running ``shared.scoring.child`` over a private pair of pipes,
and the environment it starts with (an allow-list of the worker's: never a storage secret).

A child that exceeds ``run_invocation_timeout`` is killed; a child that dies (``os._exit``, a
segfault, the OOM killer) fails one try. Replacing either is the pool's job
(:mod:`shared.service.working.pool`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from shared.scoring import protocol, reaper
from shared.scoring.protocol import OutcomeKind, RunOutcome, ScoringConfig
from shared.settings import AZURITE_KEY, Settings

log = logging.getLogger("parallelrun.pool")

PROJECT_ROOT = Path(__file__).resolve().parents[3]
INIT_TIMEOUT_S = 600.0


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
