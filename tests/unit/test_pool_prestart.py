"""Starting a job's process ahead (``ScoringPool.prestart``): its script's import and ``init()``
run while the try downloads, the next lease takes that very process, and the pool's bounds hold
(never more than ``size`` processes per key, none left behind at close)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from shared.scoring.protocol import OutcomeKind, RunOutcome, ScoringConfig
from shared.service.working.pool import ScoringPool
from shared.settings import Settings

SCRIPT = '''
import os, pathlib, sys

def init():
    marks = pathlib.Path(sys.argv[1])
    (marks / f"init-{os.getpid()}").write_text("")
    if "--fail-init" in sys.argv:
        raise RuntimeError("no model here")

def run(mini_batch):
    return [f"{os.getpid()}|{x}" for x in mini_batch]
'''


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def config(tmp_path: Path, job: str, *args: str) -> ScoringConfig:
    script = tmp_path / "src" / "score.py"
    if not script.exists():
        script.parent.mkdir()
        script.write_text(SCRIPT)
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    return ScoringConfig(job_id=job, entry_script=str(script), source_dir=str(script.parent),
                         work_dir=str(tmp_path / job), arguments=(str(marks), *args))


def settings(tmp_path: Path, warm: int) -> Settings:
    """The scoring processes may write the marks folder besides their own (the sandbox)."""
    (tmp_path / "marks").mkdir(exist_ok=True)
    return Settings(scratch_dir=str(tmp_path), warm_processes=warm,
                    sandbox_writable=(str(tmp_path / "marks"),))


def inits(tmp_path: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in (tmp_path / "marks").glob("init-*"))


@pytest.fixture(params=[0, 1], ids=["no-spares", "spares"])
def pool(request, tmp_path: Path):
    pool = ScoringPool(settings(tmp_path, request.param))
    pool.warm_up()
    if request.param:
        wait_for(lambda: pool.spares == 1)
    yield pool
    pool.close()


def score(pool: ScoringPool, key: str, cfg: ScoringConfig, size: int) -> int:
    with pool.lease(key, cfg, size) as proc:
        assert not isinstance(proc, RunOutcome), proc.message
        outcome = proc.run(["a.png"], {"minibatch_index": 0}, 30)
    assert outcome.ok, outcome.message + outcome.traceback
    assert isinstance(outcome.text, bytes)
    return int(outcome.text.decode().split("|")[0])


def test_init_runs_before_the_lease_and_the_lease_takes_that_process(
        pool: ScoringPool, tmp_path: Path) -> None:
    cfg = config(tmp_path, "job1")
    assert pool.prestart("k1", cfg, 2)
    wait_for(lambda: len(inits(tmp_path)) == 1)        # init() ran with nobody leasing
    (started,) = inits(tmp_path)
    assert score(pool, "k1", cfg, 2) == started
    assert inits(tmp_path) == [started]                # one process, initialised once


def test_never_more_processes_than_the_size(pool: ScoringPool, tmp_path: Path) -> None:
    cfg = config(tmp_path, "job2")
    assert pool.prestart("k2", cfg, 1)
    assert not pool.prestart("k2", cfg, 1)             # one is starting already
    held = threading.Event()
    release = threading.Event()

    def lease_and_hold() -> None:
        with pool.lease("k2", cfg, 1):
            held.set()
            release.wait(30)
    holder = threading.Thread(target=lease_and_hold)
    holder.start()
    try:
        assert held.wait(60)
        assert not pool.prestart("k2", cfg, 1)         # the only one is leased
    finally:
        release.set()
        holder.join(30)
    assert not pool.prestart("k2", cfg, 1)             # and now idle: the next lease takes it
    assert score(pool, "k2", cfg, 1) in inits(tmp_path)
    assert len(inits(tmp_path)) == 1


def test_a_second_process_starts_ahead_while_the_first_is_leased(
        pool: ScoringPool, tmp_path: Path) -> None:
    cfg = config(tmp_path, "job3")
    with pool.lease("k3", cfg, 2) as first:
        assert pool.prestart("k3", cfg, 2)
        wait_for(lambda: len(inits(tmp_path)) == 2)
        with pool.lease("k3", cfg, 2) as second:
            assert {first.pid, second.pid} == set(inits(tmp_path))
    assert not pool.prestart("k3", cfg, 2)             # two idle now: none to start


def test_a_failed_init_ahead_is_the_leases_init_outcome(pool: ScoringPool, tmp_path: Path) -> None:
    cfg = config(tmp_path, "job4", "--fail-init")
    assert pool.prestart("k4", cfg, 1)
    with pool.lease("k4", cfg, 1) as proc:
        assert isinstance(proc, RunOutcome) and proc.kind is OutcomeKind.INIT
        assert "no model here" in proc.message
    # the failed process is not kept: the next start is a new one
    assert pool.prestart("k4", cfg, 1)
    wait_for(lambda: len(inits(tmp_path)) == 2)


def test_close_ends_processes_started_ahead(tmp_path: Path) -> None:
    pool = ScoringPool(settings(tmp_path, 0))
    assert pool.prestart("k5", config(tmp_path, "job5"), 1)
    proc = pool._slots["k5"].starting[0].proc
    pool.close()
    assert proc.poll() is not None
    assert not pool.prestart("k5", config(tmp_path, "job5"), 1)


def test_a_process_started_ahead_for_an_evicted_key_is_closed(tmp_path: Path) -> None:
    pool = ScoringPool(settings(tmp_path, 0), max_idle_keys=1)
    try:
        assert pool.prestart("old", config(tmp_path, "job6"), 1)
        proc = pool._slots["old"].starting[0].proc
        score(pool, "new", config(tmp_path, "job7"), 1)      # another key: the old one's is closed
        proc.wait(30)
        assert pool._slots["old"].count == 0
    finally:
        pool.close()


def test_a_lease_during_a_start_ahead_takes_that_process(tmp_path: Path) -> None:
    """A lease that comes while a process is being started ahead waits for it instead of
    starting a second one (which would be one more than ``size``)."""
    pool = ScoringPool(settings(tmp_path, 0))
    cfg = config(tmp_path, "job8")
    real_start = pool._start
    entered, go = threading.Event(), threading.Event()

    def slow_start(c: ScoringConfig):
        entered.set()
        go.wait(30)
        return real_start(c)
    pool._start = slow_start          # type: ignore[method-assign,assignment]
    ahead = threading.Thread(target=pool.prestart, args=("k8", cfg, 1))
    ahead.start()
    try:
        assert entered.wait(30)
        pool._start = real_start      # type: ignore[method-assign]
        leased: list[int] = []
        leaser = threading.Thread(target=lambda: leased.append(score(pool, "k8", cfg, 1)))
        leaser.start()
        time.sleep(0.3)               # the lease is waiting for the process being started
        assert not leased
        go.set()
        ahead.join(30)
        leaser.join(60)
        assert leased == inits(tmp_path) and len(leased) == 1
    finally:
        go.set()
        pool.close()
