"""Extraction on a worker is bounded, and extracted snapshots do not pile up.

Before, a 4 MB zip expanded to 4 GiB on the worker's disk, a zip of 100,000 members was expanded
member by member, and every extracted snapshot stayed forever. Now the central directory is
checked before anything is written, the bytes really written are counted as they are (headers can
lie), and the least recently used extractions beyond a count or size are evicted, never one in use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import struct
import time
import zipfile
from pathlib import Path

import pytest

from shared.errors import SubmitterError
from shared.scoring import holds
from shared.service.working import snapshots
from shared.settings import Settings
from shared.storage import Storage


def put_zip(storage: Storage, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    storage.system.upload_blob(f"snapshots/{sha}.zip", data, overwrite=True)
    return snapshots.PREFIX + sha


def bomb(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("big.bin", "w") as out:
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            out.write(chunk)
    return buf.getvalue()


def lie_about_sizes(data: bytes, declared: int) -> bytes:
    """The same zip with its one member's uncompressed size rewritten in both headers."""
    raw = bytearray(data)
    local = raw.find(b"PK\x03\x04")
    struct.pack_into("<I", raw, local + 22, declared)
    central = raw.find(b"PK\x01\x02")
    struct.pack_into("<I", raw, central + 24, declared)
    return bytes(raw)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(snapshots.USED)]


@pytest.fixture
def small(storage: Storage) -> Storage:
    limits = dataclasses.replace(storage.settings.limits, max_snapshot_expanded_bytes=8 << 20)
    return Storage(dataclasses.replace(storage.settings, limits=limits))


def test_a_zip_bomb_is_refused_before_it_is_expanded(small: Storage, tmp_path: Path) -> None:
    data = bomb(64 << 20)
    assert len(data) < 1 << 20
    with pytest.raises(SubmitterError, match="expands to 67108864 bytes, more than the 8388608"):
        snapshots.extract(small, put_zip(small, data), tmp_path)
    assert files_under(tmp_path) == []


def test_a_zip_whose_headers_lie_is_refused_without_filling_the_disk(small: Storage, tmp_path: Path) -> None:
    data = lie_about_sizes(bomb(64 << 20), 1024)
    with pytest.raises(SubmitterError, match="not a valid zip"):
        snapshots.extract(small, put_zip(small, data), tmp_path)
    assert sum(p.stat().st_size for p in files_under(tmp_path)) == 0


def test_bytes_are_counted_as_they_are_written(tmp_path: Path) -> None:
    """Whatever a header says, extraction stops at the limit of bytes really written."""
    with zipfile.ZipFile(io.BytesIO(bomb(16 << 20))) as zf:
        with pytest.raises(SubmitterError, match="more than the 1048576 bytes allowed"):
            snapshots._extract_bounded(zf, "x", tmp_path / "x", 1 << 20)
    assert sum(p.stat().st_size for p in files_under(tmp_path)) <= 1 << 20


def test_a_zip_of_100000_members_is_refused_before_extraction(storage: Storage, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(100_000):
            zf.writestr(f"m/{i}.py", b"")
    assert storage.settings.limits.max_snapshot_members == Settings().limits.max_snapshot_members == 10_000
    with pytest.raises(SubmitterError, match="has 100000 members, more than the 10000 allowed"):
        snapshots.extract(storage, put_zip(storage, buf.getvalue()), tmp_path)
    assert list(tmp_path.rglob("*.py")) == []


def snapshot_of(storage: Storage, folder: Path, text: str) -> str:
    folder.mkdir()
    (folder / "score.py").write_text(text)
    return snapshots.upload(storage, folder)


def backdate(root: Path, reference: str) -> None:
    past = time.time() - snapshots.RECENT_S - 60
    mark = next(root.glob(f"*/.{snapshots.sha_of(reference)}{snapshots.USED}"))
    os.utime(mark, (past, past))


def extracted(root: Path) -> set[str]:
    return {p.name for p in root.glob("*/*") if not p.name.startswith(".")}


def test_old_extractions_are_evicted_never_one_in_use(storage: Storage, tmp_path: Path) -> None:
    keep_two = Storage(dataclasses.replace(storage.settings, snapshot_cache_count=2))
    refs = [snapshot_of(storage, tmp_path / f"code{i}", f"# {i}\n") for i in range(4)]
    shas = [snapshots.sha_of(r) for r in refs]
    root = tmp_path / "snapshots"
    for ref in refs[:2]:
        snapshots.extract(keep_two, ref, root)
        backdate(root, ref)
    path = snapshots.extract(keep_two, refs[2], root)
    assert extracted(root) == {shas[1], shas[2]}, "the least recently used one went"
    assert stat_mode(path / "score.py") == 0o444 and stat_mode(path) == 0o555
    backdate(root, refs[2])
    snapshots.extract(keep_two, refs[3], root, in_use=frozenset({shas[1]}))
    assert extracted(root) == {shas[1], shas[3]}, "the one in use stays though it is the oldest"
    again = snapshots.extract(keep_two, refs[0], root, in_use=frozenset({shas[1]}))
    assert (again / "score.py").read_text() == "# 0\n"
    assert shas[1] in extracted(root) and len(extracted(root)) == 3, "recently used: kept for now"


def test_extractions_beyond_the_size_limit_are_evicted(storage: Storage, tmp_path: Path) -> None:
    tiny = Storage(dataclasses.replace(storage.settings, snapshot_cache_bytes=100))
    first = snapshot_of(storage, tmp_path / "a", "x" * 80)
    second = snapshot_of(storage, tmp_path / "b", "y" * 80)
    root = tmp_path / "snapshots"
    snapshots.extract(tiny, first, root)
    backdate(root, first)
    snapshots.extract(tiny, second, root)
    assert extracted(root) == {snapshots.sha_of(second)}


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_an_extraction_a_live_process_runs_from_is_never_evicted(storage: Storage, tmp_path: Path) -> None:
    """Scoring processes hold a shared lock on their extraction (shared.scoring.child); eviction skips it
    even when nothing else protects it (not in_use, not recently used)."""
    keep_one = Storage(dataclasses.replace(storage.settings, snapshot_cache_count=1))
    old, new = (snapshot_of(storage, tmp_path / name, f"# {name}\n") for name in ("old", "new"))
    root = tmp_path / "snapshots"
    held = holds.hold(snapshots.extract(keep_one, old, root))
    assert held is not None
    try:
        backdate(root, old)
        snapshots.extract(keep_one, new, root)
        assert snapshots.sha_of(old) in extracted(root), "held: kept"
    finally:
        os.close(held)
    backdate(root, new)
    third = snapshot_of(storage, tmp_path / "third", "# third\n")
    snapshots.extract(keep_one, third, root)
    assert extracted(root) == {snapshots.sha_of(third)}, "released: evicted"
