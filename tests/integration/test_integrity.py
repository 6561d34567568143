"""Code snapshots and models are verified against their content hash every time they are used.

Before, extraction trusted the blob under ``snapshots/<sha>.zip`` whatever it held, and a model
version was whatever its blobs held at download: replacing either after submission or registration
ran someone else's code or weights. Now the job is refused at use, with the expected and the
actual hash in the reason.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from shared.errors import IntegrityError, SpecError
from shared.local.host import LocalHost, load_app
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import models, snapshots
from shared.service.working.jobcontext import JobContexts, JobUnrunnable
from shared.settings import Settings
from shared.storage import Storage

from .conftest import SCRIPTS, put_files, register_text_model

# each job is refused before it scores
pytestmark = [pytest.mark.scores_nothing, pytest.mark.stops_jobs]


def spec(code: str, **fields: object) -> dict[str, object]:
    return {"name": "integrity", "entry_script": "prs_style.py", "source_directory": code,
            "inputs": ["integrityin/"], "mini_batch_size": "1", "models": ["echo"],
            "process_count_per_node": 1, **fields}


@pytest.fixture
def inputs(storage: Storage) -> None:
    put_files(storage, "integrityin", {"a.txt": b"1", "b.txt": b"2"})


def evil_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("prs_style.py", "def init():\n    pass\n\ndef run(b):\n    return ['evil'] * len(b)\n")
    return buf.getvalue()


def replace_snapshot(storage: Storage, code: str) -> tuple[str, str]:
    sha = snapshots.sha_of(code)
    data = evil_zip()
    storage.system.upload_blob(f"snapshots/{sha}.zip", data, overwrite=True)
    return sha, hashlib.sha256(data).hexdigest()


def test_a_replaced_snapshot_is_refused_at_use_naming_both_hashes(
        storage: Storage, code: str, inputs: None, tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "echo", "v1")
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code))
    sha, actual = replace_snapshot(storage, code)
    contexts = JobContexts(storage, ledger, "node-a")
    try:
        with pytest.raises(JobUnrunnable) as err:   # the job stops with the reason
            contexts.get(job.job_id)
        assert isinstance(err.value.__cause__, IntegrityError)
        assert f"code snapshot {sha} does not match its content hash" in str(err.value)
        assert f"expected sha256 {sha}, got {actual}" in str(err.value)
        assert not any((contexts.root / "snapshots").rglob("prs_style.py")), "nothing extracted"
    finally:
        contexts.close()


def test_a_replaced_snapshot_is_refused_at_submit(
        storage: Storage, code: str, inputs: None, tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "echo", "v1")
    replace_snapshot(storage, code)
    with pytest.raises(SpecError) as err:
        jobs.submit(storage, Ledger(storage.ledger), spec(code))
    assert [e["field"] for e in err.value.errors] == ["source_directory"]
    assert "does not match its content hash" in err.value.errors[0]["message"]


def test_a_job_whose_snapshot_was_replaced_fails_with_the_reason(
        settings: Settings, storage: Storage, code: str, inputs: None, tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "echo", "v1")
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code))
    sha, actual = replace_snapshot(storage, code)
    with LocalHost(load_app(), settings, lease_s=5) as host:
        host.drain(timeout_s=15)
    final = ledger.get_job(job.job_id)
    assert final.state == "failed"
    assert f"expected sha256 {sha}, got {actual}" in final.error


def test_a_model_changed_after_registration_fails_its_job_with_the_reason(
        settings: Settings, storage: Storage, code: str, inputs: None, tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "echo", "v1")
    model = models.get_version(storage, "echo")
    storage.system.upload_blob(model.prefix + "echo.txt", b"evil weights", overwrite=True)
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, spec(code))   # the registration is intact: accepted
    with LocalHost(load_app(), settings, lease_s=5) as host:
        host.drain(timeout_s=60)
    final = ledger.get_job(job.job_id)
    assert final.state == "failed", final
    assert "model 'echo' version 1 file 'echo.txt' does not match its content hash" in final.error
    assert f"expected sha256 {model.hashes[0]}, got {hashlib.sha256(b'evil weights').hexdigest()}" \
        in final.error


def test_the_node_cache_refuses_a_changed_model(storage: Storage, tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "echo", "v1")
    model = models.get_version(storage, "echo")
    assert model.sha256 and len(model.hashes) == 1
    storage.system.upload_blob(model.prefix + "echo.txt", b"v2", overwrite=True)
    with pytest.raises(IntegrityError, match="does not match its content hash"):
        models.cache_download(storage, model, tmp_path / "cache")
    assert not any((tmp_path / "cache").rglob("echo.txt")), "nothing unverified is left in the cache"


def test_a_version_registered_without_a_content_hash_is_refused(
        storage: Storage, code: str, inputs: None, tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "echo", "v1")
    table = storage.table(storage.settings.models_table)
    row = dict(table.get_entity("echo", "000001"))
    for key in ("hashes", "sha256"):
        row.pop(key)
    table.upsert_entity(row, mode="replace")   # as registered before content hashes
    with pytest.raises(SpecError) as err:
        jobs.submit(storage, Ledger(storage.ledger), spec(code))
    assert [e["field"] for e in err.value.errors] == ["models.0"]
    assert "registered without a content hash" in err.value.errors[0]["message"]
    with pytest.raises(IntegrityError):
        models.download(storage, models.get_version(storage, "echo"), tmp_path / "m")


def test_uploading_the_code_again_repairs_a_replaced_snapshot(
        storage: Storage, code: str, inputs: None, tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "echo", "v1")
    replace_snapshot(storage, code)
    assert snapshots.upload(storage, SCRIPTS) == code
    data = storage.system.download_blob(f"snapshots/{snapshots.sha_of(code)}.zip").readall()
    assert hashlib.sha256(data).hexdigest() == snapshots.sha_of(code)
    assert jobs.submit(storage, Ledger(storage.ledger), spec(code)).snapshot == code
