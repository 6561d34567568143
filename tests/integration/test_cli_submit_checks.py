"""``parallelrun submit`` answers what submit checks, before it uploads: an entry script the local
folder does not hold is named with the folder and its files, and a spec that is refused is
refused whole (its bad fields and the references that do not hold) with nothing uploaded."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.storage import Storage

from .conftest import SCRIPTS, register_text_model
from .test_cli import entry_point, env, write_job  # noqa: F401 - env is a fixture
from .test_cli_safety import stored_snapshots

Capture = pytest.CaptureFixture[str]


def unwrapped(text: str) -> str:
    """``text`` without whitespace: the console folds long lines, even inside a long path."""
    return "".join(text.split())


def named(err: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^  (\S+): ", err, re.MULTILINE)}


@pytest.fixture
def cli_inputs(storage: Storage) -> None:
    storage.ensure_container("clichecks").upload_blob("in/f0.txt", b"0", overwrite=True)


def test_an_entry_script_missing_from_the_folder_names_the_folder_and_its_files(
        env: None, tmp_path: Path, storage: Storage, cli_inputs: None,
        monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    spec = write_job(tmp_path, entry_script="prs_styel.py", inputs=["clichecks/in/"], models=[])
    code, out, err = entry_point(monkeypatch, capsys, "submit", str(spec))
    assert code == 2, (out, err)
    assert named(err) == {"entry_script"}, err
    folder = spec.parent / "code"
    message = unwrapped(err)
    assert unwrapped(f"prs_styel.py is not in source_directory {folder} (did you mean "
                     "'prs_style.py'?)") in message
    count = sum(1 for p in SCRIPTS.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    assert unwrapped(f"it holds {count} file(s): env_dump.py, frames.py, ") in message
    assert unwrapped(f"(and {count - 10} more)") in message
    assert "uploading" not in err and stored_snapshots(storage) == []


def test_a_refused_spec_is_refused_whole_before_anything_is_uploaded(
        env: None, tmp_path: Path, storage: Storage, cli_inputs: None,
        monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    register_text_model(storage, tmp_path, "echo", "m1")
    spec = write_job(tmp_path, name="Bad_Name", entry_script="nope.py", models=["ehco"],
                     inputs=["clichecks/in/", "clichecks/nothing/"])
    code, out, err = entry_point(monkeypatch, capsys, "submit", str(spec))
    assert code == 2, (out, err)
    assert named(err) == {"name", "entry_script", "models.0", "inputs.1"}, err
    message = unwrapped(err)
    assert unwrapped("(did you mean 'echo'?)") in message
    assert unwrapped("no blob matches clichecks/nothing/") in message
    assert "uploading" not in err and stored_snapshots(storage) == []


def test_an_entry_script_that_does_not_compile_is_refused_after_upload(
        env: None, tmp_path: Path, storage: Storage, cli_inputs: None,
        monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    spec = write_job(tmp_path, entry_script="broken.py", inputs=["clichecks/in/"], models=[])
    (spec.parent / "code" / "broken.py").write_text("def run(mini_batch):\n    return (\n")
    code, out, err = entry_point(monkeypatch, capsys, "submit", str(spec))
    assert code == 2, (out, err)
    assert named(err) == {"entry_script"}, err
    assert unwrapped("broken.py does not compile: line 2: '(' was never closed") in unwrapped(err)
    assert list(storage.table(storage.settings.ledger_table).list_entities()) == []
