"""Delimited (CSV, TSV, ...) and JSON Lines files: record-aligned byte ranges, and reading one.

Layout of a file: an optional UTF-8 byte-order mark, ``skip_rows`` records, the header record, then
the data records. Pieces are byte ranges of the data records that end just after a record's
``\\n`` (so ``\\r\\n`` stays whole) or at the end of the file; the header is read with every piece.

Cutting, with ``support_multi_line=False`` (and for JSON Lines, whose strings cannot hold raw
newlines): every ``\\n`` ends a record, so a cut near offset ``start + target`` reads one 64 KiB
window backwards from it (and, only for a record longer than the target, forwards); planning costs
about one small read per piece whatever the file's size.

With ``support_multi_line=True`` a ``\\n`` inside a quoted field does not end a record, and whether a
byte is inside quotes depends on every quote before it, so planning scans the file once from the
start, in 1 MiB reads, counting quote characters (vectorised with numpy; hundreds of MB/s, so the
download is the cost: planning reads the whole file once). Memory stays at one chunk. The quote
state is the parity of the quote characters seen, which is exact for RFC 4180 files (a field that
holds a quote is quoted and the quote doubled); a stray quote inside an unquoted field would flip
it, and a file that ends inside quotes is refused as malformed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from shared.scoring.tabular.formats import Piece, TabularDataError, TabularFormat
from shared.scoring.tabular.schema import Schema, from_inferred, to_frame
from shared.scoring.tabular.sources import RangeSource

WINDOW_BYTES = 64 * 1024          # how far a cut looks for a newline per read
SCAN_CHUNK_BYTES = 1024 * 1024    # one read of the quote-tracking scan
SAMPLE_BYTES = 1024 * 1024        # the records a schema is inferred from
_BOM = b"\xef\xbb\xbf"
_NL = 10


@dataclass(frozen=True)
class _Layout:
    header: tuple[int, int] | None   # byte range of the header record
    data_start: int


def plan(source: RangeSource, fmt: TabularFormat, target_bytes: int) -> Iterator[Piece]:
    layout = _layout(source, fmt)
    for index, (start, end) in enumerate(_cuts(source, fmt, layout.data_start, target_bytes)):
        yield Piece(source.name, fmt.kind, index, start, end, layout.header, est_bytes=end - start)


def infer(source: RangeSource, fmt: TabularFormat) -> Schema:
    layout = _layout(source, fmt)
    where = f"{source.name} (first {SAMPLE_BYTES // 1024} KiB)"
    cut = next(_cuts(source, fmt, layout.data_start, SAMPLE_BYTES), None)
    sample = source.read(cut[0], cut[1] - cut[0]) if cut else b""
    if fmt.kind == "jsonl":
        if not sample.strip():
            raise TabularDataError(f"{source.name}: no JSON records to infer a schema from")
        table = _parse_json(sample, fmt, None, where)
        extra = [pa.field(n, pa.null()) for n in fmt.declared_types if n not in table.schema.names]
        return from_inferred(pa.schema(list(table.schema) + extra), fmt.declared_types, where)
    if layout.header is not None:
        names = _header_names(source, fmt, layout.header)
    elif sample.strip():
        width = _parse_csv(sample, fmt, None, None, where).num_columns
        names = [f"Column{i + 1}" for i in range(width)]
    else:
        raise TabularDataError(f"{source.name}: no records and no header to infer a schema from")
    if not sample.strip():   # a header and no records: nothing to infer types from
        return from_inferred(pa.schema([(n, pa.string()) for n in names]), fmt.declared_types, where)
    return from_inferred(_parse_csv(sample, fmt, names, None, where).schema, fmt.declared_types, where)


def read(source: RangeSource, fmt: TabularFormat, piece: Piece, schema: Schema) -> pd.DataFrame:
    where = piece.describe()
    # The header is read with every piece; right before the piece (the first one), in the same read.
    start = piece.start
    if fmt.kind != "jsonl" and piece.header is not None and piece.header[1] == piece.start:
        start = piece.header[0]
    data = source.read(start, piece.end - start)
    if len(data) != piece.end - start:
        raise TabularDataError(f"{where}: the file has {source.size} bytes; did it change since "
                               f"it was planned?")
    header_line, data = (data[:piece.start - start], data[piece.start - start:]) \
        if start != piece.start else (None, data)
    if fmt.kind == "jsonl":
        table = _parse_json(data, fmt, schema, where)
    else:
        names = schema.names
        if piece.header is not None:
            names = _header_names(source, fmt, piece.header, header_line)
            if sorted(names) != sorted(schema.names):
                raise TabularDataError(
                    f"{where}: the header's columns {names} differ from the input's columns "
                    f"{schema.names} (inferred from its first file); all files need the same columns")
        types = {f.name: f.type for f in schema.arrow}
        table = _parse_csv(data, fmt, names, types, where).select(schema.names)
    return to_frame(table, schema, where)


# -- layout and cuts ------------------------------------------------------------------------------
def _layout(source: RangeSource, fmt: TabularFormat) -> _Layout:
    pos = 3 if fmt.codec == "utf-8" and source.read(0, 3) == _BOM else 0
    if fmt.kind == "jsonl":
        return _Layout(None, pos)
    for _ in range(fmt.skip_rows):
        pos = _record_end(source, fmt, pos)
    if not fmt.header:
        return _Layout(None, pos)
    end = _record_end(source, fmt, pos)
    return _Layout((pos, end), end)


def _record_end(source: RangeSource, fmt: TabularFormat, pos: int) -> int:
    """The offset just after the record starting at ``pos`` (the file's size at its end)."""
    if pos >= source.size:
        return source.size
    if not _multi_line(fmt):
        return _newline_after(source, pos)
    for ends in _unquoted_record_ends(source, fmt, pos, check_end=False):
        if len(ends):
            return int(ends[0])
    return source.size


def _multi_line(fmt: TabularFormat) -> bool:
    return fmt.kind == "delimited" and fmt.support_multi_line


def _cuts(source: RangeSource, fmt: TabularFormat, start: int,
          target: int) -> Iterator[tuple[int, int]]:
    """Record-aligned ``[start, end)`` ranges from ``start`` to the end of the file, each at most
    ``target`` bytes unless it holds a single longer record."""
    if target < 1:
        raise ValueError(f"target_bytes must be at least 1, not {target}")
    if start >= source.size:
        return
    if _multi_line(fmt):
        yield from _greedy(_unquoted_record_ends(source, fmt, start), start, source.size, target)
        return
    while start < source.size:
        limit = start + target
        if limit >= source.size:
            end = source.size
        else:
            end = _newline_before(source, start, limit) or _newline_after(source, limit)
        yield start, end
        start = end


def _newline_before(source: RangeSource, lo: int, hi: int) -> int | None:
    """The offset just after the last ``\\n`` in ``[lo, hi)``, or None."""
    while hi > lo:
        at = max(lo, hi - WINDOW_BYTES)
        found = source.read(at, hi - at).rfind(b"\n")
        if found >= 0:
            return at + found + 1
        hi = at
    return None


def _newline_after(source: RangeSource, pos: int) -> int:
    """The offset just after the first ``\\n`` at or after ``pos``, or the file's size."""
    while pos < source.size:
        chunk = source.read(pos, WINDOW_BYTES)
        if not chunk:
            break
        found = chunk.find(b"\n")
        if found >= 0:
            return pos + found + 1
        pos += len(chunk)
    return source.size


def _unquoted_record_ends(source: RangeSource, fmt: TabularFormat, pos: int,
                          check_end: bool = True) -> Iterator[np.ndarray]:
    """Per chunk, the offsets just after each ``\\n`` outside quotes, from ``pos`` (outside quotes)."""
    quote = ord(fmt.quotechar)
    parity = 0
    start = pos
    while pos < source.size:
        chunk = source.read(pos, SCAN_CHUNK_BYTES)
        if not chunk:
            break
        data = np.frombuffer(chunk, dtype=np.uint8)
        newlines = np.flatnonzero(data == _NL)
        quotes = np.flatnonzero(data == quote)
        if len(quotes):
            before = np.searchsorted(quotes, newlines)     # quotes ahead of each newline
            newlines = newlines[((before + parity) & 1) == 0]
            parity = (parity + len(quotes)) & 1
        yield newlines + (pos + 1)
        pos += len(chunk)
    if check_end and parity:
        raise TabularDataError(f"{source.name}: a quoted field opened after byte {start} is never "
                               f"closed (unbalanced {fmt.quotechar} characters)")


def _greedy(ends: Iterable[np.ndarray], start: int, size: int,
            target: int) -> Iterator[tuple[int, int]]:
    """Pack consecutive records into ranges of at most ``target`` bytes (one longer record alone)."""
    best: int | None = None      # the furthest record end within start + target
    for batch in itertools.chain(ends, [np.array([size], dtype=np.int64)]):
        i = 0
        while i < len(batch):
            j = i + int(np.searchsorted(batch[i:], start + target, side="right"))
            if j > i:
                best, i = int(batch[j - 1]), j
            if i == len(batch):
                break
            end = best if best is not None else int(batch[i])
            i += end == int(batch[i])
            yield start, end
            start, best = end, None
    if best is not None and best > start:
        yield start, best


# -- parsing --------------------------------------------------------------------------------------
def _utf8(data: bytes, fmt: TabularFormat, where: str) -> bytes:
    if fmt.codec == "utf-8":
        return data
    try:
        return data.decode(fmt.codec).encode("utf-8")
    except UnicodeDecodeError as exc:
        raise TabularDataError(f"{where}: not {fmt.encoding} text at byte {exc.start}") from None


def _header_names(source: RangeSource, fmt: TabularFormat, header: tuple[int, int],
                  line: bytes | None = None) -> list[str]:
    """The column names in the header record at ``header`` (``line``: its bytes, if read already)."""
    where = f"{source.name} header"
    if line is None:
        line = source.read(header[0], header[1] - header[0])
    if not line.strip(b"\r\n"):
        raise TabularDataError(f"{where}: the header line (bytes {header[0]}-{header[1]}) is empty")
    line = line if line.endswith(b"\n") else line + b"\n"   # a header that ends the file
    options = pacsv.ReadOptions(block_size=max(1 << 20, len(line) + 1))
    return list(_read_csv(line, fmt, options, pacsv.ConvertOptions(), where).column_names)


def _parse_csv(data: bytes, fmt: TabularFormat, names: list[str] | None,
               types: dict[str, pa.DataType] | None, where: str) -> pa.Table:
    """Parse records (no header). ``names=None`` autogenerates them; ``types=None`` infers."""
    if not data.strip(b"\r\n"):
        return pa.table({n: pa.array([], types[n] if types else pa.string()) for n in names or []})
    read_options = pacsv.ReadOptions(column_names=names, autogenerate_column_names=names is None,
                                     block_size=max(1 << 20, len(data) + 1))
    convert = pacsv.ConvertOptions(column_types=types, strings_can_be_null=not fmt.empty_as_string,
                                   quoted_strings_can_be_null=not fmt.empty_as_string)
    return _read_csv(data, fmt, read_options, convert, where, names)


def _read_csv(data: bytes, fmt: TabularFormat, read_options: pacsv.ReadOptions,
              convert: pacsv.ConvertOptions, where: str, names: list[str] | None = None) -> pa.Table:
    parse = pacsv.ParseOptions(delimiter=fmt.separator, quote_char=fmt.quotechar, double_quote=True,
                               newlines_in_values=fmt.support_multi_line, ignore_empty_lines=True)
    try:
        return pacsv.read_csv(pa.BufferReader(_utf8(data, fmt, where)), read_options=read_options,
                              parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as exc:
        raise TabularDataError(f"{where}: {_name_column(str(exc), names)}") from None


def _name_column(message: str, names: list[str] | None) -> str:
    """pyarrow says "In CSV column #3: ..."; say which column that is."""
    prefix = "In CSV column #"
    if names and message.startswith(prefix):
        number, _, rest = message[len(prefix):].partition(":")
        if number.isdigit() and int(number) < len(names):
            return f"column {names[int(number)]!r}:{rest} (declare its type in column_types)"
    return message


def _parse_json(data: bytes, fmt: TabularFormat, schema: Schema | None, where: str) -> pa.Table:
    """JSON Lines records; blank lines are skipped. ``schema=None`` infers the types."""
    if not data.strip():
        return schema.arrow.empty_table() if schema else pa.table({})
    parse = pajson.ParseOptions(explicit_schema=schema.arrow if schema else None,
                                unexpected_field_behavior="error" if schema else "infer")
    options = pajson.ReadOptions(block_size=max(1 << 20, len(data) + 1))
    try:
        table = pajson.read_json(pa.BufferReader(_utf8(data, fmt, where)), read_options=options,
                                 parse_options=parse)
    except pa.ArrowInvalid as exc:
        hint = " (a key the schema does not have: declare it in column_types)" \
            if "unexpected field" in str(exc).lower() else ""
        raise TabularDataError(f"{where}: {exc}{hint}") from None
    return table.select(schema.names) if schema else table
