"""The model registry: ``parallelrun model register NAME PATH`` and ``Model.get_model_path``.

A model version is a file or a folder uploaded to ``<system container>/models/<name>/<version>/``
with one row in the models table (partition = name, row = zero-padded version). A folder keeps its own name inside the
version (``<name>/<version>/<folder>/...``), as in Azure ML. A worker downloads the versions a job
pins once per node (``<scratch>/models/<account>/<content hash>/``) and links them, as real
read-only files, into the job's ``azureml-models/<name>/<version>/``; ``Model.get_model_path``
returns that folder's one entry (the file of a file model, the folder of a folder model), as
Azure ML does.

Registration records the sha256 of every file and a content hash over them (``sha256``); every
download checks each file against it, so a blob changed after registration is refused at use with
:class:`~shared.errors.IntegrityError`. Versions registered before content hashes existed have none
and are refused too (register them again). Downloaded files are read-only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from azure.core.exceptions import ResourceExistsError

from shared.errors import IntegrityError, NotFoundError, SubmitterError
from shared.service.working import scratch
from shared.storage import Storage

log = logging.getLogger("parallelrun.models")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class UnknownModel(NotFoundError):
    """No version of the model is registered."""


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: int
    files: tuple[str, ...]     # relative paths
    single_file: bool
    hashes: tuple[str, ...] = ()   # sha256 of each file, as registered ("" for old registrations)
    sha256: str = ""               # content hash of the version: over (path, file hash) pairs

    @property
    def prefix(self) -> str:
        return f"models/{self.name}/{self.version}/"


def _files_of(path: Path) -> list[tuple[Path, str]]:
    """A model's files and their paths in the version's folder: a file by its name, a folder's
    files beneath the folder's own name (as Azure ML registers them: ``<version>/<folder>/...``)."""
    if path.is_file():
        return [(path, path.name)]
    if path.is_dir():
        top = path.resolve().name
        return [(p, f"{top}/{p.relative_to(path).as_posix()}") for p in sorted(path.rglob("*"))
                if p.is_file()]
    raise SubmitterError(f"model path {path} does not exist")


def entry_of(model: ModelVersion) -> str:
    """The one entry of a version's folder, which ``Model.get_model_path`` returns: a file model's
    file, a folder model's folder; "" when there are several (a folder registered before folders
    kept their names: its version folder itself is the model)."""
    tops = {rel.split("/", 1)[0] for rel in model.files}
    return tops.pop() if len(tops) == 1 else ""


def content_hash(files: tuple[str, ...], hashes: tuple[str, ...]) -> str:
    """The hash of a model version: names and contents of all its files (pure)."""
    manifest = "".join(f"{rel}\0{sha}\n" for rel, sha in zip(files, hashes, strict=True))
    return hashlib.sha256(manifest.encode()).hexdigest()


def unhashed_message(model: ModelVersion) -> str:
    return (f"model {model.name!r} version {model.version} was registered without a content hash "
            f"and cannot be verified: register it again (parallelrun model register {model.name} PATH)")


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _from_row(row: dict) -> ModelVersion:
    files = tuple(json.loads(row["files"]))
    hashes = tuple(json.loads(row.get("hashes") or "[]"))
    return ModelVersion(row["PartitionKey"], int(row["RowKey"]), files, bool(row["single_file"]),
                        hashes, str(row.get("sha256") or ""))


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
    rels = tuple(rel for _, rel in files)
    hashes = tuple(_file_sha256(local) for local, _ in files)
    model = ModelVersion(name, version, rels, Path(path).is_file(), hashes, content_hash(rels, hashes))
    for local, rel in files:
        with open(local, "rb") as fh:
            storage.system.upload_blob(model.prefix + rel, fh, overwrite=True)
    table.upsert_entity({"PartitionKey": name, "RowKey": f"{version:06d}", "ready": True,
                         "files": json.dumps(list(model.files)), "single_file": model.single_file,
                         "hashes": json.dumps(list(hashes)), "sha256": model.sha256})
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
        raise UnknownModel(f"model {name!r} is not registered (parallelrun model register {name} PATH)")
    v = max(rows) if version is None else version
    if v not in rows:
        raise NotFoundError(f"model {name!r} has no version {v} (versions: {sorted(rows)})")
    return _from_row(rows[v])


