"""A hostile script cannot reach into the worker through its result channel, cannot stall it, and
leaves nothing running behind it; an idle scoring process that died is not a mini-batch's failure."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from shared.scoring import protocol, reaper
from shared.scoring.protocol import RunOutcome, ScoringConfig
from shared.service.working import baseview
from shared.service.working.pool import ScoringPool
from shared.service.working.process import ScoringProcess, child_env
from shared.settings import Settings

T = TypeVar("T")

SCRIPT = r'''
import json, os, pickle, struct, subprocess, sys, time

def result_fd():
    args = open("/proc/self/cmdline", "rb").read().split(b"\0")
    return int(args[args.index(b"shared.scoring") + 2])

class Exploit:        # unpickling this runs code in the reader
    def __reduce__(self):
        return (exec, ("open(%r, 'w').write('pwned')" % os.environ["MARKER"],))

def frame(control, body_len=0):
    return b"PRF1" + struct.pack(">II", len(control), body_len) + control

def start_children():
    pids = [subprocess.Popen(["sleep", "300"]).pid,                              # a child
            subprocess.Popen(["sleep", "300"], start_new_session=True).pid,      # setsid
            subprocess.Popen(["sleep", "300"], start_new_session=True, env={}).pid]  # and no env
    r, w = os.pipe()
    if os.fork() == 0:                                        # double fork: an orphan at once
        os.setsid()
        if os.fork() == 0:
            os.write(w, b"%d\n" % os.getpid())
            os.execvp("sleep", ["sleep", "300"])
        os._exit(0)
    pids.append(int(os.read(r, 32)))
    with open(os.environ["PIDS"], "w") as fh:
        json.dump(pids, fh)

def init():
    if os.environ["MODE"].startswith("children"):
        start_children()

def run(mini_batch):
    mode, fd = os.environ["MODE"], result_fd()
    if mode == "pickle":
        data = pickle.dumps(("ok", Exploit(), 1, 0.0, ""))
        os.write(fd, struct.pack("!i", len(data)) + data)
    elif mode == "stall":
        os.write(fd, frame(b"x" * 100)[:12])                  # a header, and nothing after it
    elif mode == "garbage":
        os.write(fd, frame(b'{"t": "Result", "seq": 1, "rows": "all", "seconds": 0, "header": ""}'))
    elif mode == "oversized":
        os.write(fd, frame(b"{}", body_len=1 << 30))
    elif mode == "big":
        return ["x" * 1000] * 2000                            # ~2 MB of rows
    elif mode == "children-hang":
        time.sleep(120)
    if mode in ("pickle", "stall", "garbage", "oversized"):
        time.sleep(120)                                       # what it wrote is the answer
    return [os.path.basename(p) for p in mini_batch]
'''


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "score.py"
    path.parent.mkdir()
    path.write_text(SCRIPT)
    return path


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScoringPool]:
    monkeypatch.setattr(protocol, "BODY_TIMEOUT_S", 1.0)
    pool = ScoringPool(Settings(scratch_dir=str(tmp_path), warm_processes=0, sandbox_writable=(str(tmp_path),),
                                max_result_bytes=1 << 20))
    yield pool
    pool.close()


def config(script: Path, tmp_path: Path, job: str, mode: str) -> ScoringConfig:
    return ScoringConfig(job_id=job, entry_script=str(script), source_dir=str(script.parent),
                         work_dir=str(tmp_path / job), environment={
                             "MODE": mode, "MARKER": str(tmp_path / "pwned"),
                             "PIDS": str(tmp_path / f"{job}.pids")})


def bounded(call: Callable[[], T], timeout_s: float = 40.0) -> T:
    """``call()``, failing the test if it blocks (as a worker reading a stalled child would)."""
    box: list[T] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert box, "the worker blocked reading its scoring process"
    return box[0]


def score(pool: ScoringPool, cfg: ScoringConfig, timeout_s: float = 30.0) -> RunOutcome:
    with pool.lease(cfg.job_id, cfg, 1) as proc:
        assert not isinstance(proc, RunOutcome), proc
        return proc.run(["/in/a.txt"], {"minibatch_index": 0}, timeout_s)


@pytest.mark.parametrize("mode,message", [
    ("pickle", "malformed answer (not a frame"),
    ("stall", "malformed answer (an incomplete answer"),
    ("garbage", "malformed answer (Result.rows has the wrong type"),
    ("oversized", "malformed answer (an answer of 1073741824 bytes exceeds the limit of 1048576"),
])
def test_a_crafted_answer_is_one_failed_try_and_the_worker_goes_on(
        pool: ScoringPool, script: Path, tmp_path: Path, mode: str, message: str) -> None:
    attack = config(script, tmp_path, "attacker", mode)
    outcome = bounded(lambda: score(pool, attack, timeout_s=30))
    assert outcome.kind == "error" and message in outcome.message, outcome
    assert not (tmp_path / "pwned").exists()           # nothing it sent ran in the worker
    assert not reaper.alive(outcome.pid)               # the process was killed, to be replaced
    # the worker goes on scoring: another job's rows, and the attacker's next try, are intact
    other = config(script, tmp_path, "other", "none")
    assert bounded(lambda: score(pool, other)).text == b"a.txt\n"
    again = bounded(lambda: score(pool, config(script, tmp_path, "attacker", "none")))
    assert again.ok and again.pid != outcome.pid


def test_rows_over_the_limit_fail_the_try_and_the_process_lives_on(
        pool: ScoringPool, script: Path, tmp_path: Path) -> None:
    big = config(script, tmp_path, "big", "big")
    outcome = bounded(lambda: score(pool, big))
    assert outcome.kind == "error"
    assert "more than the limit of 1048576 (PARALLELRUN_MAX_RESULT_BYTES)" in outcome.message
    assert reaper.alive(outcome.pid)


def test_an_idle_process_killed_between_mini_batches_is_replaced_without_failing(
        pool: ScoringPool, script: Path, tmp_path: Path) -> None:
    cfg = config(script, tmp_path, "idle", "none")
    first = score(pool, cfg)
    assert first.ok
    os.kill(first.pid, signal.SIGKILL)          # the OOM killer, between mini-batches
    os.waitid(os.P_PID, first.pid, os.WEXITED | os.WNOWAIT)   # dead (the pool reaps it)
    second = score(pool, cfg)
    assert second.ok and second.text == b"a.txt\n" and second.pid != first.pid


def test_a_process_that_died_before_taking_the_request_is_lost_not_failed(
        script: Path, tmp_path: Path) -> None:
    proc = ScoringProcess(config(script, tmp_path, "lost", "none"), child_env(os.environ, tmp_path,
                                                                                      baseview.view(tmp_path)))
    assert proc.wait_ready() is None
    os.kill(proc.pid, signal.SIGKILL)
    proc.proc.wait(10)
    outcome = proc.run(["/in/a.txt"], {"minibatch_index": 0}, 30)
    assert outcome.kind == "lost" and "killed by signal SIGKILL before run()" in outcome.message


def children_of(tmp_path: Path, job: str) -> list[int]:
    import json
    path = tmp_path / f"{job}.pids"
    deadline = time.monotonic() + 20
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = json.loads(path.read_text())
    assert len(pids) == 4 and all(reaper.alive(p) for p in pids)
    return pids


def gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + 10
    while any(reaper.alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if reaper.alive(p)]


def test_what_a_script_started_is_gone_after_a_timeout(
        pool: ScoringPool, script: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(script, tmp_path, "children", "children-hang")
    with pool.lease("k", cfg, 1) as proc:
        assert not isinstance(proc, RunOutcome), proc
        pids = children_of(tmp_path, "children")
        outcome = proc.run(["/in/a.txt"], {"minibatch_index": 0}, 1.0)
    assert outcome.kind == "timeout"
    assert not reaper.alive(outcome.pid)
    assert gone(pids) == []
    [warning] = [r.getMessage() for r in caplog.records if "moved out of" in r.getMessage()]
    assert warning.startswith("job=children process=process001: killed 3 process(es)")


def test_what_a_script_started_is_gone_after_the_pool_shuts_down(
        script: Path, tmp_path: Path) -> None:
    pool = ScoringPool(Settings(scratch_dir=str(tmp_path), warm_processes=0,
                                sandbox_writable=(str(tmp_path),)))
    try:
        outcome = score(pool, config(script, tmp_path, "children", "children"))
        assert outcome.ok
        pids = children_of(tmp_path, "children")
    finally:
        pool.close()
    assert not reaper.alive(outcome.pid)
    assert gone(pids) == []


def test_a_scoring_process_ends_itself_and_its_children_when_its_worker_dies(
        script: Path, tmp_path: Path) -> None:
    import subprocess
    import sys
    worker = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from shared.service.working.pool import ScoringPool\n"
        "from shared.scoring.protocol import ScoringConfig\n"
        "from shared.settings import Settings\n"
        f"tmp = Path({str(tmp_path)!r})\n"
        "pool = ScoringPool(Settings(scratch_dir=str(tmp), warm_processes=0, "
        "sandbox_writable=(str(tmp),)))\n"
        f"cfg = ScoringConfig(job_id='orphan', entry_script={str(script)!r}, "
        f"source_dir={str(script.parent)!r}, work_dir=str(tmp / 'orphan'), "
        "environment={'MODE': 'children', 'MARKER': str(tmp / 'pwned'), "
        "'PIDS': str(tmp / 'orphan.pids')})\n"
        "with pool.lease('k', cfg, 1) as proc:\n"
        "    print(proc.pid, flush=True)\n"
        "    time.sleep(300)\n")], cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE)
    try:
        assert worker.stdout is not None
        scoring_pid = int(worker.stdout.readline())
        pids = children_of(tmp_path, "orphan")
        worker.kill()                  # the node is SIGKILLed: nobody kills the scoring process
        worker.wait(10)
        assert gone([scoring_pid, *pids]) == []
    finally:
        if worker.poll() is None:
            worker.kill()


def test_a_worker_holding_a_storage_secret_hides_its_environment_from_its_scripts() -> None:
    """With an account key (or a managed identity) in its environment, the worker makes itself
    undumpable, so a script running as the same (non-root) user cannot read its /proc environ or
    memory; with the emulator's published key it stays as it is (tests and profilers read it)."""
    import subprocess
    import sys
    code = ("from shared.service.working.pool import ScoringPool\n"
            "from shared.scoring.reaper import dumpable\n"
            "from shared.settings import Settings\n"
            "import sys\n"
            "ScoringPool(Settings(connection_string=sys.argv[1], warm_processes=0))\n"
            "print(dumpable())\n")
    secret = "DefaultEndpointsProtocol=https;AccountName=prod;AccountKey=c2VjcmV0;"
    local = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"}).connection_string
    root = Path(__file__).resolve().parents[2]
    out = [subprocess.run([sys.executable, "-c", code, conn], cwd=root, capture_output=True,
                          text=True, check=True).stdout.strip() for conn in (secret, local)]
    assert out == ["False", "True"]


def test_an_idle_process_killed_from_outside_takes_what_its_script_started_at_once(
        script: Path, tmp_path: Path) -> None:
    """A scoring process of a finished job, idle and never leased again, is SIGKILLed (the OOM
    killer): the pool notices within its watch interval and kills what its script started, which
    would otherwise live on as orphans until the pool closes (or for ever, if the node dies)."""
    import signal
    pool = ScoringPool(Settings(scratch_dir=str(tmp_path), warm_processes=1,
                                sandbox_writable=(str(tmp_path),)))
    pool.warm_up()
    try:
        outcome = score(pool, config(script, tmp_path, "children", "children"))
        assert outcome.ok
        pids = children_of(tmp_path, "children")
        # the third left the group and cleared its environment: once its scoring process is dead
        # nothing identifies it (the documented limit, docs/security.md); the others must go
        traceable, untraceable = pids[:2] + pids[3:], pids[2]
        os.kill(outcome.pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while gone(traceable) != [] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(traceable) == [], "the dead idle process's children outlived it"
    finally:
        pool.close()
        with contextlib.suppress(ProcessLookupError, NameError):
            os.kill(untraceable, signal.SIGKILL)
