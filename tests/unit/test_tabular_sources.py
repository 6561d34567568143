"""Byte sources: a blob read by ranged downloads through a read-ahead buffer, ranges prefetched in
one request, and how many requests a piece costs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.scoring.tabular import (
    BlobSource,
    LocalFileSource,
    RangeSource,
    SourceFile,
    TabularFormat,
    infer_schema,
    plan_pieces,
    read_piece,
    sources,
)


class FakeBlob:
    """A blob in memory read like ``BlobReader.read_range``; records each ranged download."""

    def __init__(self, data: bytes) -> None:
        self.data, self.downloads = data, []

    def fetch(self, offset: int, length: int) -> tuple[bytes, int]:
        assert offset >= 0 and length > 0
        self.downloads.append((offset, length))
        return self.data[offset:offset + length], len(self.data)


def blob_source(data: bytes, name: str = "c/table.csv", **kwargs: Any) -> tuple[BlobSource, FakeBlob]:
    blob = FakeBlob(data)
    return BlobSource(blob.fetch, name=name, **kwargs), blob


def test_sources_satisfy_the_protocol(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert isinstance(LocalFileSource(path), RangeSource)
    assert isinstance(blob_source(b"abc")[0], RangeSource)
    assert blob_source(b"abc")[0].name == "c/table.csv"


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=0, max_size=3000),
       reads=st.lists(st.tuples(st.integers(0, 3500), st.integers(0, 900)), max_size=30),
       readahead=st.integers(1, 2000))
def test_blob_reads_return_the_right_bytes(data: bytes, reads: list[tuple[int, int]],
                                           readahead: int) -> None:
    source, _ = blob_source(data, readahead=readahead)
    for offset, length in reads:
        assert source.read(offset, length) == data[offset:offset + length]
    assert source.size == len(data)


def test_a_sequential_scan_in_small_steps_makes_few_requests() -> None:
    data = bytes(range(256)) * 40_000                              # about 10 MiB
    source, client = blob_source(data)
    pos, out = 0, []
    while pos < len(data):
        out.append(source.read(pos, 1000))
        pos += 1000
    assert b"".join(out) == data
    assert len(client.downloads) <= 8                             # 64 KiB, 128 KiB, ... then 4 MiB
    assert max(length for _, length in client.downloads) <= sources.READAHEAD_BYTES


def test_a_one_off_read_downloads_about_what_it_asks_for() -> None:
    source, client = blob_source(b"x" * 10_000_000)
    source.read(5_000_000, 10)
    source.read(2_000_000, 1_000_000)
    assert [length for _, length in client.downloads] == [sources.FIRST_READ_BYTES, 1_000_000]


def test_csv_from_a_blob_equals_csv_from_a_file(tmp_path: Path) -> None:
    body = "a,b\n" + "".join(f'{i},"line {i}\nmore"\n' for i in range(3000))
    path = tmp_path / "t.csv"
    path.write_text(body)
    fmt = TabularFormat(support_multi_line=True)
    results = []
    for source in (LocalFileSource(path, name="c/table.csv"), blob_source(body.encode())[0]):
        schema = infer_schema(source, fmt)
        pieces = list(plan_pieces(source, fmt, 4096))
        results.append((pieces, pd.concat([read_piece(source, fmt, p, schema) for p in pieces])))
    assert results[0][0] == results[1][0]
    pd.testing.assert_frame_equal(results[0][1], results[1][1])


def test_parquet_from_a_blob(tmp_path: Path) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(50_000))}), buf, row_group_size=50_000)
    source, _ = blob_source(buf.getvalue(), name="c/t.parquet")
    fmt = TabularFormat(kind="parquet")
    schema = infer_schema(source, fmt)
    pieces = list(plan_pieces(source, fmt, 100_000))
    assert len(pieces) > 3 and all(p.row_groups == (0,) for p in pieces)
    frame = pd.concat([read_piece(source, fmt, p, schema) for p in pieces], ignore_index=True)
    assert frame["x"].tolist() == list(range(50_000))


def test_source_file_is_a_seekable_binary_file() -> None:
    f = SourceFile(blob_source(b"0123456789")[0])
    assert f.read(3) == b"012" and f.tell() == 3
    f.seek(-2, io.SEEK_END)
    assert f.read() == b"89"
    f.seek(1)
    buf = bytearray(4)
    assert f.readinto(buf) == 4 and bytes(buf) == b"1234"


# -- requests per piece ---------------------------------------------------------------------------
def test_a_read_learns_the_size_so_it_is_never_asked_for() -> None:
    source, blob = blob_source(bytes(1000))
    assert source.read(990, 50) == bytes(10)
    assert source.size == 1000
    assert source.read(1000, 5) == b"" and source.read(5000, 5) == b""
    assert len(blob.downloads) == 1


def test_size_before_any_read_fetches_the_start_so_a_small_file_is_read_once() -> None:
    data = bytes(range(256)) * 100
    source, blob = blob_source(data)
    assert source.size == len(data)
    assert blob.downloads == [(0, sources.FIRST_READ_BYTES)]
    assert source.read(len(data) - 300, 300) == data[-300:] and source.read(7, 3) == data[7:10]
    assert len(blob.downloads) == 1


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=2000),
       cuts=st.lists(st.integers(0, 2100), min_size=2, max_size=8, unique=True),
       reads=st.lists(st.tuples(st.integers(0, 2100), st.integers(0, 500)), max_size=20))
def test_prefetched_ranges_serve_their_reads_and_the_rest_goes_to_the_source(
        data: bytes, cuts: list[int], reads: list[tuple[int, int]]) -> None:
    cuts.sort()
    held = list(zip(cuts[::2], cuts[1::2], strict=False))   # sorted, not overlapping
    inner, blob = blob_source(data, readahead=1)
    prefetched = sources.PrefetchedSource(inner)
    for lo, hi in held:
        prefetched.prefetch(lo, hi - lo)
    fetched = len(blob.downloads)
    assert fetched <= len(held) + 1                    # one read per range (+1: the size)
    for offset, length in reads:
        assert prefetched.read(offset, length) == data[offset:offset + length]
        inside = any(lo <= offset and offset + length <= hi for lo, hi in held)
        if inside:
            assert len(blob.downloads) == fetched      # served from memory
        fetched = len(blob.downloads)


def test_prefetched_ranges_must_not_overlap() -> None:
    prefetched = sources.PrefetchedSource(blob_source(bytes(100))[0])
    prefetched.prefetch(10, 20)
    prefetched.prefetch(30, 10)
    for offset, length in ((0, 11), (29, 5), (15, 2), (5, 50)):
        with pytest.raises(ValueError, match="overlap"):
            prefetched.prefetch(offset, length)


def _pieces_and_requests(data: bytes, name: str, fmt: TabularFormat, target: int
                         ) -> tuple[pd.DataFrame, list[list[tuple[int, int]]]]:
    """Every piece read through its own BlobSource (as the scoring process does); the frame and
    each piece's downloads."""
    planner, _ = blob_source(data, name=name)
    schema = infer_schema(planner, fmt)
    frames, downloads = [], []
    for piece in plan_pieces(planner, fmt, target):
        source, blob = blob_source(data, name=name)
        frames.append(read_piece(source, fmt, piece, schema))
        downloads.append(blob.downloads)
    return pd.concat(frames, ignore_index=True), downloads


