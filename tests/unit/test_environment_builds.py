"""A node's environment build as its job sees it: progress from the installer's output while it
runs, a timeout that leaves no installer behind, and the build's log kept for the job's logs/.
The installer is a stand-in script (the real one is exercised end to end in
tests/integration/test_environments.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from shared.environment import Resolved
from shared.service.working import environments
from shared.service.working.environments import BuildFailed, Environments, last_line

PRINTS_THEN_INSTALLS = """
import os, sys, time
for line in ("Resolved 3 packages in 0.2s", "Prepared 3 packages", "Installed 3 packages"):
    print(line, flush=True)
    time.sleep(0.3)
target = sys.argv[sys.argv.index("--target") + 1]
os.makedirs(target, exist_ok=True)
"""

HANGS = """
import os, sys, time
print("downloading a very large wheel", flush=True)
with open(os.environ["PID_FILE"], "w") as f:
    f.write(str(os.getpid()))
time.sleep(600)
"""


def fake_installer(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    monkeypatch.setattr(environments, "installer", lambda: [sys.executable, "-c", script])
    monkeypatch.setattr(environments, "PROGRESS_EVERY_S", 0.1)


def test_a_build_reports_the_installers_last_lines_while_it_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_installer(monkeypatch, PRINTS_THEN_INSTALLS)
    seen: list[str] = []
    built = Environments(tmp_path).ensure(Resolved(("somepkg==1.0",), "test"), seen.append)
    assert built.built_now and (built.path / ".ready").is_file()
    assert seen[:2] == ["waiting for this node's build of the environment", "installing somepkg==1.0"]
    lines = [line for line in seen if line.startswith(("Resolved", "Prepared", "Installed"))]
    assert list(dict.fromkeys(lines))[:2] == ["Resolved 3 packages in 0.2s", "Prepared 3 packages"]
    assert "Installed 3 packages" in built.log.read_text()   # type: ignore[union-attr]


def test_a_build_past_its_timeout_fails_and_leaves_no_installer_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_installer(monkeypatch, HANGS)
    monkeypatch.setenv("PID_FILE", str(tmp_path / "pid"))
    envs = Environments(tmp_path / "envs", timeout_s=1.0)
    with pytest.raises(BuildFailed) as info:
        envs.ensure(Resolved(("slowpkg==1.0",), "test"))
    assert "longer than 1 s" in str(info.value) and "very large wheel" in str(info.value)
    assert info.value.log is not None and "very large wheel" in info.value.log.read_text()
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not list((tmp_path / "envs").glob("*/.ready"))       # nothing published


def test_the_last_line_drops_colours_and_carriage_returns_and_is_bounded(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    log.write_bytes(b"Resolved 2 packages\n\x1b[32mDownloading\x1b[0m 10%\r Downloading 90%\r\n\n"
                    + b"x" * 5000 + b"\n   \n")
    assert last_line(log) == "x" * environments.LINE_CHARS
    log.write_bytes(b"a\n\x1b[1mDownloading numpy\x1b[0m 10%\rDownloading numpy 90%\n")
    assert last_line(log) == "Downloading numpy 90%"
    assert last_line(tmp_path / "missing.log") == ""
