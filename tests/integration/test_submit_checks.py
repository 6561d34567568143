"""What submit checks against storage, through the local host's HTTP API on Azurite.

Everything that can be known at submit is answered there, with a 422 naming the field: inputs
that match no blob (or whose container does not exist), an entry script that is not in the
snapshot or does not compile, models and containers that do not exist (with a did-you-mean),
and all of it in one answer together with the schema's errors. A YAML body parses whatever
content type it comes with; one whose newlines ``curl -d`` dropped gets a hint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from shared.local.host import LocalHost
from shared.service.planning import fileinputs
from shared.service.working import snapshots
from shared.settings import Settings
from shared.storage import Storage

from .conftest import put_files, register_text_model
from .test_submission_errors import assert_nothing_accepted, receipt, refused


@pytest.fixture
def inputs(storage: Storage) -> None:
    put_files(storage, "checkin", {"a/f0.txt": b"0", "a/f1.txt": b"11", "b/x.bin": b"x"})


def spec(code: str, **fields: Any) -> dict[str, Any]:
    """A spec that is accepted as is, with ``fields`` replaced."""
    return {"name": "checks", "entry_script": "frames.py", "source_directory": code,
            "inputs": ["checkin/a/"], "mini_batch_size": "2", **fields}


def snapshot_of(storage: Storage, folder: Path, files: dict[str, str]) -> str:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return snapshots.upload(storage, folder)


# -- all in one answer -----------------------------------------------------------------------------
@pytest.mark.scores_nothing
def test_schema_errors_and_missing_references_come_back_in_one_answer(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, inputs: None,
        tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "echo", "v1")
    errors = refused(api.post("/api/jobs", json=spec(
        code, name="Bad_Name", run_max_try=0, inputs=["checkin/a/", "checkin/nothing/"],
        models=["ehco"])))
    assert set(errors) == {"name", "run_max_try", "inputs.1", "models.0"}, errors
    assert "Bad_Name" in errors["name"]
    assert "no blob matches checkin/nothing/" in errors["inputs.1"]
    assert "model 'ehco' is not registered (did you mean 'echo'?)" in errors["models.0"]
    assert_nothing_accepted(host, storage, api)


@pytest.mark.scores_nothing
def test_a_bad_input_does_not_hide_the_others(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, inputs: None) -> None:
    errors = refused(api.post("/api/jobs", json=spec(
        code, inputs=[{"container": "Bad_Container"}, "checkin/nothing/", "checkinn/a/"])))
    assert set(errors) == {"inputs.0.container", "inputs.1", "inputs.2.container"}, errors
    assert "not a valid container name" in errors["inputs.0.container"]
    assert "container 'checkinn' does not exist (did you mean 'checkin'?)" in errors["inputs.2.container"]
    assert_nothing_accepted(host, storage, api)


def test_resubmit_answers_every_error_at_once(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, inputs: None) -> None:
    r = api.post("/api/jobs", json=spec(code))
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    errors = refused(api.post(f"/api/jobs/{job_id}/resubmit", json={
        "run_max_try": 0, "inputs": ["checkin/nothing/"], "models": ["ghost"]}))
    assert set(errors) == {"run_max_try", "inputs.0", "models.0"}, errors


# -- inputs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"inputs": ["checkin/nothing/"]}, "inputs.0", "no blob matches checkin/nothing/"),
    ({"inputs": [{"container": "checkin", "prefix": "a/", "glob": "*.csv"}]}, "inputs.0",
     "no blob matches checkin/a/ (glob *.csv)"),
    ({"inputs": ["checkin/a/", {"container": "checkin", "prefix": "b/", "glob": "f*"}]}, "inputs.1",
     "no blob matches checkin/b/ (glob f*)"),
    ({"inputs": [{"container": "checkin", "prefix": "tables/", "type": "tabular"}],
      "mini_batch_size": "1MB"}, "inputs.0", "no blob matches checkin/tables/"),
    ({"side_inputs": [{"name": "labels", "path": "checkin/labels/"}]}, "side_inputs.0",
     "no blob matches checkin/labels/"),
    ({"inputs": ["chekin/a/"]}, "inputs.0.container",
     "container 'chekin' does not exist (did you mean 'checkin'?)"),
    ({"side_inputs": [{"name": "labels", "path": "nosuchlabels/x/"}]}, "side_inputs.0.container",
     "container 'nosuchlabels' does not exist"),
], ids=["empty-prefix", "glob-matches-nothing", "second-input", "tabular", "side-input",
        "container-typo", "side-input-container"])
@pytest.mark.scores_nothing
def test_an_input_that_matches_nothing_is_refused_naming_it(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, inputs: None,
        fields: dict[str, Any], field: str, words: str) -> None:
    errors = refused(api.post("/api/jobs", json=spec(code, **fields)))
    assert list(errors) == [field], errors
    assert words in errors[field]
    assert_nothing_accepted(host, storage, api)


def test_a_glob_is_probed_from_its_literal_start_in_one_bounded_page(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    put_files(storage, "checkglob", {"a/x0.txt": b"0", "a/x1.txt": b"1", "a/x2.txt": b"2",
                                     "a/y.csv": b"yy", "a/z.csv": b"zz"})
    monkeypatch.setattr(fileinputs, "PROBE_PAGE", 2)
    # "y*.csv" lists from a/y: its match is on the first page
    assert api.post("/api/jobs", json=spec(code, inputs=[
        {"container": "checkglob", "prefix": "a/", "glob": "y*.csv"}])).status_code == 202
    # "*.csv" lists from a/: two names, neither matches, more follow -> not known, accepted
    assert api.post("/api/jobs", json=spec(code, inputs=[
        {"container": "checkglob", "prefix": "a/", "glob": "*.csv"}])).status_code == 202
    # "q*" lists nothing from a/q: refused
    errors = refused(api.post("/api/jobs", json=spec(code, inputs=[
        {"container": "checkglob", "prefix": "a/", "glob": "q*"}])))
    assert list(errors) == ["inputs.0"]
    host.drain()


def test_a_spec_uploaded_before_its_inputs_gets_the_error_and_runs_when_uploaded_again(
        host: LocalHost, api: httpx.Client, storage: Storage, settings: Settings,
        code: str) -> None:
    requests = storage.container(settings.requests_container)
    body = json.dumps(spec(code, inputs=["checklater/in/"]))
    storage.ensure_container("checklater")
    requests.upload_blob("later.json", body)
    host.drain()
    note = receipt(storage, "later.json")
    assert [e["field"] for e in note["errors"]] == ["inputs.0"], note
    assert "job_id" not in note
    put_files(storage, "checklater", {"in/f.txt": b"f"})
    requests.upload_blob("later.json", body, overwrite=True)   # a new version of the request
    host.drain()
    note = receipt(storage, "later.json")
    assert "errors" not in note, note
    assert api.get(f"/api/jobs/{note['job_id']}").json()["state"] == "succeeded"


# -- the entry script ------------------------------------------------------------------------------
@pytest.mark.parametrize(("source", "words"), [
    ("import os\n\n\ndef run(mini_batch):\n    return [p for p in mini_batch\n",
     "line 5: '[' was never closed"),
    ("def init():\npass\n", "line 2: expected an indented block"),
    ("def run(mini_batch):\n    return mini_batch\n\nreturn 1\n", "line 4: 'return' outside function"),
], ids=["unclosed-bracket", "indentation", "compiler-error"])
@pytest.mark.scores_nothing
def test_an_entry_script_that_does_not_compile_is_named_with_its_line(
        host: LocalHost, api: httpx.Client, storage: Storage, inputs: None, tmp_path: Path,
        source: str, words: str) -> None:
    code = snapshot_of(storage, tmp_path / "code", {"score.py": source, "util.py": "X = 1\n"})
    errors = refused(api.post("/api/jobs", json=spec(code, entry_script="score.py")))
    assert list(errors) == ["entry_script"], errors
    assert errors["entry_script"].startswith("score.py does not compile: ")
    assert words in errors["entry_script"]
    assert_nothing_accepted(host, storage, api)


@pytest.mark.scores_nothing
def test_an_entry_script_missing_from_the_snapshot_names_what_is_there(
        host: LocalHost, api: httpx.Client, storage: Storage, inputs: None, tmp_path: Path) -> None:
    files = {"score.py": "def run(b):\n    return b\n", **{f"lib/m{i:02d}.py": "" for i in range(11)}}
    code = snapshot_of(storage, tmp_path / "code", files)
    errors = refused(api.post("/api/jobs", json=spec(code, entry_script="scroe.py")))
    message = errors["entry_script"]
    assert list(errors) == ["entry_script"], errors
    assert message.startswith(f"scroe.py is not in source_directory {code} (did you mean 'score.py'?)")
    assert "it holds 12 file(s): lib/m00.py, lib/m01.py" in message
    assert message.endswith("(and 2 more)")


# -- models and outputs ----------------------------------------------------------------------------
@pytest.mark.scores_nothing
def test_a_side_input_model_that_is_not_registered_names_its_side_input(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, inputs: None,
        tmp_path: Path) -> None:
    register_text_model(storage, tmp_path, "lookup", "v1")
    errors = refused(api.post("/api/jobs", json=spec(
        code, side_inputs=[{"name": "lk", "model": "lookpu"}])))
    assert list(errors) == ["side_inputs.0.model"], errors
    assert "(did you mean 'lookup'?)" in errors["side_inputs.0.model"]


@pytest.mark.scores_nothing
def test_an_output_container_that_does_not_exist_is_made_at_submission(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, inputs: None) -> None:
    r = api.post("/api/jobs", json=spec(code, output="checkmade/run1"))
    assert r.status_code == 202, r.text
    assert storage.container("checkmade").exists()


# -- bodies ----------------------------------------------------------------------------------------
CONTENT_TYPES = ["application/x-www-form-urlencoded", "text/yaml", "application/yaml",
                 "application/x-yaml", "application/json", "text/plain", None]


@pytest.mark.parametrize("content_type", CONTENT_TYPES, ids=[str(c) for c in CONTENT_TYPES])
@pytest.mark.scores_nothing
def test_a_yaml_body_parses_whatever_its_content_type(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, inputs: None,
        content_type: str | None) -> None:
    """The answer names a field only the parsed YAML has: the body was read as the spec."""
    body = yaml.safe_dump(spec(code, models=["ghost"]), sort_keys=False)
    headers = {"content-type": content_type} if content_type else {}
    r = api.post("/api/jobs", content=body.encode(), headers=headers)
    assert r.request.headers.get("content-type") == content_type
    errors = refused(r)
    assert list(errors) == ["models.0"], errors
    assert "model 'ghost' is not registered" in errors["models.0"]


def test_a_yaml_body_sent_as_curl_sends_it_is_accepted(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, inputs: None) -> None:
    """``curl --data-binary @job.yaml``: YAML as application/x-www-form-urlencoded."""
    body = yaml.safe_dump(spec(code), sort_keys=False)
    r = api.post("/api/jobs", content=body.encode(),
                 headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 202, r.text
    host.drain()
    assert api.get(r.json()["status_url"]).json()["state"] == "succeeded"


@pytest.mark.scores_nothing
def test_a_yaml_body_that_lost_its_newlines_gets_a_hint(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str, inputs: None) -> None:
    """``curl -d @job.yaml`` drops every newline (and sends the form content type)."""
    body = yaml.safe_dump(spec(code), sort_keys=False).replace("\n", "")
    errors = refused(api.post("/api/jobs", content=body.encode(),
                              headers={"content-type": "application/x-www-form-urlencoded"}))
    assert list(errors) == ["(body)"], errors
    assert "--data-binary" in errors["(body)"]
    assert_nothing_accepted(host, storage, api)
