"""A job brings its own Python packages (``environment``): built once per node, reused by the
next job, built once for jobs that want it together, and a build that fails fails its job before
any mini-batch runs. The entry script imports scikit-learn and joblib, which the app does not
ship: without its environment the job fails."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shared.cli import main as cli
from shared.environment import Resolved, python_version
from shared.errors import SpecError
from shared.local.azurite import free_port
from shared.local.host import LocalHost, load_app
from shared.service.jobs import lifecycle as jobs
from shared.service.jobs.status import job_status
from shared.service.ledger.rows import JobRow
from shared.service.ledger.store import Ledger
from shared.service.working import environments, models, snapshots
from shared.service.working.environments import Environments
from shared.settings import Settings
from shared.storage import Storage

from .conftest import put_files

ASSETS = Path(__file__).parent / "assets" / "sklearn_code"
REQUIREMENTS = ("scikit-learn==1.9.1", "joblib==1.6.0")
TRAIN = """
import sys, joblib
from sklearn.tree import DecisionTreeClassifier
X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
joblib.dump(DecisionTreeClassifier(random_state=0).fit(X, [0, 1, 1, 0]), sys.argv[1])
"""


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A joblib-saved scikit-learn model, made with the environment the job will ask for (the
    test process has no scikit-learn)."""
    tmp = tmp_path_factory.mktemp("sklearn")
    built = Environments(tmp / "environments").ensure(Resolved(REQUIREMENTS, "test"))
    folder = tmp / "model"
    folder.mkdir()
    subprocess.run([sys.executable, "-c", TRAIN, str(folder / "model.joblib")], check=True,
                   env={**os.environ, "PYTHONPATH": str(built.path / "site")})
    return folder


@pytest.fixture
def code(storage: Storage, tmp_path: Path) -> str:
    """The script, a conda YAML pinning this Python, and the same packages as requirements.txt."""
    folder = tmp_path / "code"
    shutil.copytree(ASSETS, folder)
    pip = "\n".join(f"      - {r}" for r in REQUIREMENTS)
    (folder / "conda.yml").write_text(f"name: sklearn-scoring\nchannels: [conda-forge]\ndependencies:\n"
                                      f"  - python={python_version()}\n  - pip\n  - pip:\n{pip}\n")
    (folder / "old-python.yml").write_text("dependencies:\n  - python=3.8\n  - pip\n")
    return snapshots.upload(storage, folder)


@pytest.fixture
def inputs(storage: Storage, sklearn_model: Path) -> None:
    models.register(storage, "iris-like", sklearn_model)
    put_files(storage, "envin", {"x/a.txt": b"0,1", "x/b.txt": b"1,1", "x/c.txt": b"1,0"})


def spec(code: str, **extra: object) -> dict:
    return {"name": "sklearn-job", "entry_script": "score_sklearn.py", "source_directory": code,
            "inputs": ["envin/x/"], "models": ["iris-like"], "process_count_per_node": 1,
            "mini_batch_size": 2, **extra}


def status(storage: Storage, job: JobRow) -> list[dict]:
    """The status's ``environment`` field: each node's build."""
    return job_status(storage, Ledger(storage.ledger), job).to_dict()["environment"]


def build_log(storage: Storage, job: JobRow) -> str:
    return storage.container(job.output_container).download_blob(
        f"{job.output_prefix}/logs/sys/environment/node0.txt").readall().decode()


def run(storage: Storage, host: LocalHost, *specs: dict) -> list[JobRow]:
    ledger = Ledger(storage.ledger)
    submitted = [jobs.submit(storage, ledger, s) for s in specs]
    with host:
        host.drain(timeout_s=300)
    return [ledger.get_job(j.job_id) for j in submitted]


def rows(storage: Storage, job: JobRow) -> list[str]:
    assert job.state == "succeeded", (job.state, job.error)
    return storage.container(job.output_container).download_blob(
        f"{job.output_prefix}/parallel_run_step.txt").readall().decode().splitlines()


EXPECTED = ["a.txt 1", "b.txt 0", "c.txt 1"]


