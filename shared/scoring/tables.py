"""Tabular inputs (PRS's TabularDataset) and partitions, on top of :mod:`shared.scoring.tabular`.

Reading (here) and planning (:mod:`shared.service.planning.tables`) of tabular inputs.

Planning: every matching file of a tabular input is split into record-aligned pieces of about
``mini_batch_size`` bytes (never across files); each piece is one mini-batch. The input's schema is
inferred once, from its first file, and every piece is read with it, so ``run()`` sees the same
columns and dtypes in every mini-batch. With ``partition_keys``, each distinct combination of key
values (from Hive-style ``key=value`` folders or the input's ``partition_format``) is one mini-batch
instead: all the files (or pieces) of that partition, in listing order.

Loading (in the scoring process): the pieces of a mini-batch are read and concatenated; partition
columns are appended at the end, as PRS does. The bytes a piece needs are read ahead by the worker
while the mini-batch waits for a scoring process (:func:`read_ahead`: the header and the piece's
range, or a Parquet piece's footer and column chunks, into a local file), so the process reads
them from the node; any byte not read ahead (or a read-ahead that failed) comes from storage.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from shared.errors import SubmitterError
from shared.scoring.blobreader import BlobReader
from shared.scoring.tabular import (
    FORMAT_NAMES,
    BlobSource,
    HeldSource,
    Piece,
    RangeSource,
    Schema,
    TabularDataError,
    TabularFormat,
    needed_ranges,
    parse_partition,
    read_piece,
)

if TYPE_CHECKING:    # the service passes its Storage (whose blob_reader reads); never imported here
    from shared.storage import Storage

EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
              ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


def file_format(input_spec: dict[str, Any], blob_name: str) -> TabularFormat:
    """The format of one file of a tabular input: the input's ``format``, else from the extension."""
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
    reader: Any = getattr(storage, "blob_reader", storage)   # a Storage's reader, or the reader
    return BlobSource(functools.partial(reader.read_range, container, blob_name), name=blob_name)


def partition_of(input_spec: dict[str, Any], blob_name: str, keys: list[str]) -> dict[str, str]:
    """The values of ``keys`` for a file, from its path relative to the input's prefix; a
    ``partition_format`` that starts with the prefix (PRS's formats may name the datastore path,
    ``dataset_partition_test/{user}/{season}/{genres}.wav`` for the prefix
    ``dataset_partition_test/``) is matched against the whole blob name."""
    prefix = input_spec.get("prefix") or ""
    fmt = input_spec.get("partition_format")
    whole = fmt is not None and fmt.lstrip("/").startswith(prefix)
    values = parse_partition(blob_name if whole else blob_name[len(prefix):], fmt)
    missing = [k for k in keys if k not in values]
    if missing:
        raise SubmitterError(f"partition_keys {missing} are not in the path of {blob_name!r} "
                             f"(found {sorted(values)})")
    return {k: values[k] for k in keys}


def read_ahead(storage: Storage | BlobReader, input_spec: dict[str, Any], blob_name: str,
               piece: dict[str, Any], path: Path) -> dict[str, Any]:
    """Read the byte ranges one piece needs (:func:`shared.scoring.tabular.needed_ranges`) into
    ``path``, each at its own offset (a sparse file), for the scoring process that reads the piece
    (:class:`shared.scoring.tabular.HeldSource`). Returns what the process needs to find them:
    ``{"path", "size", "ranges": [[offset, length], ...]}``. Each range is one ranged GET written
    as it came (a text piece: its bytes and its header line; a Parquet piece: its column chunks
    and the file's tail, as planned). Raises :class:`TabularDataError` for a file whose size is
    not the one planned (the process then reads it and reports what does not fit)."""
    reader: Any = getattr(storage, "blob_reader", storage)
    planned = Piece.from_dict(piece)
    ranges = needed_ranges(source(reader, input_spec["container"], blob_name),
                           file_format(input_spec, blob_name), planned)
    if not ranges:
        raise TabularDataError(f"{planned.describe()}: nothing to read ahead (not a Parquet file?)")
    size = planned.file_size
    with open(path, "wb") as fh:
        for offset, length in ranges:
            data, size = reader.read_range(input_spec["container"], blob_name, offset, length)
            if planned.file_size and size != planned.file_size:
                raise TabularDataError(f"{planned.describe()}: the file has {size} bytes, "
                                       f"{planned.file_size} when it was planned")
            fh.seek(offset)
            fh.write(data)
    return {"path": str(path), "size": size, "ranges": [list(r) for r in ranges]}


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
        for (input_spec, blob_name, piece, schema, partition), held in zip(_described(request), _held(request)):
            df = _read(reader, input_spec, blob_name, piece, schema, held)
            for key, value in partition.items():
                df[key] = value
            frames.append(df)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def _reader_for(self, grant: dict[str, Any] | None) -> BlobReader | Storage:
        if grant is None:    # a scoring process has no credentials: tokens come with the request
            if self._reader is None:
                raise PermissionError("the table request carries no read tokens (``read``)")
            return self._reader
        self._tokens.update(grant["tokens"])       # the newest tokens are used from now on
        if self._reader is None:
            self._reader = BlobReader.with_tokens(grant["url"], grant["api_version"],
                                                  grant["timeout_s"], self._tokens)
        return self._reader


def _described(request: dict[str, Any]) -> Iterable[tuple[dict, str, dict, dict, dict]]:
    for input_index, blob_name, piece in request["items"]:
        spec = request["inputs"][input_index]
        keys = request.get("partition_keys") or []
        partition = partition_of(spec, blob_name, keys) if keys else {}
        yield spec, blob_name, piece, request["schemas"][str(input_index)], partition


def _held(request: dict[str, Any]) -> Iterable[dict[str, Any] | None]:
    """Per item, where the worker put its bytes (:func:`read_ahead`), or None: read from storage."""
    held = request.get("held") or []
    for i in range(len(request["items"])):
        yield held[i] if i < len(held) else None


def _read(storage: Storage | BlobReader, input_spec: dict[str, Any], blob_name: str, piece: dict[str, Any],
          schema: dict[str, Any], held: dict[str, Any] | None = None) -> pd.DataFrame:
    fmt = file_format(input_spec, blob_name)
    src: RangeSource = source(storage, input_spec["container"], blob_name)
    if held is not None:
        src = HeldSource(held["path"], [(int(o), int(n)) for o, n in held["ranges"]], int(held["size"]), src)
    return read_piece(src, fmt, Piece.from_dict(piece), Schema.from_dict(schema))
