"""Job environments built once per node: the packages of a job's ``environment`` installed into a
folder that its scoring processes put first on their import path.

An environment (its pip requirements, resolved at submission by :mod:`shared.environment`) is
keyed by a hash of its requirements, the app's Python version, the app's pinned packages and the
installer, and built into ``<host scratch>/environments/<key>``:

* with a node-level lock (``<key>.lock``, ``flock``), so jobs and threads that want the same new
  environment at once build it once, the others wait and then use it;
* in a private folder renamed into place (:func:`scratch.publish`), so a scoring process never
  imports from a half-built environment and a build that dies leaves nothing;
* with ``uv pip install --target`` (pip where uv is missing), constrained to the app's pinned
  versions of the packages the environment does not name itself: numpy, pandas, pyarrow... stay
  the app's unless the environment pins another version, which then wins;
* bounded in time (``env_build_timeout_s``); its installer's output is kept beside it
  (``<key>.log``) and its last line is the build's progress.

Ready environments are used least-recently-first evicted beyond ``env_cache_bytes`` (one in use by
a build in progress or used within the last ``EVICT_MIN_IDLE_S`` is kept).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.environment import Resolved, python_version
from shared.service.working import scratch

log = logging.getLogger("parallelrun.environments")

PROJECT_ROOT = Path(__file__).resolve().parents[3]
APP_REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
EVICT_MIN_IDLE_S = 3600.0
OUTPUT_TAIL = 4000           # characters of the installer's output kept in an error
PROGRESS_EVERY_S = 2.0       # how often a build in progress reports its installer's last line
LINE_CHARS = 300             # of that line
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|[\x00-\x08\x0b-\x1f\x7f]")


class BuildFailed(Exception):
    """The installer refused or failed; the message ends with its output's last lines, ``log`` is
    its whole output (None: refused before any install)."""

    def __init__(self, message: str, log: Path | None = None) -> None:
        super().__init__(message)
        self.log = log


@dataclass(frozen=True)
class Built:
    path: Path          # the environment's folder; its packages are in ``site`` beneath it
    key: str
    built_now: bool     # False: the node had it already
    seconds: float
    log: Path | None = None   # the installer's output (None: pre-built)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def app_pins(text: str | None = None) -> dict[str, str]:
    """The app's pinned packages (``requirements.txt``): canonical name -> requirement line."""
    text = APP_REQUIREMENTS.read_text() if text is None else text
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = _NAME.match(line)
        if m and "==" in line:
            pins[canonical(m.group(1))] = line
    return pins


def constraints(resolved: Resolved, pins: dict[str, str]) -> list[str]:
    """The app's pins the environment does not override (it names the package itself)."""
    named = {canonical(m.group(1)) for r in resolved.requirements if (m := _NAME.match(r))}
    return [line for name, line in sorted(pins.items()) if name not in named]


def installer() -> list[str]:
    """The command that installs: uv (pinned in requirements.txt) if present, else pip."""
    try:
        from uv import find_uv_bin  # type: ignore[import-not-found,unused-ignore]
        return [find_uv_bin(), "pip", "install", "--python", sys.executable, "--color", "never"]
    except (ImportError, FileNotFoundError):
        return [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                "--no-input", "--progress-bar", "off"]


def environment_key(resolved: Resolved, pins: dict[str, str]) -> str:
    material = json.dumps({"requirements": list(resolved.requirements), "python": python_version(),
                           "platform": sys.platform, "constraints": constraints(resolved, pins),
                           "installer": installer()[0].rsplit("/", 1)[-1]}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:24]