def list_models(storage: Storage) -> list[ModelVersion]:
    table = storage.table(storage.settings.models_table)
    return [_from_row(r) for r in table.list_entities() if r.get("ready")]


_download_lock = threading.Lock()


def download(storage: Storage, model: ModelVersion, root: str | os.PathLike[str]) -> Path:
    """Download ``model`` under ``root/<name>/<version>/`` once (Azure ML's layout); returns the
    path ``Model.get_model_path`` gives: the version folder's one entry."""
    return _fetch(storage, model, Path(root) / model.name / str(model.version))


def cache_key(storage: Storage, model: ModelVersion) -> str:
    """Where a version lives in a node's cache: ``<storage account key>/<content hash>``."""
    if not model.sha256:
        raise IntegrityError(unhashed_message(model))
    return f"{scratch.account_key(storage)}/{model.sha256}"


def cache_download(storage: Storage, model: ModelVersion, cache: str | os.PathLike[str]) -> Path:
    """Download ``model`` into a node's cache, keyed by account and content hash; returns the
    version's folder there. Two accounts (or two contents under one name and version) never
    share one."""
    target = Path(cache) / cache_key(storage, model)
    _fetch(storage, model, target)
    return target


def link_version(cached: Path, model: ModelVersion, root: Path) -> Path:
    """Put a cached version's files at ``root/<name>/<version>/`` as real files (hard links to
    the cache, copies where the file system refuses links), read-only, the way Azure ML lays out
    ``azureml-models``; returns the path ``Model.get_model_path`` gives.

    Real files, not symbolic links: libraries that resolve a model's paths (MLflow refuses an
    artifact that resolves outside its model folder) see the folder they were given. Built in a
    private folder and renamed into place, so concurrent builders never show a half-linked one."""
    target = root / model.name / str(model.version)

    def fill(staging: Path) -> None:
        for rel in model.files:
            src, dest = cached / rel, staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dest)
            except OSError:       # another file system, or links not allowed: a copy
                shutil.copyfile(src, dest)

    scratch.publish(target, fill)
    entry = entry_of(model)
    return target / entry if entry else target


def _fetch(storage: Storage, model: ModelVersion, target: Path) -> Path:
    """Download and verify ``model`` into ``target`` once, read-only.

    The files go to a private folder first, renamed into place when complete and verified, so
    processes that share a cache never see a half-written or unverified model."""
    if not model.sha256 or len(model.hashes) != len(model.files):
        raise IntegrityError(unhashed_message(model))
    def fill(staging: Path) -> None:
        for rel, expected in zip(model.files, model.hashes, strict=True):
            dest = (staging / rel).resolve()
            if not dest.is_relative_to(staging.resolve()):
                raise SubmitterError(f"model file {rel!r} escapes its folder")
            dest.parent.mkdir(parents=True, exist_ok=True)
            _download_verified(storage, model, rel, expected, dest)

    with _download_lock:
        scratch.publish(target, fill)
    entry = entry_of(model)
    return target / entry if entry else target


def _download_verified(storage: Storage, model: ModelVersion, rel: str, expected: str,
                       dest: Path) -> None:
    h = hashlib.sha256()
    with open(dest, "wb") as fh:
        for chunk in storage.system.download_blob(model.prefix + rel).chunks():
            h.update(chunk)
            fh.write(chunk)
    if h.hexdigest() != expected:
        raise IntegrityError(f"model {model.name!r} version {model.version} file {rel!r} does not "
                             f"match its content hash: expected sha256 {expected}, got "
                             f"{h.hexdigest()} (the blob changed after registration; register "
                             f"the model again)")
