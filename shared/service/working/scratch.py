"""A host's scratch folder: private to it, and what lives there read-only.

``Settings.scratch_dir`` empty (the default): every host start (every :class:`JobContexts`) makes
its own ``<temp>/parallelrun-<node>-<random>/`` (mode 0700), removed when the host stops. Set it
and the host uses ``<scratch_dir>/<node id>/`` (created 0700, tightened to 0700 if it exists), which
several processes of one host may share. Caches in it are keyed by storage account and content
hash, so sharing a folder never mixes two accounts' or two contents' files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from shared.errors import OperatorError
from shared.storage import Storage

log = logging.getLogger("parallelrun.scratch")

PRIVATE_MODE = 0o700


def host_root(scratch_dir: str, node_id: str) -> tuple[Path, bool]:
    """The host's scratch folder and whether it is a private one made now (to remove at stop)."""
    if not scratch_dir:
        return Path(tempfile.mkdtemp(prefix=f"parallelrun-{node_id}-")), True   # 0700 by mkdtemp
    root = Path(scratch_dir) / node_id
    root.mkdir(mode=PRIVATE_MODE, parents=True, exist_ok=True)
    info = root.stat()
    if info.st_uid != os.getuid():
        raise OperatorError(f"scratch folder {root} belongs to another user (uid {info.st_uid}); "
                            "set PARALLELRUN_SCRATCH_DIR to a folder of this host's own")
    if stat.S_IMODE(info.st_mode) != PRIVATE_MODE:
        os.chmod(root, PRIVATE_MODE)
    return root, False


def account_key(storage: Storage) -> str:
    """A short stable name for the storage account the files came from (its blob endpoint)."""
    return hashlib.sha256(storage.blob_service.url.rstrip("/").encode()).hexdigest()[:16]


def make_read_only(path: Path) -> None:
    """Files 0444, folders 0555, beneath ``path`` and ``path`` itself (before it is published).
    Symbolic links are left alone (a link has no mode of its own; what it points to is not ours)."""
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chmod(Path(dirpath) / name, 0o444)
    for dirpath, dirnames, _ in os.walk(path, topdown=False):
        for name in dirnames:
            if not os.path.islink(os.path.join(dirpath, name)):
                os.chmod(Path(dirpath) / name, 0o555)
    os.chmod(path, 0o555)


def publish(target: Path, fill: Callable[[Path], None]) -> None:
    """Make ``target`` a read-only folder filled by ``fill(staging)``, once: filled in a private
    folder beside it, made read-only and renamed into place, so readers never see half of it.
    Another thread or process that put it in place first wins; a failed fill leaves nothing."""
    if target.is_dir():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fill(staging)
        make_read_only(staging)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        remove_tree(staging)


def remove_tree(path: Path) -> None:
    """``rm -rf``, including read-only folders made by :func:`make_read_only`."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink():
        for dirpath, _, _ in os.walk(path):
            try:
                os.chmod(dirpath, 0o700)
            except OSError:
                pass
    shutil.rmtree(path, ignore_errors=True)
