"""The CLI refuses before it uploads: a spec file's source_directory stays inside the spec's
folder, an invalid spec uploads nothing, a large upload is announced; bad input gives a one-line
error, never a traceback; ``up --require-key`` makes and keeps the local key the CLI reads."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest

from shared.cli import main as cli
from shared.settings import Settings
from shared.storage import Storage

from .conftest import SCRIPTS
from .test_cli import entry_point, env, write_job  # noqa: F401 - env is a fixture

Capture = pytest.CaptureFixture[str]


def stored_snapshots(storage: Storage) -> list[str]:
    return [b.name for b in storage.system.list_blobs(name_starts_with="snapshots/")]


def one_line_error(code: int, out: str, err: str, exit_code: int) -> str:
    assert code == exit_code, (out, err)
    assert "Traceback" not in out + err, err
    return err


@pytest.mark.parametrize("source", ["../../../../etc/ssl", "/etc/ssl", "code/../.."])
def test_a_source_directory_outside_the_spec_folder_is_refused_and_nothing_uploaded(
        env: None, tmp_path: Path, storage: Storage, source: str,
        monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    storage.ensure_container("clidata")
    spec = write_job(tmp_path, source_directory=source, models=[])
    err = one_line_error(*entry_point(monkeypatch, capsys, "submit", str(spec)), exit_code=2)
    assert "source_directory" in err and "--source-dir" in err
    assert stored_snapshots(storage) == []


def test_a_folder_elsewhere_is_given_explicitly_with_source_dir(
        env: None, tmp_path: Path, storage: Storage, monkeypatch: pytest.MonkeyPatch,
        capsys: Capture) -> None:
    storage.ensure_container("clidata").upload_blob("in/f0.txt", b"0", overwrite=True)   # an input lists a file
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(SCRIPTS, elsewhere, ignore=shutil.ignore_patterns("__pycache__"))
    spec = write_job(tmp_path, source_directory="../../elsewhere", models=[])
    code, out, err = entry_point(monkeypatch, capsys, "submit", str(spec), "--source-dir",
                                 str(elsewhere), "--json")
    assert code in (0, None), (out, err)
    assert json.loads(out)["job_id"]
    assert f"uploading source_directory {elsewhere.resolve()}" in err and "file(s)" in err
    assert len(stored_snapshots(storage)) == 1


@pytest.mark.parametrize("fields,named", [
    ({"name": "Bad_Name"}, "name"),
    ({"entry_script": "missing.py"}, "entry_script"),
    ({"description": "d" * 100_000}, "description"),
])
def test_an_invalid_spec_uploads_nothing(
        env: None, tmp_path: Path, storage: Storage, fields: dict[str, str], named: str,
        monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    storage.ensure_container("clidata")
    spec = write_job(tmp_path, models=[], **fields)
    err = one_line_error(*entry_point(monkeypatch, capsys, "submit", str(spec)), exit_code=2)
    assert f"  {named}: " in err
    assert "uploading" not in err
    assert stored_snapshots(storage) == []


def test_malformed_yaml_is_a_one_line_error(env: None, tmp_path: Path, storage: Storage,
                                            monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: x\ninputs: [unclosed\n")
    err = one_line_error(*entry_point(monkeypatch, capsys, "submit", str(spec)), exit_code=2)
    assert "not valid JSON or YAML" in err


def test_a_missing_spec_file_is_a_one_line_error(env: None, tmp_path: Path, storage: Storage,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: Capture) -> None:
    err = one_line_error(*entry_point(monkeypatch, capsys, "submit", str(tmp_path / "no.yaml")),
                         exit_code=1)
    assert "cannot read the spec file" in err


@pytest.mark.parametrize("target", ["Bad_Container", "a", "UPPER/prefix"])
def test_a_bad_container_name_is_a_one_line_error(env: None, tmp_path: Path, storage: Storage,
                                                  target: str, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: Capture) -> None:
    (tmp_path / "f.txt").write_text("x")
    err = one_line_error(*entry_point(monkeypatch, capsys, "upload", str(tmp_path / "f.txt"),
                                      target), exit_code=1)
    assert "not a valid container name" in err


@pytest.mark.parametrize("command", ["results", "status", "cancel"])
def test_a_job_id_that_is_a_path_is_a_one_line_error(env: None, storage: Storage, command: str,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: Capture) -> None:
    err = one_line_error(*entry_point(monkeypatch, capsys, command, "../../x"), exit_code=1)
    assert "is not a job id" in err


def test_upload_says_what_and_how_much_first(env: None, tmp_path: Path, storage: Storage,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: Capture) -> None:
    folder = tmp_path / "up"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"a" * 3000)
    (folder / "b.bin").write_bytes(b"b" * 2000)
    code, out, err = entry_point(monkeypatch, capsys, "upload", str(folder), "safety-up/x")
    assert code in (0, None), (out, err)
    assert f"uploading {folder}: 2 file(s), 5,000 bytes to safety-up/x" in err


def test_require_key_generates_the_key_once_and_the_cli_reads_it(
        env: None, tmp_path: Path, settings: Settings) -> None:
    first = cli._with_local_key(cli.load_settings())
    path = tmp_path / "local.settings.json"
    saved = json.loads(path.read_text())["Values"]["PARALLELRUN_LOCAL_KEY"]
    assert first.local_key == saved and len(saved) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cli._with_local_key(cli.load_settings()).local_key == saved   # kept, not replaced
    assert cli.load_settings().local_key == saved                        # what every command reads
    assert first.to_env()["PARALLELRUN_LOCAL_KEY"] == saved              # what `up` gives its nodes


def test_require_key_keeps_the_other_local_settings(env: None, tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": {"OTHER": "1"}}))
    cli._with_local_key(cli.load_settings())
    values = json.loads(path.read_text())["Values"]
    assert values["OTHER"] == "1" and values["PARALLELRUN_LOCAL_KEY"]
