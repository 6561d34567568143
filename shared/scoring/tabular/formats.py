"""The vocabulary of tabular inputs: how a file is laid out (:class:`TabularFormat`), one mini-batch
of it (:class:`Piece`), and the error raised when its data cannot be read (:class:`TabularDataError`).

Field names follow ``Dataset.Tabular.from_delimited_files`` where PRS has one (``separator``,
``header``, ``encoding``, ``support_multi_line``, ``empty_as_string``, ``set_column_types`` is
``column_types`` here). Both types are frozen and round-trip through JSON via ``to_dict`` /
``from_dict``; a :class:`Piece` is small because it is stored in a ledger row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from shared.errors import SubmitterError

Kind = Literal["delimited", "parquet", "jsonl"]
KINDS: tuple[str, ...] = ("delimited", "parquet", "jsonl")

# PRS's encoding names -> Python codecs. Every one of them is ASCII-compatible, so b"\n", the
# separator and the quote character are single bytes that never occur inside a multi-byte character.
ENCODINGS: dict[str, str] = {"utf8": "utf-8", "utf8bom": "utf-8", "ascii": "ascii",
                             "latin1": "latin-1", "iso88591": "latin-1", "windows1252": "cp1252"}
UNSUPPORTED_ENCODINGS = ("utf16", "utf32")

# The column types a user may declare (PRS's ``set_column_types``, by name).
COLUMN_TYPES: tuple[str, ...] = ("int", "float", "bool", "string", "datetime")


class TabularDataError(SubmitterError, ValueError):
    """A tabular file cannot be split or read as declared; the message names the file and piece."""


@dataclass(frozen=True)
class TabularFormat:
    """How the files of one tabular input are laid out. Defaults are PRS's.

    ``header``: the first line of each file (after ``skip_rows`` lines) holds the column names; with
    ``header=False`` the columns are named ``Column1``, ``Column2``, ... as in PRS.
    ``support_multi_line``: a quoted field may contain newlines. The splitter must then track the
    quote state from the start of the file (a sequential scan); when False every newline ends a
    record and pieces are cut by reading a small window around each cut.
    ``empty_as_string``: an empty field is ``""`` rather than missing (PRS's default: missing).
    ``column_types``: column name -> one of :data:`COLUMN_TYPES`, overriding inference.
    Delimited options are ignored for Parquet; for JSON Lines only ``encoding`` and
    ``column_types`` apply.
    """

    kind: Kind = "delimited"
    separator: str = ","
    header: bool = True
    encoding: str = "utf8"
    support_multi_line: bool = False
    quotechar: str = '"'
    skip_rows: int = 0
    empty_as_string: bool = False
    column_types: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.column_types, Mapping):
            object.__setattr__(self, "column_types", tuple(self.column_types.items()))
        else:
            object.__setattr__(self, "column_types", tuple(tuple(p) for p in self.column_types))
        problems = list(self._problems())
        if problems:
            raise TabularDataError("invalid tabular format: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        out = []
        if self.kind not in KINDS:
            out.append(f"kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        for name in ("separator", "quotechar"):
            value = getattr(self, name)
            if not isinstance(value, str) or len(value) != 1 or not value.isascii() \
                    or value in "\r\n":
                out.append(f"{name}: {value!r} must be one ASCII character other than a newline")
        if self.separator == self.quotechar:
            out.append("separator and quotechar must differ")
        if self.encoding in UNSUPPORTED_ENCODINGS:
            out.append(f"encoding: {self.encoding} is not supported: files are split at byte offsets, "
                       f"which needs an ASCII-compatible encoding ({', '.join(ENCODINGS)})")
        elif self.encoding not in ENCODINGS:
            out.append(f"encoding: {self.encoding!r} is not one of {', '.join(ENCODINGS)}")
        for name in ("header", "support_multi_line", "empty_as_string"):
            if not isinstance(getattr(self, name), bool):
                out.append(f"{name}: must be true or false")
        if isinstance(self.skip_rows, bool) or not isinstance(self.skip_rows, int) or self.skip_rows < 0:
            out.append(f"skip_rows: {self.skip_rows!r} must be a whole number >= 0")
        for column, declared in self.column_types:
            if declared not in COLUMN_TYPES:
                out.append(f"column_types.{column}: {declared!r} is not one of {', '.join(COLUMN_TYPES)}")
        return out

    @property
    def codec(self) -> str:
        """The Python codec of :attr:`encoding`."""
        return ENCODINGS[self.encoding]

    @property
    def declared_types(self) -> dict[str, str]:
        return dict(self.column_types)

    def to_dict(self) -> dict[str, Any]:
        """The fields that differ from their defaults (``kind`` always)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "kind" and value != f.default:
                out[f.name] = dict(value) if f.name == "column_types" else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TabularFormat:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TabularDataError(f"invalid tabular format: unknown field(s) {', '.join(unknown)}; "
                                   f"known: {', '.join(sorted(known))}")
        return cls(**dict(data))


@dataclass(frozen=True)
class Piece:
    """One mini-batch of one file: a record-aligned byte range, or rows of Parquet row groups.

    Delimited and JSON Lines: bytes ``[start, end)`` of the file; ``header`` is the byte range of
    the header line, read with every piece. Parquet: rows ``[row_offset, row_offset + row_count)``
    of the concatenation of ``row_groups`` (consecutive groups, or one group and a slice of it).
    ``est_bytes`` is the piece's estimated size (bytes for text, uncompressed bytes for Parquet).
    ``reads`` (Parquet, from planning): the byte ranges ``(offset, length)`` reading it needs (its
    column chunks' span and the file's tail with the footer) in a file of ``file_size`` bytes, so
    the worker can read them ahead without parsing the footer itself; empty when not known.
    """

    file: str
    kind: Kind
    index: int
    start: int = 0
    end: int = 0
    header: tuple[int, int] | None = None
    row_groups: tuple[int, ...] = ()
    row_offset: int = 0
    row_count: int = 0
    est_bytes: int = 0
    reads: tuple[tuple[int, int], ...] = ()
    file_size: int = 0

    def describe(self) -> str:
        if self.kind == "parquet":
            where = f"row groups {list(self.row_groups)}, rows {self.row_offset}-" \
                    f"{self.row_offset + self.row_count}"
        else:
            where = f"bytes {self.start}-{self.end}"
        return f"{self.file} piece {self.index} ({where})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": self.file, "kind": self.kind, "index": self.index,
                               "est_bytes": self.est_bytes}
        if self.kind == "parquet":
            out.update(row_groups=list(self.row_groups), rows=[self.row_offset, self.row_count])
            if self.reads:
                out.update(reads=[list(r) for r in self.reads], size=self.file_size)
        else:
            out["range"] = [self.start, self.end]
            if self.header is not None:
                out["header"] = list(self.header)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Piece:
        try:
            start, end = data.get("range", (0, 0))
            row_offset, row_count = data.get("rows", (0, 0))
            header = data.get("header")
            return cls(file=data["file"], kind=data["kind"], index=int(data["index"]),
                       start=int(start), end=int(end),
                       header=(int(header[0]), int(header[1])) if header is not None else None,
                       row_groups=tuple(int(g) for g in data.get("row_groups", ())),
                       row_offset=int(row_offset), row_count=int(row_count),
                       est_bytes=int(data.get("est_bytes", 0)),
                       reads=tuple((int(o), int(n)) for o, n in data.get("reads", ())),
                       file_size=int(data.get("size", 0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise TabularDataError(f"malformed piece {dict(data)!r}: {exc}") from exc


# The names a job spec may give as an input's ``format``, and what each means.
FORMAT_NAMES = {"csv": {"kind": "delimited"}, "tsv": {"kind": "delimited", "separator": "\t"},
                "delimited": {"kind": "delimited"}, "parquet": {"kind": "parquet"},
                "jsonl": {"kind": "jsonl"}, "json": {"kind": "jsonl"}}
