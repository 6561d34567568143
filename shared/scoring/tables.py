"""Tabular inputs (PRS's TabularDataset) and partitions, on top of :mod:`shared.scoring.tabular`.

Planning: every matching file of a tabular input is split into record-aligned pieces of about
``mini_batch_size`` bytes (never across files); each piece is one mini-batch. The input's schema is
inferred once, from its first file, and every piece is read with it, so ``run()`` sees the same
columns and dtypes in every mini-batch. With ``partition_keys``, each distinct combination of key
values (from Hive-style ``key=value`` folders or the input's ``partition_format``) is one mini-batch
instead: all the files (or pieces) of that partition, in listing order.

Loading (in the scoring process): the pieces of a mini-batch are read straight from storage and
concatenated; partition columns are appended at the end, as PRS does.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import TYPE_CHECKING, Any

import pandas as pd

from shared.errors import SubmitterError
from shared.scoring.tabular import BlobSource, Piece, Schema, TabularFormat, infer_schema, parse_partition, plan_pieces

if TYPE_CHECKING:    # the scoring processes import this module: no storage SDK, no pydantic there
    from shared.scoring.blobreader import BlobReader
    from shared.storage import Storage

EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
              ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def file_format(input_spec: dict[str, Any], blob_name: str) -> TabularFormat:
    """The format of one file of a tabular input: the input's ``format``, else from the extension."""
    from shared.spec import FORMAT_NAMES

    fmt = input_spec.get("format")
    if isinstance(fmt, dict):
        return TabularFormat.from_dict(fmt)
    if fmt is None:
        ext = os.path.splitext(blob_name)[1].lower()
        if ext not in EXTENSIONS:
            raise SubmitterError(f"cannot tell the format of {blob_name!r} from its extension: set "
                                 f"the input's format ({', '.join(FORMAT_NAMES)})")
        fmt = EXTENSIONS[ext]
    return TabularFormat.from_dict(FORMAT_NAMES[fmt])


def source(storage: Storage | BlobReader, container: str, blob_name: str) -> BlobSource:
    """A blob of a tabular input, read by byte ranges over plain HTTP (:mod:`shared.scoring.blobreader`).

    A piece is one or a few ranged GETs, so the SDK's client cost per request (~2.4 ms, against
    ~0.3 ms) would be most of its storage time; the reader retries transient faults as the SDK does.
    """
    reader = getattr(storage, "blob_reader", storage)
    return BlobSource(functools.partial(reader.read_range, container, blob_name), name=blob_name)


def schema_for(storage: Storage, input_spec: dict[str, Any], blob_name: str) -> dict[str, Any]:
    return infer_schema(source(storage, input_spec["container"], blob_name),
                        file_format(input_spec, blob_name)).to_dict()


def pieces(storage: Storage, input_spec: dict[str, Any], input_index: int, blob_name: str,
           target_bytes: int) -> Iterator[list[Any]]:
    """Items ``[input index, blob name, piece]`` of one file."""
    fmt = file_format(input_spec, blob_name)
    for piece in plan_pieces(source(storage, input_spec["container"], blob_name), fmt, target_bytes):
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


def rows_unread(storage: Storage, inputs: list[dict[str, Any]], items: list[list[Any]]
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
        src = source(storage, inputs[input_index]["container"], blob_name)
        start, end = (int(x) for x in piece["range"])
        last = b""
        for offset in range(start, end, READ_CHUNK):
            data = src.read(offset, min(READ_CHUNK, end - offset))
            rows += data.count(b"\n")
            last = data[-1:] or last
        rows += 1 if last and last != b"\n" else 0   # the file's last record, without a newline
    return rows, exact


def partition_of(input_spec: dict[str, Any], blob_name: str, keys: list[str]) -> dict[str, str]:
    """The values of ``keys`` for a file, from its path relative to the input's prefix."""
    relative = blob_name[len(input_spec.get("prefix") or ""):]
    values = parse_partition(relative, input_spec.get("partition_format"))
    missing = [k for k in keys if k not in values]
    if missing:
        raise SubmitterError(f"partition_keys {missing} are not in the path of {blob_name!r} "
                             f"(found {sorted(values)})")
    return {k: values[k] for k in keys}


def group(items: list[list[Any]], inputs: list[dict[str, Any]], keys: list[str] | None,
          files_per_batch: int, tabular: bool, last_page: bool) -> tuple[list[list[list[Any]]], list]:
    """Cut items into mini-batches; returns (batches, items carried to the next page)."""
    if keys:
        runs = [list(g) for _, g in groupby(items, key=lambda it: (
            it[0], tuple(partition_of(inputs[it[0]], it[1], keys).values())))]
        return (runs, []) if last_page or not runs else (runs[:-1], runs[-1])
    if tabular:
        return [[it] for it in items], []
    cut = len(items) if last_page else len(items) - len(items) % files_per_batch
    return [items[i:i + files_per_batch] for i in range(0, cut, files_per_batch)], items[cut:]


class TableLoader:
    """Reads a tabular mini-batch in a scoring process.

    The request carries read tokens for its containers (``read``: :meth:`BlobReader.read_grant` of
    the worker), so the process needs no storage credentials and no storage SDK."""

    def __init__(self) -> None:
        self._reader: BlobReader | Storage | None = None
        self._tokens: dict[str, str] = {}

    def load(self, request: dict[str, Any]) -> pd.DataFrame:
        reader = self._reader_for(request.get("read"))
        frames = []
        for input_spec, blob_name, piece, schema, partition in _described(request):
            df = _read(reader, input_spec, blob_name, piece, schema)
            for key, value in partition.items():
                df[key] = value
            frames.append(df)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _reader_for(self, grant: dict[str, Any] | None) -> BlobReader | Storage:
        if grant is None:    # no tokens given: this process's own credentials, through the SDK
            if self._reader is None:
                from shared.settings import Settings
                from shared.storage import Storage
                self._reader = Storage(Settings.from_env())
            return self._reader
        self._tokens.update(grant["tokens"])       # the newest tokens are used from now on
        if self._reader is None:
            from shared.scoring.blobreader import BlobReader
            self._reader = BlobReader.with_tokens(grant["url"], grant["api_version"],
                                                  grant["timeout_s"], self._tokens)
        return self._reader


def _described(request: dict[str, Any]) -> Iterable[tuple[dict, str, dict, dict, dict]]:
    for input_index, blob_name, piece in request["items"]:
        spec = request["inputs"][input_index]
        keys = request.get("partition_keys") or []
        partition = partition_of(spec, blob_name, keys) if keys else {}
        yield spec, blob_name, piece, request["schemas"][str(input_index)], partition


def _read(storage: Storage | BlobReader, input_spec: dict[str, Any], blob_name: str, piece: dict[str, Any],
          schema: dict[str, Any]) -> pd.DataFrame:
    from shared.scoring.tabular import read_piece
    fmt = file_format(input_spec, blob_name)
    return read_piece(source(storage, input_spec["container"], blob_name), fmt,
                      Piece.from_dict(piece), Schema.from_dict(schema))