@pytest.mark.stops_jobs
def test_without_its_environment_the_script_cannot_import_sklearn(
        storage: Storage, idle_host: LocalHost, code: str, inputs: None) -> None:
    (job,) = run(storage, idle_host, spec(code))
    assert job.state == "failed"
    assert "No module named 'joblib'" in job.error, job.error
    assert "add the package that provides 'joblib' to the job's environment" in job.error


def test_a_conda_yaml_environment_runs_the_script_and_the_next_job_reuses_the_build(
        storage: Storage, idle_host: LocalHost, code: str, inputs: None,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="parallelrun.jobcontext")
    ledger = Ledger(storage.ledger)
    with idle_host:
        first = jobs.submit(storage, ledger, spec(code, environment="conda.yml"))
        idle_host.drain(timeout_s=300)
        # the same job again (its environment written another way): it must run, not be reused
        second = jobs.submit(storage, ledger, spec(code, environment="requirements.txt", allow_reuse=False))
        idle_host.drain(timeout_s=300)
    first, second = ledger.get_job(first.job_id), ledger.get_job(second.job_id)
    assert rows(storage, first) == EXPECTED and rows(storage, second) == EXPECTED
    # the row carries the requirements it was submitted with, not a file name
    assert json.loads(first.spec_json)["environment"] == {"pip": list(REQUIREMENTS), "source": "conda.yml"}
    built = [r.message for r in caplog.records if "built in" in r.message]
    reused = [r.message for r in caplog.records if "reused" in r.message]
    assert len(built) == 1 and first.job_id in built[0], caplog.text   # same packages: one build
    assert len(reused) == 1 and second.job_id in reused[0], caplog.text
    # what the user reads: the status, and the job's logs/
    assert [e["state"] for e in status(storage, first)] == ["built"]
    assert [e["state"] for e in status(storage, second)] == ["reused"]
    assert "installer output" in build_log(storage, first)
    second_log = build_log(storage, second)
    assert "reused" in second_log and "installer output" not in second_log, second_log


def test_two_jobs_wanting_one_new_environment_together_build_it_once(
        storage: Storage, idle_host: LocalHost, code: str, inputs: None,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="parallelrun.jobcontext")
    a, b = run(storage, idle_host, spec(code, environment=list(REQUIREMENTS)),
               spec(code, environment={"dependencies": ["pip", {"pip": list(REQUIREMENTS)}]}))
    assert rows(storage, a) == EXPECTED and rows(storage, b) == EXPECTED
    assert len([r for r in caplog.records if "built in" in r.message]) == 1, caplog.text


@pytest.mark.stops_jobs
def test_a_requirement_that_cannot_be_installed_fails_the_job_before_any_mini_batch(
        storage: Storage, idle_host: LocalHost, code: str, inputs: None) -> None:
    (job,) = run(storage, idle_host, spec(code, environment=["parallelrun-no-such-package==0.0.1"]))
    assert job.state == "failed"
    assert "the job's environment could not be built" in job.error, job.error
    assert "parallelrun-no-such-package" in job.error, job.error     # the installer's own words
    ledger = Ledger(storage.ledger)
    assert all(b.deliveries == 0 or b.tries == 0 for b in ledger.batches(job.job_id))
    assert ledger.totals(job.job_id).tries == 0
    (env,) = status(storage, job)
    assert env["state"] == "failed" and env["node"] == idle_host.node_id
    log = build_log(storage, job)          # the installer's whole output is in logs/ too
    assert "failed" in log and "parallelrun-no-such-package" in log.split("installer output", 1)[1], log


SLOW_INSTALLER = """
import os, sys, time
print("resolving through a slow package mirror", flush=True)
time.sleep(float(os.environ.get("SLOW_INSTALLER_S", "6")))
os.execv(sys.argv[1], sys.argv[1:])
"""


