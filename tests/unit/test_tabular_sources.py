"""Byte sources: a blob read through a ranged-download client with a read-ahead buffer."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.tabular import (BlobSource, LocalFileSource, RangeSource, SourceFile, TabularFormat,
                            infer_schema, plan_pieces, read_piece)
from shared.tabular import sources


class FakeBlobClient:
    """The two BlobClient calls BlobSource makes, over bytes in memory; records each download."""

    def __init__(self, data: bytes, blob_name: str = "c/table.csv") -> None:
        self.data, self.blob_name, self.downloads = data, blob_name, []

    def get_blob_properties(self) -> SimpleNamespace:
        return SimpleNamespace(size=len(self.data))

    def download_blob(self, offset: int, length: int) -> SimpleNamespace:
        assert 0 <= offset and offset + length <= len(self.data) and length > 0
        self.downloads.append((offset, length))
        chunk = self.data[offset:offset + length]
        return SimpleNamespace(readall=lambda: chunk)


def test_sources_satisfy_the_protocol(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert isinstance(LocalFileSource(path), RangeSource)
    assert isinstance(BlobSource(FakeBlobClient(b"abc")), RangeSource)
    assert BlobSource(FakeBlobClient(b"abc")).name == "c/table.csv"


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=0, max_size=3000),
       reads=st.lists(st.tuples(st.integers(0, 3500), st.integers(0, 900)), max_size=30),
       readahead=st.integers(1, 2000))
def test_blob_reads_return_the_right_bytes(data: bytes, reads: list[tuple[int, int]],
                                           readahead: int) -> None:
    source = BlobSource(FakeBlobClient(data), readahead=readahead)
    assert source.size == len(data)
    for offset, length in reads:
        assert source.read(offset, length) == data[offset:offset + length]


def test_a_sequential_scan_in_small_steps_makes_few_requests() -> None:
    data = bytes(range(256)) * 40_000                              # about 10 MiB
    client = FakeBlobClient(data)
    source = BlobSource(client)
    pos, out = 0, []
    while pos < len(data):
        out.append(source.read(pos, 1000))
        pos += 1000
    assert b"".join(out) == data
    assert len(client.downloads) <= 8                             # 64 KiB, 128 KiB, ... then 4 MiB
    assert max(length for _, length in client.downloads) <= sources.READAHEAD_BYTES


def test_a_one_off_read_downloads_about_what_it_asks_for() -> None:
    client = FakeBlobClient(b"x" * 10_000_000)
    source = BlobSource(client)
    source.read(5_000_000, 10)
    source.read(2_000_000, 1_000_000)
    assert [length for _, length in client.downloads] == [sources.FIRST_READ_BYTES, 1_000_000]


def test_csv_from_a_blob_equals_csv_from_a_file(tmp_path: Path) -> None:
    body = "a,b\n" + "".join(f'{i},"line {i}\nmore"\n' for i in range(3000))
    path = tmp_path / "t.csv"
    path.write_text(body)
    fmt = TabularFormat(support_multi_line=True)
    results = []
    for source in (LocalFileSource(path, name="c/table.csv"), BlobSource(FakeBlobClient(body.encode()))):
        schema = infer_schema(source, fmt)
        pieces = list(plan_pieces(source, fmt, 4096))
        results.append((pieces, pd.concat([read_piece(source, fmt, p, schema) for p in pieces])))
    assert results[0][0] == results[1][0]
    pd.testing.assert_frame_equal(results[0][1], results[1][1])


def test_parquet_from_a_blob(tmp_path: Path) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": list(range(50_000))}), buf, row_group_size=50_000)
    client = FakeBlobClient(buf.getvalue(), blob_name="c/t.parquet")
    source, fmt = BlobSource(client), TabularFormat(kind="parquet")
    schema = infer_schema(source, fmt)
    pieces = list(plan_pieces(source, fmt, 100_000))
    assert len(pieces) > 3 and all(p.row_groups == (0,) for p in pieces)
    frame = pd.concat([read_piece(source, fmt, p, schema) for p in pieces], ignore_index=True)
    assert frame["x"].tolist() == list(range(50_000))


def test_source_file_is_a_seekable_binary_file() -> None:
    f = SourceFile(BlobSource(FakeBlobClient(b"0123456789")))
    assert f.read(3) == b"012" and f.tell() == 3
    f.seek(-2, io.SEEK_END)
    assert f.read() == b"89"
    f.seek(1)
    buf = bytearray(4)
    assert f.readinto(buf) == 4 and bytes(buf) == b"1234"
