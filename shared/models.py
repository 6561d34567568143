"""The model registry: ``parallelrun model register NAME PATH`` and ``Model.get_model_path``.

A model version is a file or a folder uploaded to ``<system container>/models/<name>/<version>/``
with one row in the models table (partition = name, row = zero-padded version). A worker downloads
the versions a job pins once per node (``<scratch>/models/<name>/<version>/``) and links them into
each scoring process's ``$AZUREML_MODEL_DIR/<name>/<version>/``; ``Model.get_model_path`` returns
the path of the file (single-file models) or of the folder, as Azure ML does, downloading versions
the job did not pin on first use.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from azure.core.exceptions import ResourceExistsError

from .errors import NotFoundError, SubmitterError
from .storage import Storage

log = logging.getLogger("parallelrun.models")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    files: tuple[str, ...]     # relative paths
    single_file: bool

    @property
    def prefix(self) -> str:
        return f"models/{self.name}/{self.version}/"


def _files_of(path: Path) -> list[tuple[Path, str]]:
    if path.is_file():
        return [(path, path.name)]
    if path.is_dir():
        return [(p, p.relative_to(path).as_posix()) for p in sorted(path.rglob("*")) if p.is_file()]
    raise SubmitterError(f"model path {path} does not exist")


def register(storage: Storage, name: str, path: str | os.PathLike[str]) -> ModelVersion:
    """Upload ``path`` (file or folder) as the next version of model ``name``."""
    if not NAME_RE.match(name):
        raise SubmitterError(f"invalid model name {name!r}: letters, digits, '-', '_', '.'")
    files = _files_of(Path(path))
    if not files:
        raise SubmitterError(f"model path {path} contains no files")
    table = storage.table(storage.settings.models_table)
    while True:
        version = latest_version(storage, name, required=False) + 1
        try:  # claim the version number first; a concurrent register retries with the next
            table.create_entity({"PartitionKey": name, "RowKey": f"{version:06d}", "ready": False})
            break
        except ResourceExistsError:
            continue
    model = ModelVersion(name, version, tuple(rel for _, rel in files), Path(path).is_file())
    for local, rel in files:
        with open(local, "rb") as fh:
            storage.system.upload_blob(model.prefix + rel, fh, overwrite=True)
    table.upsert_entity({"PartitionKey": name, "RowKey": f"{version:06d}", "ready": True,
                         "files": json.dumps(list(model.files)), "single_file": model.single_file})
    log.info("model registered: %s version %d (%d files)", name, version, len(files))
    return model


def _ready_versions(storage: Storage, name: str) -> list[dict]:
    table = storage.table(storage.settings.models_table)
    rows = table.query_entities("PartitionKey eq @n", parameters={"n": name})
    return [r for r in rows if r.get("ready")]


def latest_version(storage: Storage, name: str, required: bool = True) -> int:
    table = storage.table(storage.settings.models_table)
    versions = [int(r["RowKey"]) for r in table.query_entities("PartitionKey eq @n",
                                                               parameters={"n": name})]
    if not versions and required:
        raise NotFoundError(f"model {name!r} is not registered (parallelrun model register {name} PATH)")
    return max(versions, default=0)


def get_version(storage: Storage, name: str, version: int | None = None) -> ModelVersion:
    rows = {int(r["RowKey"]): r for r in _ready_versions(storage, name)}
    if not rows:
        raise NotFoundError(f"model {name!r} is not registered (parallelrun model register {name} PATH)")
    v = max(rows) if version is None else version
    if v not in rows:
        raise NotFoundError(f"model {name!r} has no version {v} (versions: {sorted(rows)})")
    row = rows[v]
    return ModelVersion(name, v, tuple(json.loads(row["files"])), bool(row["single_file"]))


def list_models(storage: Storage) -> list[ModelVersion]:
    table = storage.table(storage.settings.models_table)
    return [ModelVersion(r["PartitionKey"], int(r["RowKey"]), tuple(json.loads(r["files"])),
                         bool(r["single_file"])) for r in table.list_entities() if r.get("ready")]


_download_lock = threading.Lock()


def download(storage: Storage, model: ModelVersion, root: str | os.PathLike[str]) -> Path:
    """Download ``model`` under ``root/<name>/<version>/`` once; return the file or folder path.

    The files go to a private folder first, renamed into place when complete, so processes that share
    ``root`` (a node's model cache) never see a half-written model."""
    target = Path(root) / model.name / str(model.version)
    with _download_lock:
        if not target.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{model.version}-", dir=target.parent))
            try:
                for rel in model.files:
                    dest = (staging / rel).resolve()
                    if not dest.is_relative_to(staging.resolve()):
                        raise SubmitterError(f"model file {rel!r} escapes its folder")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with open(dest, "wb") as fh:
                        storage.system.download_blob(model.prefix + rel).readinto(fh)
                try:
                    staging.rename(target)
                except OSError:      # another process put the same version in place first
                    if not target.is_dir():
                        raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return target / model.files[0] if model.single_file else target
