"""A host's disk is its own, and what it caches is keyed by storage account and content hash.

Before, scratch defaulted to ``<temp>/parallelrun/<node id>`` for every host on the machine: a
second host scored with the first host's cached weights of a model of the same name and version;
and a script could rewrite its own extracted code or the node's model cache for the next job.
"""

from __future__ import annotations

import dataclasses
import stat
import uuid
from pathlib import Path

from shared.local.azurite import Azurite
from shared.local.host import LocalHost, load_app
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import snapshots
from shared.service.working.jobcontext import JobContexts
from shared.settings import Settings
from shared.storage import Storage

from .conftest import SCRIPTS, put_files, register_text_model


def default_scratch(azurite: Azurite, namespace: str) -> Settings:
    """A host's settings as an operator gives them: their own names, the default scratch."""
    named = Settings(connection_string=azurite.connection_string).with_namespace(namespace)
    return dataclasses.replace(named, scratch_dir=Settings().scratch_dir)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_two_hosts_on_one_machine_never_share_a_cached_model(azurite: Azurite, tmp_path: Path) -> None:
    node = f"node-{uuid.uuid4().hex[:6]}"        # the same node name on both hosts
    rows, roots, modes = {}, {}, {}
    for host_name, weights in (("a", "weights-of-a"), ("b", "weights-of-b")):
        settings = default_scratch(azurite, f"scr{uuid.uuid4().hex[:6]}{host_name}")
        storage = Storage(settings)
        storage.ensure()
        (tmp_path / host_name).mkdir()
        register_text_model(storage, tmp_path / host_name, "echo", weights)
        if host_name == "a":
            put_files(storage, "scratchin", {"x.txt": b"1"})
        ledger = Ledger(storage.ledger)
        job = jobs.submit(storage, ledger, {
            "name": "scratch", "entry_script": "prs_style.py", "inputs": ["scratchin/"],
            "source_directory": snapshots.upload(storage, SCRIPTS), "models": ["echo"],
            "process_count_per_node": 1})
        with LocalHost(load_app(), settings, node_id=node, lease_s=5) as host:
            host.drain(timeout_s=60)
            roots[host_name] = host._runtime.worker.jobs.root
            modes[host_name] = mode(roots[host_name])
        final = ledger.get_job(job.job_id)
        assert final.state == "succeeded", final
        rows[host_name] = storage.container(final.output_container).download_blob(
            f"{final.output_prefix}/parallel_run_step.txt").readall().decode().split()
    assert rows["a"][2] == "weights-of-a" and rows["b"][2] == "weights-of-b", rows
    assert modes == {"a": 0o700, "b": 0o700}, "each host's scratch is private"
    assert roots["a"] != roots["b"]
    assert not roots["a"].exists() and not roots["b"].exists(), "a private scratch goes with its host"


def test_a_configured_scratch_folder_is_made_private(storage: Storage, settings: Settings) -> None:
    shared = Path(settings.scratch_dir) / "n1"
    shared.mkdir(parents=True, mode=0o755)
    shared.chmod(0o755)
    contexts = JobContexts(storage, Ledger(storage.ledger), "n1")
    assert contexts.root == shared and mode(shared) == 0o700
    contexts.close()
    assert shared.exists(), "a configured folder is the operator's: kept"


def test_the_default_scratch_is_unique_per_host_start(storage: Storage, settings: Settings) -> None:
    private = dataclasses.replace(settings, scratch_dir="")
    first = JobContexts(Storage(private), Ledger(storage.ledger), "n1")
    second = JobContexts(Storage(private), Ledger(storage.ledger), "n1")
    try:
        assert first.root != second.root
        assert mode(first.root) == mode(second.root) == 0o700
    finally:
        first.close()
        second.close()
    assert not first.root.exists() and not second.root.exists()


def test_a_script_cannot_change_its_code_or_the_model_cache(
        settings: Settings, storage: Storage, tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "echo", "v1")
    put_files(storage, "scratchtamper", {"x.txt": b"1"})
    code = snapshots.upload(storage, SCRIPTS)
    ledger = Ledger(storage.ledger)
    base = {"inputs": ["scratchtamper/"], "source_directory": code, "models": ["echo"],
            "process_count_per_node": 1}
    tamper = jobs.submit(storage, ledger, {**base, "name": "tamper", "entry_script": "tamper.py"})
    honest = jobs.submit(storage, ledger, {**base, "name": "honest", "entry_script": "prs_style.py"})
    with LocalHost(load_app(), settings, lease_s=5) as host:
        host.drain(timeout_s=60)
        root = host._runtime.worker.jobs.root
        source = next(p for p in (root / "snapshots").rglob(snapshots.sha_of(code)) if p.is_dir())
        unchanged = {p.name: p.read_bytes() for p in source.iterdir() if p.is_file()}
        cached = list((root / "models").rglob("echo.txt"))
    results = {}
    for job in (tamper, honest):
        final = ledger.get_job(job.job_id)
        assert final.state == "succeeded", final
        results[job.job_id] = storage.container(final.output_container).download_blob(
            f"{final.output_prefix}/parallel_run_step.txt").readall().decode().splitlines()
    outcome = dict(line.split(" ", 1) for line in results[tamper.job_id])
    refused = {k for k in outcome if k.startswith(("source-", "model-"))}
    assert {k: outcome[k] for k in refused} == dict.fromkeys(refused, "PermissionError"), outcome
    assert outcome["own-temp-file"] == outcome["own-output-file"] == "ok", outcome
    assert results[honest.job_id] == ["x.txt 1 v1 "], "the other job scored with intact weights"
    assert "planted.py" not in unchanged and (SCRIPTS / "frames.py").read_bytes() == unchanged["frames.py"]
    assert len(cached) == 1 and cached[0].read_text() == "v1"
