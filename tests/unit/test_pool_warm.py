"""Warm spare scoring processes: a job's process is a spare with the libraries already imported,
behaves exactly like a fresh one for the script (at normal priority), and is replaced."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.scoring.protocol import ScoringConfig
from shared.service.working.pool import ScoringPool
from shared.settings import Settings

SCRIPT = '''
import os, sys
PRELOADED = "pandas" in sys.modules          # imported by the pool before this script
FLAG_AT_IMPORT = os.environ.get("MY_FLAG", "-")

def init():
    global MODEL_DIR
    MODEL_DIR = os.environ["AZUREML_MODEL_DIR"]

def run(mini_batch):
    return [f"{os.getpid()}|{PRELOADED}|{FLAG_AT_IMPORT}|{MODEL_DIR}|{' '.join(sys.argv[1:])}|{x}"
            f"|{os.sched_getscheduler(0) == os.SCHED_OTHER}" for x in mini_batch]
'''


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "score.py"
    path.parent.mkdir()
    path.write_text(SCRIPT)
    return path


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[ScoringPool]:
    pool = ScoringPool(Settings(scratch_dir=str(tmp_path), warm_processes=1))
    yield pool
    pool.close()


def config(script: Path, tmp_path: Path, job: str, **extra) -> ScoringConfig:
    return ScoringConfig(job_id=job, entry_script=str(script), source_dir=str(script.parent),
                         work_dir=str(tmp_path / job), arguments=("--alpha", "1"), **extra)


def score(pool: ScoringPool, key: str, cfg: ScoringConfig) -> list[str]:
    with pool.lease(key, cfg, 1) as proc:
        outcome = proc.run(["a.png"], {"minibatch_index": 0}, 30)
    assert outcome.ok, outcome.message + outcome.traceback
    assert isinstance(outcome.text, bytes)     # the rows as the child sent them (shared.scoring.protocol)
    return outcome.text.decode().splitlines()[0].split("|")


def test_a_jobs_process_is_a_warm_spare_that_runs_the_script_as_a_fresh_one(
        pool: ScoringPool, script: Path, tmp_path: Path) -> None:
    pool.warm_up()
    wait_for(lambda: pool.spares == 1)
    spare_pid = pool._spares[0].pid
    pid, preloaded, flag, model_dir, argv, item, normal = score(pool, "k1", config(script, tmp_path, "job1"))
    assert int(pid) == spare_pid and preloaded == "True"
    assert normal == "True"       # imported at idle priority, runs the job at normal priority
    assert model_dir == str(tmp_path / "job1" / "process001" / "azureml-models")
    assert (flag, argv, item) == ("-", "--alpha 1", "a.png")
    # the spare it gave away is replaced
    wait_for(lambda: pool.spares == 1)
    assert pool._spares[0].pid != spare_pid


def test_a_job_with_its_own_environment_gets_a_fresh_process(
        pool: ScoringPool, script: Path, tmp_path: Path) -> None:
    pool.warm_up()
    wait_for(lambda: pool.spares == 1)
    cfg = config(script, tmp_path, "job2", environment={"MY_FLAG": "on"})
    pid, preloaded, flag, *_ = score(pool, "k2", cfg)
    assert preloaded == "False" and flag == "on"       # set before anything was imported
    assert pool.spares == 1 and int(pid) != pool._spares[0].pid


def test_no_spares_when_turned_off_and_none_left_after_close(script: Path, tmp_path: Path) -> None:
    off = ScoringPool(Settings(scratch_dir=str(tmp_path), warm_processes=0))
    off.warm_up()
    pid, preloaded, *_ = score(off, "k3", config(script, tmp_path, "job3"))
    assert preloaded == "False" and off.spares == 0
    off.close()

    on = ScoringPool(Settings(scratch_dir=str(tmp_path), warm_processes=2))
    on.warm_up()
    wait_for(lambda: on.spares == 2)
    procs = [p.proc for p in on._spares]
    on.close()
    assert all(p.poll() is not None for p in procs)


MODEL_SCRIPT = '''
import os
from azureml.core import Model

def init():
    global PATH
    PATH = Model.get_model_path("m")

def run(mini_batch):
    relative = os.path.realpath(os.path.join("azureml-models", "m", "3", "weights.txt"))
    return [f"{PATH}|{os.environ['AZUREML_MODEL_DIR']}|{relative}|{open(PATH).read()}" for _ in mini_batch]
'''


def test_pinned_models_come_from_the_nodes_copy_without_storage(tmp_path: Path) -> None:
    """The worker lays out a job's pinned versions once per node; each process is told where
    (no storage account is configured): Model.get_model_path gives the model's file,
    AZUREML_MODEL_DIR the one model's version folder, and ./azureml-models leads there too."""
    root = tmp_path / "jobs-models"
    (root / "m" / "3").mkdir(parents=True)
    (root / "m" / "3" / "weights.txt").write_text("w3")
    script = tmp_path / "src" / "score.py"
    script.parent.mkdir()
    script.write_text(MODEL_SCRIPT)
    pool = ScoringPool(Settings(scratch_dir=str(tmp_path), warm_processes=0))
    weights = str(root / "m" / "3" / "weights.txt")
    try:
        seen = []
        for job in ("j1", "j2"):
            cfg = config(script, tmp_path, job, model_pins={"m": 3}, models_root=str(root),
                         model_paths={"m": weights})
            seen.append(score(pool, job, cfg))
    finally:
        pool.close()
    for path, model_dir, relative, content in seen:
        assert path == weights and model_dir == str(root / "m" / "3")
        assert relative == str((root / "m" / "3" / "weights.txt").resolve()) and content == "w3"


def test_a_spare_that_died_waiting_is_not_the_jobs_failure(
        pool: ScoringPool, script: Path, tmp_path: Path) -> None:
    pool.warm_up()
    wait_for(lambda: pool.spares == 1)
    dead = pool._spares[0]
    dead.proc.kill()
    dead.proc.wait(10)
    pid, *_ = score(pool, "k4", config(script, tmp_path, "job4"))   # ran, in another process
    assert int(pid) != dead.pid