def test_while_its_environment_builds_the_job_status_says_so_with_the_installers_last_line(
        storage: Storage, idle_host: LocalHost, code: str, inputs: None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The installer is the real one behind a wrapper that first waits (a slow package index), so
    the build takes long enough to be watched; the status shows it building, for how long, and the
    installer's last line, then built."""
    wrapper = tmp_path / "slow_installer.py"
    wrapper.write_text(SLOW_INSTALLER)
    real = environments.installer()
    monkeypatch.setattr(environments, "installer", lambda: [sys.executable, str(wrapper), *real])
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code, environment=list(REQUIREMENTS)))
    seen: list[dict] = []
    with idle_host:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and ledger.get_job(job.job_id).state not in ("succeeded", "failed"):
            seen += status(storage, ledger.get_job(job.job_id))
            time.sleep(0.5)
        idle_host.drain(timeout_s=300)
    done = ledger.get_job(job.job_id)
    assert rows(storage, done) == EXPECTED
    building = [e for e in seen if e["state"] == "building"]
    assert any("slow package mirror" in e["last_line"] for e in building), seen
    assert max(e["elapsed_s"] for e in building) >= 2, seen     # the time it has taken so far
    assert [e["state"] for e in status(storage, done)] == ["built"]


@pytest.mark.scores_nothing
def test_a_conda_yaml_for_another_python_is_refused_at_submit(storage: Storage, code: str,
                                                               inputs: None) -> None:
    with pytest.raises(SpecError) as info:
        jobs.submit(storage, Ledger(storage.ledger), spec(code, environment="old-python.yml"))
    assert info.value.errors[0]["field"] == "environment"
    assert "python=3.8 asked for" in info.value.errors[0]["message"]


@pytest.mark.scores_nothing
@pytest.mark.parametrize(("environment", "says"), [
    ({"image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"}, "Docker images are not supported"),
    ("missing.yml", "missing.yml is not in source_directory"),
    (["-r other.txt"], "no installer options"),
])
def test_an_environment_that_cannot_be_used_is_refused_at_submit(
        storage: Storage, code: str, inputs: None, environment: object, says: str) -> None:
    with pytest.raises(SpecError) as info:
        jobs.submit(storage, Ledger(storage.ledger), spec(code, environment=environment))
    assert any(says in e["message"] for e in info.value.errors), info.value.errors


def test_scoring_processes_import_the_apps_requirements_never_the_development_packages(
        storage: Storage, idle_host: LocalHost) -> None:
    """Locally as in Azure: what requirements.txt installs (and what it needs) is there; what only
    requirements-dev.txt installs (test runner, CLI libraries, mlflow, scikit-learn) is not,
    although the worker's own Python has it."""
    dev_only = ["pytest", "typer", "rich", "httpx", "mlflow", "sklearn", "joblib"]
    app = ["numpy", "pandas", "pyarrow", "PIL", "onnxruntime", "azure.storage.blob", "yaml"]
    for name in dev_only:
        __import__(name)            # the worker's Python has them
    put_files(storage, "envprobe", {"probe.txt": " ".join(app + dev_only).encode()})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, {
        "name": "probe", "entry_script": "import_probe.py", "source_directory": snapshots.upload(
            storage, Path(__file__).parent / "scripts"), "inputs": ["envprobe/"],
        "process_count_per_node": 1})
    with idle_host:
        idle_host.drain(timeout_s=120)
    assert rows(storage, ledger.get_job(job.job_id)) == [f"{n} yes" for n in app] + [f"{n} no" for n in dev_only]



def prebuilt_settings(settings: Settings, folder: Path) -> Settings:
    return dataclasses.replace(settings, env_prebuilt_dir=str(folder), env_prebuilt_only=True)


@pytest.mark.scores_nothing
def test_an_operator_can_allow_pre_built_environments_only(storage: Storage, settings: Settings,
                                                           code: str, inputs: None, tmp_path: Path) -> None:
    only = Storage(prebuilt_settings(settings, tmp_path / "prebuilt"))
    with pytest.raises(SpecError) as info:
        jobs.submit(only, Ledger(only.ledger), spec(code, environment=list(REQUIREMENTS)))
    assert info.value.errors[0]["field"] == "environment"
    assert "is not pre-built, and this app runs pre-built environments only" in info.value.errors[0]["message"]


