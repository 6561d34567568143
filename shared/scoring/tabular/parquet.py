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
of the group to decode, and a group split n ways costs about n/2 times the group in total.

Planning also records in each piece the byte ranges reading it needs (the span below and the
file's tail with the footer, :attr:`Piece.reads`), so the worker reads them ahead of the scoring
process without parsing the footer itself.

Requests: pyarrow reads a piece column chunk by column chunk, in steps of
:data:`STREAM_BUFFER_BYTES`, so over a blob each chunk would be a request (tens per piece). Instead
the footer is read (with the file's size, before it: two requests, one for a file of at most
:data:`~.sources.FIRST_READ_BYTES`), then the byte span of every column chunk the piece reads is
fetched in one request (:func:`_chunk_span`) and pyarrow reads from memory. The span is the piece's
own compressed bytes when it is whole row groups; a row range needs every chunk of its group only
from the first page to the range's last, but pyarrow reads a chunk of at most
:data:`STREAM_BUFFER_BYTES` whole anyway, so the group's span is fetched only if all its chunks
are that small, and a row range of a group with bigger chunks is streamed as before. Either way
memory stays about what the streaming reader would hold.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shared.scoring.tabular.formats import Piece, TabularDataError, TabularFormat
from shared.scoring.tabular.schema import Schema, from_inferred, to_frame
from shared.scoring.tabular.sources import PrefetchedSource, RangesInMemory, RangeSource, SourceFile

BATCH_ROWS = 64 * 1024            # rows decoded at a time when reading a piece
STREAM_BUFFER_BYTES = 1 << 20     # column chunks are read in steps of this, not whole
# pyarrow reads up to this many bytes past a column chunk of a file written by parquet-mr <= 1.2.8,
# whose sizes leave out the dictionary page's header (PARQUET-816); the span covers them too.
CHUNK_PAD_BYTES = 100


def plan(source: RangeSource, fmt: TabularFormat, target_bytes: int) -> Iterator[Piece]:
    if target_bytes < 1:
        raise ValueError(f"target_bytes must be at least 1, not {target_bytes}")
    meta = _open(source).metadata
    file_size = source.size
    tail = _tail(file_size, meta.serialized_size)

    def known(piece: Piece) -> Piece:     # what reading it needs, for the worker to read ahead
        span = _chunk_span(meta, piece)
        reads = ((span[0], span[1] - span[0]), tail) if span is not None else (tail,)
        return dataclasses.replace(piece, reads=reads, file_size=file_size)

    for piece in _plan(meta, source.name, target_bytes):
        yield known(piece)


def _plan(meta: pq.FileMetaData, name: str, target_bytes: int) -> Iterator[Piece]:
    index = 0
    groups: list[int] = []
    rows = size = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        if group.num_rows == 0:
            continue
        group_size = _group_bytes(group)
        if groups and size + group_size > target_bytes:
            yield Piece(name, "parquet", index, row_groups=tuple(groups), row_count=rows,
                        est_bytes=size)
            index, groups, rows, size = index + 1, [], 0, 0
        if group_size > target_bytes and group.num_rows > 1:
            per = math.ceil(group.num_rows / min(group.num_rows, math.ceil(group_size / target_bytes)))
            for offset in range(0, group.num_rows, per):
                count = min(per, group.num_rows - offset)
                yield Piece(name, "parquet", index, row_groups=(g,), row_offset=offset,
                            row_count=count, est_bytes=group_size * count // group.num_rows)
                index += 1
            continue
        groups.append(g)
        rows += group.num_rows
        size += group_size
    if groups:
        yield Piece(name, "parquet", index, row_groups=tuple(groups), row_count=rows,
                    est_bytes=size)


def infer(source: RangeSource, fmt: TabularFormat) -> Schema:
    return from_inferred(_open(source).schema_arrow, fmt.declared_types, source.name, from_file=True)


def read(source: RangeSource, fmt: TabularFormat, piece: Piece, schema: Schema) -> pd.DataFrame:
    where = piece.describe()
    prefetched = PrefetchedSource(source)
    parquet = _open(prefetched)
    file_schema = from_inferred(parquet.schema_arrow, {}, source.name, from_file=True)
    missing = [n for n in schema.names if n not in file_schema.names]
    extra = [n for n in file_schema.names if n not in schema.names]
    if missing or extra:
        raise TabularDataError(
            f"{where}: the file's columns differ from the input's (inferred from its first file): "
            f"missing {missing}, not expected {extra}; all files need the same columns")
    span = _chunk_span(parquet.metadata, piece)
    if span is not None:
        prefetched.prefetch(span[0], span[1] - span[0])
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


FOOTER_READ_BYTES = 64 * 1024     # what pyarrow reads of a file's end first (Arrow's default)
MAX_FOOTER_BYTES = 64 << 20        # a footer claimed larger than this is not read ahead


def needed(source: RangeSource, piece: Piece) -> list[tuple[int, int]]:
    """The byte ranges ``(offset, length)`` :func:`read` reads of ``source`` for ``piece``: the
    file's tail as pyarrow reads it (its last 64 KiB, or the whole footer if that is longer) and
    the span of the piece's column chunks. Planning puts them in the piece (``Piece.reads``); for
    a piece without them they cost a read of the source's tail besides learning its size (one more
    for a footer over 64 KiB). Empty if the file's end does not look like a Parquet footer."""
    if piece.reads:
        return list(piece.reads)
    size = source.size
    tail_start = max(0, size - FOOTER_READ_BYTES)
    tail = source.read(tail_start, size - tail_start)
    if len(tail) < 12 or tail[-4:] != b"PAR1":
        return []
    length = int.from_bytes(tail[-8:-4], "little")
    start = size - 8 - length
    if length > MAX_FOOTER_BYTES or start < 4:
        return []
    if start < tail_start:
        tail = source.read(start, tail_start - start) + tail
        tail_start = start
    meta = _open(RangesInMemory(source.name, size, {tail_start: tail})).metadata
    span = _chunk_span(meta, piece)
    footer = (tail_start, size - tail_start)
    return [footer] if span is None else [(span[0], span[1] - span[0]), footer]


def _tail(size: int, footer_bytes: int) -> tuple[int, int]:
    """The end of a file of ``size`` bytes that pyarrow reads to open it: its last 64 KiB, or the
    footer (``footer_bytes``, its length and magic) if that is longer."""
    start = max(0, size - max(FOOTER_READ_BYTES, footer_bytes + 8))
    return start, size - start


def _open(source: RangeSource) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(SourceFile(source), buffer_size=STREAM_BUFFER_BYTES, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise TabularDataError(f"{source.name}: not a readable Parquet file: {exc}") from None


def _chunk_span(meta: pq.FileMetaData, piece: Piece) -> tuple[int, int] | None:
    """The byte range ``[start, end)`` that holds every column chunk of ``piece``'s row groups, or
    None if the piece is better streamed: a row range of a group with a chunk bigger than
    :data:`STREAM_BUFFER_BYTES` (of which only the first part may be needed), or row groups the
    file does not have (the reader reports it).

    The piece reads every column (:func:`read` checks the file has exactly the input's), and the
    chunks of consecutive row groups are written one after the other, so the span holds little
    else. A chunk starts at its dictionary page if it has one, else at its first data page.
    """
    groups = [g for g in piece.row_groups if 0 <= g < meta.num_row_groups]
    if not groups or len(groups) != len(piece.row_groups):
        return None
    whole = piece.row_offset == 0 and \
        piece.row_count == sum(meta.row_group(g).num_rows for g in groups)
    start, end = None, 0
    for g in groups:
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            first = chunk.data_page_offset
            if chunk.dictionary_page_offset:   # None without one; 0 is a writer's "unset"
                first = min(first, chunk.dictionary_page_offset)
            length = chunk.total_compressed_size
            if not whole and length > STREAM_BUFFER_BYTES:
                return None
            start = first if start is None else min(start, first)
            end = max(end, first + length)
    if start is None:
        return None
    return start, end + CHUNK_PAD_BYTES


def _group_bytes(group: pq.RowGroupMetaData) -> int:
    size = int(group.total_byte_size)
    if size <= 0:
        size = sum(int(group.column(i).total_compressed_size) for i in range(group.num_columns))
    return max(1, size)
