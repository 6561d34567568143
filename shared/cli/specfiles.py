"""A spec file read for submission: its data within the limits, the folders it names (inside
its own folder only) and its local ``source_directory`` checked, then uploaded as a snapshot.

The spec is refused whole before anything is uploaded: its bad fields, an entry script the local
folder does not hold (naming the folder and its files) and the references the service checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared import v2job
from shared.cli.console import err_console
from shared.errors import SpecError, SubmitterError
from shared.limits import Limits, check_spec_bytes, load_text
from shared.service.jobs import lifecycle as jobs
from shared.service.jobs import references
from shared.service.working import snapshots
from shared.spec import parse_submission
from shared.storage import Storage


def size_text(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n:,} bytes"


def load_spec_file(path: Path, source_dir: Path | None, limits: Limits | None = None) -> dict[str, Any]:
    """A spec file as data, within the limits; a local ``source_directory`` as an absolute folder."""
    limits = limits or Limits()
    try:
        check_spec_bytes(path.stat().st_size, limits)
        text = path.read_bytes()
    except OSError as exc:
        raise SubmitterError(f"cannot read the spec file {path}: {exc.strerror}") from None
    data = load_text(text, limits)
    if not isinstance(data, dict):
        raise SpecError([{"field": "(spec)", "message": f"{path} does not hold a mapping"}])
    if v2job.is_v2(data):    # an Azure ML v2 parallel job: task.code is its source_directory
        data = v2job.translate(data)
        env = data.get("environment")
        if isinstance(env, dict) and isinstance(env.get("conda_file"), str):
            # v2 resolves conda_file against the job YAML's folder: read it here, send it inline
            conda = spec_folder(path, env["conda_file"], "task.environment.conda_file")
            try:
                data["environment"] = {**env, "conda_file": load_text(conda.read_bytes(), limits)}
            except OSError as exc:
                raise SpecError([{"field": "task.environment.conda_file",
                                  "message": f"cannot read {conda}: {exc.strerror}"}]) from None
    src = data.get("source_directory")
    if source_dir is not None:
        data["source_directory"] = str(source_dir.resolve())   # given explicitly: anywhere
    elif src is not None and not str(src).startswith(snapshots.PREFIX):
        data["source_directory"] = str(spec_folder(path, str(src)))
    return data


def spec_folder(spec_path: Path, value: str, field: str = "source_directory") -> Path:
    """A path a spec file names (its ``source_directory``): relative to the spec's folder, and
    inside it."""
    base = spec_path.resolve().parent
    folder = (base / value).resolve()
    if Path(value).is_absolute() or not folder.is_relative_to(base):
        raise SpecError([{"field": field, "message":
                          f"{value!r} is outside the spec file's folder {base}: a spec file may only "
                          "name a folder inside its own; give another with --source-dir"}])
    return folder


def upload_source(storage: Storage, data: dict[str, Any]) -> dict[str, Any]:
    """Validate the spec, then upload its local source_directory (saying what and how big first).
    A spec that is refused is refused whole before anything is uploaded: its bad fields, an entry
    script the folder does not hold (naming the folder and its files) and the references the
    service checks that do not hold."""
    src = data.get("source_directory")
    if not src or str(src).startswith(snapshots.PREFIX):
        return data
    limits = storage.settings.limits
    parsed = parse_submission({**data, "source_directory": snapshots.PREFIX + "0" * 64}, limits)
    size = snapshots.scan(src, limits)
    errors, entry = list(parsed.errors), parsed.parts.entry_script
    if entry is not None and not (Path(src) / entry).is_file():
        errors.append({"field": "entry_script", "message": references.missing_entry_script(
            entry, src, snapshots.relative_files(src))})
    if errors:
        raise SpecError(jobs.merged(errors + references.check(storage, parsed.parts, code=False).errors))
    err_console.print(f"uploading source_directory {src}: {size.files} file(s), "
                      f"{size_text(size.expanded_bytes)}", soft_wrap=True)
    return {**data, "source_directory": snapshots.upload(storage, src)}
