"""Side inputs (PRS's ``side_inputs``): files every scoring process of a job reads whole, such as a
label map or a lookup table, downloaded once per node per job.

Into a private folder first, then made read-only and renamed into place
(``<scratch>/jobs/<job>/side_inputs/<name>/``, outside every scoring process's writable folder), so
processes never see half of one. A side input is bounded (:data:`MAX_FILES`, :data:`MAX_BYTES`);
one that is missing, empty of files or over the bounds makes its job unrunnable, with the reason.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from shared.errors import SubmitterError
from shared.scoring.blobreader import BlobNotFound
from shared.service.planning import fileinputs
from shared.service.working import scratch
from shared.spec import SideInputSpec
from shared.storage import Storage

MAX_FILES = 10_000
MAX_BYTES = 4 * 1024 ** 3


def materialize(storage: Storage, side: SideInputSpec, root: Path) -> Path:
    """Download a file side input into ``root/<name>/`` once; returns the path its binding
    stands for: the folder, or the one file of a single-file ``files`` list."""
    source = side.source
    target = root / side.name
    scratch.publish(target, lambda staging: _download(storage, side, staging))
    if source.files is not None and len(source.files) == 1:
        return target / _relative(source.prefix, source.files[0])
    return target


def _download(storage: Storage, side: SideInputSpec, staging: Path) -> None:
    source, reader = side.source, storage.blob_reader
    files = size = 0
    token: str | None = None
    while True:
        names, token, _ = fileinputs.list_page(storage, source, token)
        for name in names:
            dest = staging.joinpath(*PurePosixPath(_relative(source.prefix, name)).parts)
            if not dest.resolve().is_relative_to(staging.resolve()):
                raise SubmitterError(f"side input {side.name}: blob {name!r} escapes its folder")
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(dest, "wb") as fh:
                    reader.read_into(source.container, name, fh)
            except BlobNotFound:
                raise SubmitterError(f"side input {side.name}: blob {source.container}/{name} "
                                     "does not exist") from None
            files, size = files + 1, size + dest.stat().st_size
            if files > MAX_FILES or size > MAX_BYTES:
                raise SubmitterError(f"side input {side.name} is over {MAX_FILES:,} files or "
                                     f"{MAX_BYTES // 1024 ** 3} GiB: a side input is read whole by every "
                                     "process; split the data into the job's inputs instead")
        if token is None:
            break
    if files == 0:
        raise SubmitterError(f"side input {side.name}: no files at {source.describe()}")


def _relative(prefix: str, name: str) -> str:
    rel = name[len(prefix):] if prefix and name.startswith(prefix) else name
    if not rel or any(p in ("..", "") for p in PurePosixPath(rel).parts) or rel.startswith("/"):
        raise SubmitterError(f"blob name {name!r} cannot be used as a file path")
    return rel