def test_a_pre_built_environment_runs_without_installing(
        settings: Settings, code: str, inputs: None, tmp_path: Path, sklearn_model: Path) -> None:
    """``parallelrun env build`` into the deployment's folder; the host then installs nothing."""
    (tmp_path / "requirements.txt").write_text("\n".join(REQUIREMENTS) + "\n")
    built = CliRunner().invoke(cli.app, ["env", "build", str(tmp_path / "requirements.txt"),
                                         "--into", str(tmp_path / "prebuilt")])
    assert built.exit_code == 0 and "built in" in built.output, built.output
    only = prebuilt_settings(settings, tmp_path / "prebuilt")
    storage = Storage(only)
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code, environment="requirements.txt"))
    with LocalHost(load_app(), only, http_port=free_port(), lease_s=10) as host:
        host.drain(timeout_s=300)
    assert rows(storage, ledger.get_job(job.job_id)) == EXPECTED
    assert not list((Path(only.scratch_dir)).glob("*/environments/*/.ready"))   # nothing built on the node


N = 3000
OLDEST = {"pandas": "1.5.0", "numpy": "1.23.2", "pyarrow": "10.0.1"}   # docs/environments.md


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_job_pinning_the_oldest_supported_pandas_runs_a_dataframe_script(
        storage: Storage, idle_host: LocalHost, fmt: str) -> None:
    """The environment's pandas 1.x, numpy 1.x and pyarrow win over the app's (pandas 3, numpy 2),
    and the scoring runtime reads the table pieces and writes the rows with them."""
    import pandas as pd
    frame = pd.DataFrame({"id": range(N), "x": [i / 4 for i in range(N)]})
    body = frame.to_csv(index=False).encode() if fmt == "csv" else frame.to_parquet(index=False, row_group_size=500)
    put_files(storage, f"oldpandas-{fmt}", {f"t.{fmt}": body})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, {
        "name": "old-pandas", "entry_script": "old_pandas.py",
        "source_directory": snapshots.upload(storage, Path(__file__).parent / "scripts"),
        "inputs": [{"path": f"oldpandas-{fmt}/", "type": "tabular"}], "mini_batch_size": "8KB",
        "process_count_per_node": 1, "error_threshold": 0, "output_format": fmt if fmt == "parquet" else "csv",
        "environment": [f"{name}=={version}" for name, version in OLDEST.items()]})
    with idle_host:
        idle_host.drain(timeout_s=300)
    done = ledger.get_job(job.job_id)
    assert done.state == "succeeded", (done.state, done.error)
    st = job_status(storage, ledger, done).to_dict()
    assert st["mini_batches"]["total"] > 1 and st["items"]["succeeded"] == N, st["errors"]
    out = storage.container(done.output_container)
    if fmt == "parquet":
        parts = sorted(b.name for b in out.list_blobs(f"{done.output_prefix}/") if b.name.endswith(".parquet"))
        result = pd.concat(pd.read_parquet(io.BytesIO(out.download_blob(p).readall())) for p in parts)
    else:
        result = pd.read_csv(io.BytesIO(out.download_blob(st["output"]["blob"]).readall()))
    assert list(result["id"]) == list(range(N))                 # every row once, in input order
    assert list(result["double"]) == [i / 2 for i in range(N)]
    assert set(result["versions"]) == {"/".join(OLDEST.values())}


@pytest.mark.stops_jobs
def test_pandas_1_without_its_numpy_fails_with_a_hint_to_pin_numpy(
        storage: Storage, idle_host: LocalHost) -> None:
    """pandas 1.x alone gets the app's numpy 2, which it was not built for: the job stops at init()
    saying what to pin, not with numpy's words alone."""
    put_files(storage, "oldpandas-nonumpy", {"t.csv": b"id,x\n1,2.5\n"})
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, {
        "name": "old-pandas", "entry_script": "old_pandas.py",
        "source_directory": snapshots.upload(storage, Path(__file__).parent / "scripts"),
        "inputs": [{"path": "oldpandas-nonumpy/", "type": "tabular"}], "process_count_per_node": 1,
        "environment": [f"pandas=={OLDEST['pandas']}"]})
    with idle_host:
        idle_host.drain(timeout_s=300)
    done = ledger.get_job(job.job_id)
    assert done.state == "failed"
    assert "binary incompatibility" in done.error and "pin the numpy it needs" in done.error, done.error
