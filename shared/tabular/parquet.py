"""Parquet files: pieces by row group, and row ranges inside a row group bigger than the target.

Planning reads only the footer. Consecutive row groups are packed into one piece while their
uncompressed sizes (``RowGroupMetaData.total_byte_size``, the closest to the records' size in
memory) add up to at most the target; a row group bigger than the target is cut into about
``size / target`` row ranges of equal row counts, so a file written as a single row group still
yields many mini-batches.

Reading a row-range piece streams its row group from the group's first row (``iter_batches``
with a bounded read buffer) and stops after the range's last row: memory is the piece plus one
batch, but the rows before the range are still read and decoded, because pyarrow offers no way to
start at a row (the page index is not used). So the k-th of n ranges of one group costs about k/n
of the group to read, and a group split n ways costs about n/2 times the group in total.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .formats import Piece, TabularDataError, TabularFormat
from .schema import Schema, from_inferred, to_frame
from .sources import RangeSource, SourceFile

BATCH_ROWS = 64 * 1024            # rows decoded at a time when reading a piece
STREAM_BUFFER_BYTES = 1 << 20     # column chunks are read in steps of this, not whole


def plan(source: RangeSource, fmt: TabularFormat, target_bytes: int) -> Iterator[Piece]:
    if target_bytes < 1:
        raise ValueError(f"target_bytes must be at least 1, not {target_bytes}")
    meta = _open(source).metadata
    index = 0
    groups: list[int] = []
    rows = size = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if group.num_rows == 0:
            continue
        group_size = _group_bytes(group)
        if groups and size + group_size > target_bytes:
            yield Piece(source.name, "parquet", index, row_groups=tuple(groups), row_count=rows,
                        est_bytes=size)
            index, groups, rows, size = index + 1, [], 0, 0
        if group_size > target_bytes and group.num_rows > 1:
            per = math.ceil(group.num_rows / min(group.num_rows, math.ceil(group_size / target_bytes)))
            for offset in range(0, group.num_rows, per):
                count = min(per, group.num_rows - offset)
                yield Piece(source.name, "parquet", index, row_groups=(g,), row_offset=offset,
                            row_count=count, est_bytes=group_size * count // group.num_rows)
                index += 1
            continue
        groups.append(g)
        rows += group.num_rows
        size += group_size
    if groups:
        yield Piece(source.name, "parquet", index, row_groups=tuple(groups), row_count=rows,
                    est_bytes=size)


def infer(source: RangeSource, fmt: TabularFormat) -> Schema:
    return from_inferred(_open(source).schema_arrow, fmt.declared_types, source.name, from_file=True)


def read(source: RangeSource, fmt: TabularFormat, piece: Piece, schema: Schema) -> pd.DataFrame:
    where = piece.describe()
    parquet = _open(source)
    file_schema = from_inferred(parquet.schema_arrow, {}, source.name, from_file=True)
    missing = [n for n in schema.names if n not in file_schema.names]
    extra = [n for n in file_schema.names if n not in schema.names]
    if missing or extra:
        raise TabularDataError(
            f"{where}: the file's columns differ from the input's (inferred from its first file): "
            f"missing {missing}, not expected {extra}; all files need the same columns")
    batches = []
    skip, need = piece.row_offset, piece.row_count
    try:
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=list(piece.row_groups),
                                          columns=schema.names, use_pandas_metadata=False):
            if skip >= batch.num_rows:
                skip -= batch.num_rows
                continue
            batch = batch.slice(skip, need)
            skip, need = 0, need - batch.num_rows
            batches.append(batch)
            if need == 0:
                break
    except (pa.ArrowInvalid, OSError) as exc:
        raise TabularDataError(f"{where}: {exc}") from None
    if need:
        raise TabularDataError(f"{where}: {need} rows are missing; did the file change since it "
                               f"was planned?")
    fields = [parquet.schema_arrow.field(n) for n in schema.names]
    table = pa.Table.from_batches(batches) if batches else pa.schema(fields).empty_table()
    return to_frame(table, schema, where)


def _open(source: RangeSource) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(SourceFile(source), buffer_size=STREAM_BUFFER_BYTES, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TabularDataError(f"{source.name}: not a readable Parquet file: {exc}") from None


def _group_bytes(group: pq.RowGroupMetaData) -> int:
    size = int(group.total_byte_size)
    if size <= 0:
        size = sum(int(group.column(i).total_compressed_size) for i in range(group.num_columns))
    return max(1, size)
