"""The three operations on one tabular file: split it, infer its schema, read a piece of it.

They dispatch on ``TabularFormat.kind`` to :mod:`.text` (delimited, JSON Lines) or :mod:`.parquet`.
Nothing here touches a queue or the ledger: the planner stores each :class:`Piece` (``to_dict``) in
a mini-batch row and the schema (``Schema.to_dict``) once per input, and a worker hands
``read_piece(...)`` to ``run(mini_batch)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from shared.scoring.tabular import parquet, text
from shared.scoring.tabular.formats import Piece, TabularDataError, TabularFormat
from shared.scoring.tabular.schema import Schema
from shared.scoring.tabular.sources import RangeSource


def plan_pieces(source: RangeSource, fmt: TabularFormat, target_bytes: int) -> Iterator[Piece]:
    """Split one file into pieces of at most about ``target_bytes`` each, in file order.

    Pieces are aligned to records and together hold every record exactly once; one is bigger than
    the target only when a single record (or a single Parquet row) is. An empty file, or one with
    only a header, has no pieces. Lazy: a long file is planned as the iterator is consumed.
    """
    if isinstance(target_bytes, bool) or not isinstance(target_bytes, int) or target_bytes < 1:
        raise ValueError(f"target_bytes must be a whole number of bytes >= 1, not {target_bytes!r}")
    if fmt.kind == "parquet":
        return parquet.plan(source, fmt, target_bytes)
    return text.plan(source, fmt, target_bytes)


def infer_schema(source: RangeSource, fmt: TabularFormat) -> Schema:
    """The columns and types to read every piece of an input with, from one (its first) file.

    Text: the header, and types inferred from the first 1 MiB of records then widened (integers to
    nullable ``Int64``, ...; see :mod:`.schema`). Parquet: the file's schema. ``fmt.column_types``
    overrides any column. Raises :class:`TabularDataError` for a file with nothing to infer from.
    """
    if fmt.kind == "parquet":
        return parquet.infer(source, fmt)
    return text.infer(source, fmt)


def needed_ranges(source: RangeSource, fmt: TabularFormat, piece: Piece) -> list[tuple[int, int]]:
    """The byte ranges ``(offset, length)`` of ``source`` that :func:`read_piece` reads for
    ``piece``, merged where they touch: for text the header line and the piece's bytes (no read of
    the source), for Parquet the footer and the span of the piece's column chunks (two small
    reads). A reader holding these (:class:`.sources.HeldSource`) needs nothing else; where a
    file surprises it (a header that changed), it reads the rest from the source."""
    if fmt.kind == "parquet":
        found = parquet.needed(source, piece)
    else:
        found = [(piece.start, piece.end - piece.start)]
        if fmt.kind != "jsonl" and piece.header is not None:
            found.append((piece.header[0], piece.header[1] - piece.header[0]))
    merged: list[tuple[int, int]] = []
    for offset, length in sorted(r for r in found if r[1] > 0):
        if merged and offset <= merged[-1][0] + merged[-1][1]:
            last = merged[-1]
            merged[-1] = (last[0], max(last[1], offset + length - last[0]))
        else:
            merged.append((offset, length))
    return merged


def read_piece(source: RangeSource, fmt: TabularFormat, piece: Piece, schema: Schema) -> pd.DataFrame:
    """The piece's records as a DataFrame with exactly ``schema``'s columns and dtypes.

    Reads only the piece's bytes (and its file's header line), so memory follows the piece, not the
    file. A value that does not fit its column raises :class:`TabularDataError` naming the file,
    the piece, the column and the value.
    """
    if piece.kind != fmt.kind:
        raise TabularDataError(f"{piece.describe()}: a {piece.kind} piece cannot be read as {fmt.kind}")
    if piece.file != source.name:
        raise TabularDataError(f"{piece.describe()}: the source given is {source.name!r}")
    if fmt.kind == "parquet":
        return parquet.read(source, fmt, piece, schema)
    return text.read(source, fmt, piece, schema)
