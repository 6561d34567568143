"""Byte ranges read ahead for a scoring process: the ranges a piece needs, a local sparse file that
serves them, and what happens when a read falls outside them."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.scoring.tabular import (
    BlobSource,
    HeldSource,
    TabularFormat,
    infer_schema,
    needed_ranges,
    plan_pieces,
    read_piece,
)


class FakeBlob:
    """A blob in memory read like ``BlobReader.read_range``; records each ranged download."""

    def __init__(self, data: bytes) -> None:
        self.data, self.downloads = data, []

    def fetch(self, offset: int, length: int) -> tuple[bytes, int]:
        self.downloads.append((offset, length))
        return self.data[offset:offset + length], len(self.data)


def hold(data: bytes, name: str, ranges: list[tuple[int, int]], path: Path) -> HeldSource:
    """What the worker's read-ahead leaves: each range at its own offset of a sparse file."""
    with open(path, "wb") as fh:
        for offset, length in ranges:
            fh.seek(offset)
            fh.write(data[offset:offset + length])
    return HeldSource(path, ranges, len(data), BlobSource(FakeBlob(data).fetch, name=name))


def read_every_piece(data: bytes, name: str, fmt: TabularFormat, target: int, tmp_path: Path
                     ) -> tuple[pd.DataFrame, list[int], list[int]]:
    """Every piece read from the ranges :func:`needed_ranges` names, as a scoring process would;
    the frame, the planner-side downloads per piece (finding the ranges) and the reads that fell
    back to the blob per piece."""
    planner = BlobSource(FakeBlob(data).fetch, name=name)
    schema = infer_schema(planner, fmt)
    frames, finding, fallbacks = [], [], []
    for i, piece in enumerate(plan_pieces(planner, fmt, target)):
        blob = FakeBlob(data)
        ranges = needed_ranges(BlobSource(blob.fetch, name=name), fmt, piece)
        finding.append(len(blob.downloads))
        held = hold(data, name, ranges, tmp_path / f"piece-{i}")
        frames.append(read_piece(held, fmt, piece, schema))
        fallbacks.append(held.fallback_reads)
    return pd.concat(frames, ignore_index=True), finding, fallbacks


def test_a_csv_piece_reads_nothing_but_its_held_header_and_bytes(tmp_path: Path) -> None:
    body = ("b,a\n" + "".join(f"{i},{i * 2}\n" for i in range(50_000))).encode()
    frame, finding, fallbacks = read_every_piece(body, "c/t.csv", TabularFormat(), 100_000, tmp_path)
    assert frame["a"].tolist() == [i * 2 for i in range(50_000)]
    assert len(fallbacks) > 3
    assert finding == [0] * len(finding)        # the piece says its ranges: no read to find them
    assert fallbacks == [0] * len(fallbacks)


def _numbers(rows: int, columns: int = 8) -> pa.Table:
    rng = np.random.default_rng(rows)
    return pa.table({f"c{k}": rng.normal(size=rows) for k in range(columns)} | {"id": np.arange(rows)})


@pytest.mark.parametrize("options", [{"row_group_size": 1_000}, {"row_group_size": 50_000},
                                     {"row_group_size": 5_000, "use_dictionary": False}])
def test_a_parquet_piece_reads_nothing_but_its_held_footer_and_chunks(
        tmp_path: Path, options: dict[str, Any]) -> None:
    buf = io.BytesIO()
    pq.write_table(_numbers(50_000), buf, **options)
    data = buf.getvalue()
    frame, finding, fallbacks = read_every_piece(data, "c/t.parquet", TabularFormat(kind="parquet"),
                                                 200_000, tmp_path)
    assert frame["id"].tolist() == list(range(50_000))
    assert frame["c3"].tolist() == _numbers(50_000)["c3"].to_pylist()
    assert len(fallbacks) > 3
    assert finding == [0] * len(finding)         # planning put them in the piece
    assert fallbacks == [0] * len(fallbacks)


def test_a_parquet_piece_planned_without_its_reads_finds_the_same_ranges(tmp_path: Path) -> None:
    """A piece planned before pieces carried their reads: the ranges come from the file's tail."""
    buf = io.BytesIO()
    pq.write_table(_numbers(50_000, columns=40), buf, row_group_size=2_000)   # a footer over 64 KiB
    data = buf.getvalue()
    fmt = TabularFormat(kind="parquet")
    for piece in plan_pieces(BlobSource(FakeBlob(data).fetch, name="c/t.parquet"), fmt, 300_000):
        bare = dataclasses.replace(piece, reads=(), file_size=0)
        blob = FakeBlob(data)
        planned = needed_ranges(BlobSource(FakeBlob(b"").fetch, name="c/t.parquet"), fmt, piece)
        assert needed_ranges(BlobSource(blob.fetch, name="c/t.parquet"), fmt, bare) == planned
        assert len(blob.downloads) == 3              # its size, the last 64 KiB, the rest of the footer


def test_reads_outside_the_held_ranges_go_to_the_blob(tmp_path: Path) -> None:
    data = bytes(range(256)) * 64
    held = hold(data, "c/b.bin", [(100, 50), (1000, 10)], tmp_path / "held")
    assert held.read(100, 50) == data[100:150]
    assert held.read(120, 10) == data[120:130]
    assert held.read(1005, 5) == data[1005:1010]
    assert held.fallback_reads == 0
    assert held.read(90, 20) == data[90:110]          # starts before a range
    assert held.read(140, 20) == data[140:160]        # runs past its end
    assert held.read(5000, 100) == data[5000:5100]    # nowhere near one
    assert held.fallback_reads == 3
    assert held.read(len(data), 10) == b"" and held.size == len(data)


def test_a_held_file_cut_short_is_read_from_the_blob(tmp_path: Path) -> None:
    """A read-ahead that wrote less than it said (a full disk) costs a request, never data."""
    data = b"x" * 100 + b"y" * 100
    path = tmp_path / "short"
    path.write_bytes(data[:150])
    held = HeldSource(path, [(0, 200)], len(data), BlobSource(FakeBlob(data).fetch, name="c/s.bin"))
    assert held.read(100, 100) == data[100:200]
    assert held.fallback_reads == 1


def test_ranges_that_touch_are_merged() -> None:
    body = b"a,b\n1,2\n3,4\n"
    blob = FakeBlob(body)
    [first] = list(plan_pieces(BlobSource(blob.fetch, name="c/t.csv"), TabularFormat(), 1 << 20))
    assert needed_ranges(BlobSource(blob.fetch, name="c/t.csv"), TabularFormat(), first) == [(0, len(body))]


def test_a_file_that_is_not_parquet_needs_no_ranges_held() -> None:
    """Its piece is then read from the blob, which reports the damage as before."""
    buf = io.BytesIO()
    pq.write_table(_numbers(100), buf)
    good = buf.getvalue()
    [piece] = list(plan_pieces(BlobSource(FakeBlob(good).fetch, name="c/t.parquet"),
                               TabularFormat(kind="parquet"), 1 << 20))
    broken = good[:-4] + b"XXXX"
    bare = dataclasses.replace(piece, reads=(), file_size=0)     # planned without its reads
    assert needed_ranges(BlobSource(FakeBlob(broken).fetch, name="c/t.parquet"),
                         TabularFormat(kind="parquet"), bare) == []
