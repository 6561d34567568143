"""Planning tabular inputs: a file's schema, its record-aligned pieces, what planning knows of
their rows, and how items are grouped into mini-batches (see :mod:`shared.scoring.tables`, which
reads them in the scoring processes)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from shared.scoring.tables import file_format, source
from shared.scoring.tabular import infer_schema, plan_pieces
from shared.spec import InputSpec
from shared.storage import Storage


def schema_for(storage: Storage, input_spec: InputSpec, blob_name: str) -> dict[str, Any]:
    return infer_schema(source(storage, input_spec.container, blob_name),
                        file_format(input_spec.wire, blob_name)).to_dict()


def pieces(storage: Storage, input_spec: InputSpec, input_index: int, blob_name: str,
           target_bytes: int) -> Iterator[list[Any]]:
    """Items ``[input index, blob name, piece]`` of one file."""
    fmt = file_format(input_spec.wire, blob_name)
    for piece in plan_pieces(source(storage, input_spec.container, blob_name), fmt, target_bytes):
        yield [input_index, blob_name, piece.to_dict()]


READ_CHUNK = 8 * 1024 * 1024     # bytes read at a time when counting a piece's lines


def planned_counts(items: Iterable[list[Any]]) -> tuple[int, int]:
    """What planning knows of items ``[input, blob, piece]``: the rows of their Parquet pieces
    (exact, from the files' metadata) and the bytes of their text pieces (rows unknown until read).
    """
    rows = text_bytes = 0
    for _, _, piece in items:
        if piece["kind"] == "parquet":
            rows += int(piece["rows"][1])
        else:
            start, end = piece["range"]
            text_bytes += int(end) - int(start)
    return rows, text_bytes


def rows_unread(storage: Storage, inputs: Sequence[InputSpec], items: list[list[Any]]
                ) -> tuple[int, bool]:
    """The rows of a mini-batch that could not be read, and whether that count is exact.

    Parquet pieces: their rows, from the metadata (exact). Text pieces: the lines of their bytes,
    read again here: an upper bound on their records (blank lines, and newlines inside quoted
    fields, count too)."""
    rows, exact = 0, True
    for input_index, blob_name, piece in items:
        if piece["kind"] == "parquet":
            rows += int(piece["rows"][1])
            continue
        exact = False
        src = source(storage, inputs[input_index].container, blob_name)
        start, end = (int(x) for x in piece["range"])
        last = b""
        for offset in range(start, end, READ_CHUNK):
            data = src.read(offset, min(READ_CHUNK, end - offset))
            rows += data.count(b"\n")
            last = data[-1:] or last
        rows += 1 if last and last != b"\n" else 0   # the file's last record, without a newline
    return rows, exact


def group(items: list[list[Any]], files_per_batch: int, tabular: bool, last_page: bool
          ) -> tuple[list[list[list[Any]]], list]:
    """Cut items into mini-batches; returns (batches, items carried to the next page). Jobs with
    ``partition_keys`` are cut by :mod:`shared.service.planning.partitions` instead."""
    if tabular:
        return [[it] for it in items], []
    cut = len(items) if last_page else len(items) - len(items) % files_per_batch
    return [items[i:i + files_per_batch] for i in range(0, cut, files_per_batch)], items[cut:]
