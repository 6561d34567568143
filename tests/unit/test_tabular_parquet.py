"""Splitting Parquet files by row groups, and inside a row group bigger than the target."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.scoring.tabular import (
    LocalFileSource,
    Piece,
    TabularDataError,
    TabularFormat,
    infer_schema,
    plan_pieces,
    read_piece,
)

FMT = TabularFormat(kind="parquet")
DTYPES = {"id": "Int64", "small": "Int32", "gappy": "Int64", "name": "object", "when": "datetime64[us, UTC]",
          "flag": "boolean", "score": "float64", "kind": "object", "day": "object"}


def _table(rows: int) -> pa.Table:
    ids = np.arange(rows)
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "small": pa.array(ids % 1000, pa.int32()),
        "gappy": pa.array(ids, pa.int64(), mask=(ids > rows * 0.9) & (ids % 7 == 0)),
        "name": pa.array([None if i % 11 == 0 else f"n{i}" for i in ids.tolist()], pa.string()),
        "when": pa.array(ids * 1_000_000, pa.timestamp("us", "UTC")),
        "flag": pa.array([None if i % 13 == 0 else bool(i % 2) for i in ids.tolist()], pa.bool_()),
        "score": pa.array(ids / 7),
        "kind": pa.array(np.array(["a", "b", "c"])[ids % 3], pa.string()).dictionary_encode(),
        "day": pa.array(ids % 365, pa.int32()).cast(pa.date32()),
    })


def _split(path: Path, target: int) -> tuple[list[Piece], list[pd.DataFrame]]:
    source = LocalFileSource(path, name=path.name)
    schema = infer_schema(source, FMT)
    assert schema.dtypes == DTYPES
    pieces = list(plan_pieces(source, FMT, target))
    frames = [read_piece(source, FMT, p, schema) for p in pieces]
    for frame in frames:        # the same dtypes whether a piece has gaps or not
        assert frame.dtypes.astype(str).to_dict() == DTYPES
    return pieces, frames


def _expected(path: Path) -> pd.DataFrame:
    whole = pq.read_table(path).to_pandas()
    return whole.astype(DTYPES)


@pytest.mark.parametrize("target", [9_000, 40_000, 150_000, 10**9])
def test_row_groups_are_packed_up_to_the_target(tmp_path: Path, target: int) -> None:
    path = tmp_path / "multi.parquet"
    pq.write_table(_table(10_000), path, row_group_size=1000)
    pieces, frames = _split(path, target)
    meta = pq.ParquetFile(path).metadata
    sizes = [meta.row_group(g).total_byte_size for g in range(meta.num_row_groups)]
    if target == 10**9:
        assert len(pieces) == 1 and pieces[0].row_groups == tuple(range(10))
    for p in pieces:
        assert p.est_bytes <= target or p.row_count == 1
        if len(p.row_groups) > 1:
            assert p.row_offset == 0 and p.est_bytes == sum(sizes[g] for g in p.row_groups)
    covered = [(g, p.row_offset, p.row_count) for p in pieces for g in p.row_groups]
    assert sorted({g for g, _, _ in covered}) == list(range(10))
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), _expected(path))


def test_a_single_row_group_is_split_into_row_ranges(tmp_path: Path) -> None:
    path = tmp_path / "one.parquet"
    pq.write_table(_table(100_000), path, row_group_size=100_000)
    assert pq.ParquetFile(path).metadata.num_row_groups == 1
    size = pq.ParquetFile(path).metadata.row_group(0).total_byte_size
    pieces, frames = _split(path, size // 7)
    assert len(pieces) >= 7 and all(p.row_groups == (0,) for p in pieces)
    offsets = [sum(q.row_count for q in pieces[:i]) for i in range(len(pieces))]
    assert [p.row_offset for p in pieces] == offsets
    assert sum(p.row_count for p in pieces) == 100_000
    assert not frames[0]["gappy"].isna().any() and frames[-1]["gappy"].isna().any()
    pd.testing.assert_frame_equal(pd.concat(frames, ignore_index=True), _expected(path))


def test_empty_file_has_no_pieces(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    pq.write_table(_table(0), path)
    source = LocalFileSource(path, name=path.name)
    assert list(plan_pieces(source, FMT, 100)) == []
    assert infer_schema(source, FMT).dtypes == DTYPES


def test_pandas_index_is_dropped_and_other_files_are_cast(tmp_path: Path) -> None:
    first = tmp_path / "a.parquet"
    pd.DataFrame({"x": [1, 2]}, index=[10, 11]).to_parquet(first)
    schema = infer_schema(LocalFileSource(first, name="a.parquet"), FMT)
    assert schema.dtypes == {"x": "Int64"}
    second = tmp_path / "b.parquet"
    pq.write_table(pa.table({"x": pa.array([3, None], pa.int32())}), second)
    source = LocalFileSource(second, name="b.parquet")
    frame = read_piece(source, FMT, next(plan_pieces(source, FMT, 100)), schema)
    assert frame["x"].dtype == "Int64" and frame["x"].isna().tolist() == [False, True]
    pq.write_table(pa.table({"y": [1]}), second)
    source = LocalFileSource(second, name="b.parquet")
    with pytest.raises(TabularDataError, match=r"b\.parquet piece 0 .*missing \['x'\]"):
        read_piece(source, FMT, next(plan_pieces(source, FMT, 100)), schema)


def test_not_a_parquet_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(TabularDataError, match="bad.parquet"):
        list(plan_pieces(LocalFileSource(path, name="bad.parquet"), FMT, 100))