def test_a_csv_piece_is_one_request_and_its_header_another() -> None:
    body = "b,a\n" + "".join(f"{i},{i * 2}\n" for i in range(50_000))
    frame, downloads = _pieces_and_requests(body.encode(), "c/t.csv", TabularFormat(), 100_000)
    assert frame["a"].tolist() == [i * 2 for i in range(50_000)]
    assert len(downloads) > 3
    assert len(downloads[0]) == 1                      # the header is right before: one read
    assert all(len(d) == 2 for d in downloads[1:])     # the piece, then its file's header


def _parquet(table: pa.Table, **options: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **options)
    return buf.getvalue()


def _numbers(rows: int, columns: int = 8) -> pa.Table:
    rng = np.random.default_rng(rows)
    return pa.table({f"c{k}": rng.normal(size=rows) for k in range(columns)} | {"id": np.arange(rows)})


@pytest.mark.parametrize("group_rows", [1_000, 50_000])     # whole row groups / row ranges of one
def test_a_parquet_piece_is_its_footer_and_one_request_for_its_column_chunks(group_rows: int) -> None:
    table = _numbers(50_000)
    data = _parquet(table, row_group_size=group_rows)
    frame, downloads = _pieces_and_requests(data, "c/t.parquet", TabularFormat(kind="parquet"),
                                            200_000)
    assert frame["id"].tolist() == list(range(50_000))
    assert len(downloads) > 3
    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    footer = meta.serialized_size + 8
    for piece in downloads:
        # the size (the first 64 KiB), the footer (the last 64 KiB), then the chunks' span
        assert len(piece) == 3, piece
        (size_at, _), (footer_at, _), (span_at, span) = piece
        assert size_at == 0 and footer_at == len(data) - max(footer, sources.FIRST_READ_BYTES)
        assert span <= max(sources.FIRST_READ_BYTES,
                           max(_group_span(meta, g) for g in range(meta.num_row_groups)) * 3)


def _group_span(meta: pq.FileMetaData, g: int) -> int:
    group = meta.row_group(g)
    return sum(group.column(c).total_compressed_size for c in range(group.num_columns))


def test_a_row_range_of_a_group_with_big_chunks_is_streamed_not_fetched_whole() -> None:
    """A column chunk bigger than the reader's stream buffer may be needed only in part: the
    first row range of such a group downloads much less than the group."""
    table = _numbers(400_000, columns=2)                # chunks of ~3.2 MB
    data = _parquet(table, row_group_size=400_000, compression="none", use_dictionary=False)
    fmt = TabularFormat(kind="parquet")
    planner, _ = blob_source(data, name="c/t.parquet")
    schema = infer_schema(planner, fmt)
    pieces = list(plan_pieces(planner, fmt, 1_000_000))
    assert len(pieces) > 5 and all(p.row_groups == (0,) for p in pieces)
    source, blob = blob_source(data, name="c/t.parquet")
    frame = read_piece(source, fmt, pieces[0], schema)
    assert frame["id"].tolist() == list(range(pieces[0].row_count))
    assert sum(length for _, length in blob.downloads) < len(data) / 2


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 4000), groups=st.integers(1, 40), columns=st.integers(1, 5),
       target=st.integers(200, 200_000), dictionary=st.booleans())
def test_parquet_pieces_read_from_a_blob_hold_every_row_once_in_three_requests_each(
        rows: int, groups: int, columns: int, target: int, dictionary: bool) -> None:
    table = _numbers(rows, columns)
    table = table.append_column("kind", pa.array([f"k{i % 5}" for i in range(rows)]))
    data = _parquet(table, row_group_size=max(1, -(-rows // groups)), use_dictionary=dictionary)
    frame, downloads = _pieces_and_requests(data, "c/t.parquet", TabularFormat(kind="parquet"),
                                            target)
    assert frame["id"].tolist() == list(range(rows))
    assert frame["kind"].tolist() == table["kind"].to_pylist()
    assert all(len(d) <= 3 for d in downloads)