class Environments:
    """The node's built environments (see the module doc)."""

    def __init__(self, root: Path, timeout_s: float = 900.0, cache_bytes: int = 20 << 30,
                 prebuilt: Path | None = None, prebuilt_only: bool = False) -> None:
        self.root = root
        self.timeout_s = timeout_s
        self.cache_bytes = cache_bytes
        self.prebuilt = prebuilt
        self.prebuilt_only = prebuilt_only
        self.pins = app_pins()
        self._building: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, root: Path, settings: Any) -> Environments:
        return cls(root, settings.env_build_timeout_s, settings.env_cache_bytes,
                   Path(settings.env_prebuilt_dir) if settings.env_prebuilt_dir else None,
                   settings.env_prebuilt_only)

    def prebuilt_path(self, resolved: Resolved) -> Path | None:
        """The environment's ahead-of-time build, if the deployment has it."""
        if self.prebuilt is None:
            return None
        path = self.prebuilt / environment_key(resolved, self.pins)
        return path if (path / ".ready").is_file() else None

    def refusal(self, resolved: Resolved) -> str | None:
        """Why the operator's setting refuses this environment (None: it may run)."""
        if not self.prebuilt_only or self.prebuilt_path(resolved) is not None:
            return None
        return (f"environment {environment_key(resolved, self.pins)} ({', '.join(resolved.requirements)}) "
                "is not pre-built, and this app runs pre-built environments only "
                "(PARALLELRUN_ENV_PREBUILT_ONLY): build it into the deployment with "
                "`parallelrun env build FILE --into <PARALLELRUN_ENV_PREBUILT_DIR>`")

    def ensure(self, resolved: Resolved, progress: Callable[[str], None] = lambda _: None) -> Built:
        """The environment's folder, built now unless the node has it. Raises :class:`BuildFailed`."""
        key = environment_key(resolved, self.pins)
        prebuilt = self.prebuilt_path(resolved)
        if prebuilt is not None:
            return Built(prebuilt, key, False, 0.0)
        refused = self.refusal(resolved)
        if refused:
            raise BuildFailed(refused)
        target = self.root / key
        started = time.monotonic()
        if (target / ".ready").is_file():
            self._touch(target)
            return Built(target, key, False, 0.0, self._log(key))
        self.root.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._building.add(key)
        try:
            with open(self.root / f"{key}.lock", "w") as lock:
                progress("waiting for this node's build of the environment")
                fcntl.flock(lock, fcntl.LOCK_EX)      # another job or host on this node may be building it
                if (target / ".ready").is_file():     # it did: use its build
                    self._touch(target)
                    return Built(target, key, False, time.monotonic() - started, self._log(key))
                scratch.remove_tree(target)           # a folder without .ready: never published whole
                scratch.publish(target, lambda staging: self._install(resolved, staging, key, progress))
                self._touch(target)
        finally:
            with self._lock:
                self._building.discard(key)
        seconds = time.monotonic() - started
        log.info("environment %s built in %.1f s (%s)", key, seconds, ", ".join(resolved.requirements))
        self.evict(keep=key)
        return Built(target, key, True, seconds, self._log(key))

    def _install(self, resolved: Resolved, staging: Path, key: str, progress: Callable[[str], None]) -> None:
        (staging / "requirements.txt").write_text("\n".join(resolved.requirements) + "\n")
        (staging / "constraints.txt").write_text("\n".join(constraints(resolved, self.pins)) + "\n")
        cmd = [*installer(), "--target", str(staging / "site"), "-r", str(staging / "requirements.txt"),
               "-c", str(staging / "constraints.txt")]
        logfile = self.root / f"{key}.log"
        progress(f"installing {', '.join(resolved.requirements)}")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AzureWebJobs", "AZURE_", "IDENTITY_", "MSI_"))}
        started = time.monotonic()
        with open(logfile, "wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
            try:
                while True:
                    try:
                        returncode = proc.wait(timeout=PROGRESS_EVERY_S)
                        break
                    except subprocess.TimeoutExpired:
                        pass
                    elapsed = time.monotonic() - started
                    if elapsed > self.timeout_s:
                        raise BuildFailed(f"the environment's build took longer than {self.timeout_s:.0f} s "
                                          f"(env_build_timeout_s); installer output: {_tail(logfile)}",
                                          logfile)
                    progress(last_line(logfile) or f"installing ({elapsed:.0f} s)")
            finally:
                if proc.poll() is None:      # timed out, or the caller is going away: no orphan
                    _kill_group(proc)
        if returncode != 0:
            raise BuildFailed(f"installing {', '.join(resolved.requirements)} failed (exit "
                              f"{returncode}): {_tail(logfile)}", logfile)
        (staging / "site").mkdir(exist_ok=True)
        (staging / ".ready").write_text(json.dumps({"requirements": list(resolved.requirements),
                                                    "built_at": time.time()}))

    def _log(self, key: str) -> Path | None:
        path = self.root / f"{key}.log"
        return path if path.is_file() else None

    @staticmethod
    def _touch(target: Path) -> None:
        stamp = target.parent / f"{target.name}.used"
        stamp.touch()

    def evict(self, keep: str = "") -> list[str]:
        """Remove least-recently-used environments beyond ``cache_bytes``; returns their keys."""
        ready = []
        for d in self.root.iterdir() if self.root.is_dir() else ():
            if d.is_dir() and (d / ".ready").is_file():
                used = d.parent / f"{d.name}.used"
                ready.append((used.stat().st_mtime if used.exists() else 0.0, d))
        sizes = {d: _size(d) for _, d in ready}
        total = sum(sizes.values())
        removed = []
        now = time.time()
        for used_at, d in sorted(ready):
            if total <= self.cache_bytes:
                break
            with self._lock:
                busy = d.name in self._building
            if d.name == keep or busy or now - used_at < EVICT_MIN_IDLE_S:
                continue
            scratch.remove_tree(d)
            for suffix in (".used", ".log"):
                (d.parent / f"{d.name}{suffix}").unlink(missing_ok=True)
            total -= sizes[d]
            removed.append(d.name)
        return removed


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def _tail(logfile: Path) -> str:
    text = logfile.read_text(errors="replace").strip() if logfile.exists() else ""
    return text[-OUTPUT_TAIL:] or "(no output)"


def last_line(logfile: Path) -> str:
    """The installer's last non-empty output line so far (bounded, control characters dropped)."""
    try:
        with open(logfile, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [_ANSI.sub("", line).strip() for line in text.replace("\r", "\n").splitlines()]
    lines = [line for line in lines if line]
    return lines[-1][:LINE_CHARS] if lines else ""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()

