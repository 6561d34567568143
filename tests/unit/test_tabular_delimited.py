"""Splitting delimited files: pieces are record-aligned, cover every record once, in order, and read
back (with the header) to what a whole-file read gives."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.scoring.tabular import (
    LocalFileSource,
    Piece,
    TabularDataError,
    TabularFormat,
    infer_schema,
    plan_pieces,
    read_piece,
    text,
)

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def tables(draw: st.DrawFn, multi_line: bool) -> dict:
    """A random table and its bytes as a delimited file."""
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    parts = st.sampled_from(["a", "b", "Z", "0", "7", " ", "é", "€", sep, '"', ",", "x", "NA"] +
                            (["\n", "\r\n", "\r"] if multi_line else []))
    values = st.lists(parts, max_size=10).map("".join)
    width = draw(st.integers(1, 5))
    rows = draw(st.lists(st.lists(values, min_size=width, max_size=width), max_size=25))
    names = [f"c{i}" + draw(st.sampled_from(["", sep, " x", '"q"'] + (["\nn"] if multi_line else [])))
             for i in range(width)]
    eol = draw(st.sampled_from(["\n", "\r\n"]))

    def field(value: str) -> str:
        # a lone blank value would make a blank line, which pandas skips even with spaces on it
        special = any(c in value for c in (sep, '"', "\n", "\r")) or (not value.strip() and width == 1)
        if special or draw(st.booleans()):
            return '"' + value.replace('"', '""') + '"'
        return value

    lines = [sep.join(field(v) for v in row) for row in [names, *rows]]
    body = eol.join(lines) + (eol if draw(st.booleans()) else "")
    bom = draw(st.booleans())
    return {"sep": sep, "names": names, "rows": rows, "bom": bom,
            "data": (b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8")}


class Counting:
    """A source that counts the bytes read through it."""

    def __init__(self, inner: LocalFileSource) -> None:
        self.inner, self.name, self.size, self.read_bytes = inner, inner.name, inner.size, 0

    def read(self, offset: int, length: int) -> bytes:
        data = self.inner.read(offset, length)
        self.read_bytes += len(data)
        return data


def _write(tmp_path: Path, data: bytes) -> LocalFileSource:
    path = tmp_path / "table.csv"
    path.write_bytes(data)
    return LocalFileSource(path, name="table.csv")


def _check_cover(pieces: list[Piece], source: LocalFileSource, target: int) -> None:
    """Contiguous, record-aligned ranges from the first data byte to the end of the file."""
    assert [p.index for p in pieces] == list(range(len(pieces)))
    for a, b in zip(pieces, pieces[1:]):
        assert a.end == b.start
    if pieces:
        assert pieces[0].start == pieces[0].header[1]
        assert pieces[-1].end == source.size
    assert all(p.file == "table.csv" and p.start < p.end for p in pieces)


def _split_and_read(source: LocalFileSource, fmt: TabularFormat, target: int) -> list[pd.DataFrame]:
    schema = infer_schema(source, fmt)
    pieces = list(plan_pieces(source, fmt, target))
    _check_cover(pieces, source, target)
    frames = [read_piece(source, fmt, p, schema) for p in pieces]
    for piece, frame in zip(pieces, frames):
        assert list(frame.columns) == schema.names                 # every piece has the header
        assert frame.dtypes.astype(str).to_dict() == schema.dtypes
        if piece.end - piece.start > target:                       # only a lone long record
            assert len(frame) <= 1
    return frames


def _as_strings(draw_table: dict, multi_line: bool) -> TabularFormat:
    return TabularFormat(separator=draw_table["sep"], support_multi_line=multi_line,
                         empty_as_string=True,
                         column_types={n: "string" for n in draw_table["names"]})


@pytest.mark.parametrize("multi_line", [True, False])
def test_pieces_hold_every_record_once_in_order(tmp_path: Path, multi_line: bool) -> None:
    @SETTINGS
    @given(table=tables(multi_line), target=st.integers(1, 300))
    def check(table: dict, target: int) -> None:
        source = _write(tmp_path, table["data"])
        fmt = _as_strings(table, multi_line)
        frames = _split_and_read(source, fmt, target)
        got = [list(r) for f in frames for r in f.itertuples(index=False)]
        assert got == table["rows"]
        # the same as reading the whole file with pandas
        whole = pd.read_csv(io.BytesIO(table["data"]), sep=table["sep"], dtype=str,
                            keep_default_na=False, encoding="utf-8-sig")
        assert list(whole.columns) == table["names"]
        assert [list(r) for r in whole.itertuples(index=False)] == got
    check()


@st.composite
def typed_tables(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    n = draw(st.integers(0, 60))
    ints = draw(st.lists(st.none() | st.integers(-10**12, 10**12), min_size=n, max_size=n))
    floats = draw(st.lists(st.none() | st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: round(f, 3)),
                           min_size=n, max_size=n))
    words = draw(st.lists(st.none() | st.text("ab,\"\n xé", max_size=8).map(lambda s: "w" + s),
                          min_size=n, max_size=n))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(["i", "f", "s"])
    writer.writerows([["" if v is None else v for v in row] for row in zip(ints, floats, words)])
    return buf.getvalue().encode(), {"i": "Int64", "f": "float64", "s": "object"}


def test_typed_columns_match_a_whole_file_read(tmp_path: Path) -> None:
    @SETTINGS
    @given(table=typed_tables(), target=st.integers(1, 400))
    def check(table: tuple[bytes, dict[str, str]], target: int) -> None:
        data, dtypes = table
        source = _write(tmp_path, data)
        fmt = TabularFormat(support_multi_line=True, column_types={"s": "string"})
        frames = _split_and_read(source, fmt, target)
        schema = infer_schema(source, fmt)
        whole = pd.read_csv(io.BytesIO(data), dtype={"f": "float64"})
        for name, dtype in dtypes.items():   # inferred as expected unless always missing
            assert schema.dtypes[name] == (dtype if whole[name].notna().any() else "object")
            whole[name] = whole[name].astype(schema.dtypes[name])
        got = pd.concat(frames, ignore_index=True) if frames else whole.iloc[:0]
        if whole.empty:   # pandas cannot infer from a header alone; nor can we: they are strings
            assert got.empty
            return
        pd.testing.assert_frame_equal(got, whole, check_dtype=True)
    check()


def test_without_multi_line_newlines_end_records_and_cuts_read_little(tmp_path: Path) -> None:
    rows = [f"{i},{'x' * (i % 50)},{i * 0.5}" for i in range(20000)]
    source = _write(tmp_path, ("a,b,c\n" + "\n".join(rows)).encode())

    counting = Counting(source)
    pieces = list(plan_pieces(counting, TabularFormat(), 64 * 1024))
    assert len(pieces) == -(-source.size // (64 * 1024)) or len(pieces) == source.size // (64 * 1024) + 1
    assert counting.read_bytes <= len(pieces) * text.WINDOW_BYTES + 4096
    assert counting.read_bytes < 2 * source.size   # no scan from the start at each cut
    fmt = TabularFormat()
    schema = infer_schema(source, fmt)
    got = pd.concat([read_piece(source, fmt, p, schema) for p in pieces], ignore_index=True)
    assert got["a"].tolist() == list(range(20000))
    assert all(p.est_bytes <= 64 * 1024 for p in pieces)


def test_with_multi_line_planning_reads_the_file_once(tmp_path: Path) -> None:
    rows = [f'{i},"{"x" * (i % 50)}\n{i}"' for i in range(20000)]
    source = _write(tmp_path, ("a,b\n" + "\n".join(rows) + "\n").encode())
    counting = Counting(source)
    pieces = list(plan_pieces(counting, TabularFormat(support_multi_line=True), 64 * 1024))
    assert len(pieces) > source.size // (64 * 1024)
    assert counting.read_bytes <= source.size + 2 * text.SCAN_CHUNK_BYTES   # + the header's look


def test_a_record_longer_than_the_target_is_a_piece_of_its_own(tmp_path: Path) -> None:
    long = "y" * 5000
    source = _write(tmp_path, f"a,b\n1,x\n2,{long}\n3,z\n".encode())
    for multi in (False, True):
        fmt = TabularFormat(support_multi_line=multi)
        pieces = list(plan_pieces(source, fmt, 100))
        schema = infer_schema(source, fmt)
        frames = [read_piece(source, fmt, p, schema) for p in pieces]
        assert [f["a"].tolist() for f in frames] == [[1], [2], [3]]
        assert frames[1]["b"][0] == long


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"a,b", b"a,b\n", b"\xef\xbb\xbfa,b\r\n"])
def test_empty_and_header_only_files_have_no_pieces(tmp_path: Path, data: bytes) -> None:
    source = _write(tmp_path, data)
    for multi in (False, True):
        assert list(plan_pieces(source, TabularFormat(support_multi_line=multi), 10)) == []


def test_blank_lines_are_no_records(tmp_path: Path) -> None:
    source = _write(tmp_path, b"a,b\r\n\r\n1,2\r\n\r\n\r\n")
    fmt = TabularFormat()
    schema = infer_schema(source, fmt)
    frames = [read_piece(source, fmt, p, schema) for p in plan_pieces(source, fmt, 2)]
    assert [len(f) for f in frames] == [0, 1, 0, 0]   # a piece of blank lines reads as no rows
    assert all(f.dtypes.astype(str).to_dict() == {"a": "Int64", "b": "Int64"} for f in frames)


def test_header_only_file_gives_string_columns(tmp_path: Path) -> None:
    schema = infer_schema(_write(tmp_path, b"a,b\n"), TabularFormat(column_types={"b": "int"}))
    assert schema.dtypes == {"a": "object", "b": "Int64"}
    with pytest.raises(TabularDataError, match="table.csv"):
        infer_schema(_write(tmp_path, b""), TabularFormat())


def test_no_header_names_columns_like_prs(tmp_path: Path) -> None:
    source = _write(tmp_path, b"1,x\n2,y")
    fmt = TabularFormat(header=False)
    schema = infer_schema(source, fmt)
    assert schema.dtypes == {"Column1": "Int64", "Column2": "object"}
    pieces = list(plan_pieces(source, fmt, 4))
    assert [p.header for p in pieces] == [None, None] and pieces[0].start == 0
    frame = pd.concat([read_piece(source, fmt, p, schema) for p in pieces], ignore_index=True)
    assert frame.to_dict("list") == {"Column1": [1, 2], "Column2": ["x", "y"]}


def test_skip_rows_and_latin1(tmp_path: Path) -> None:
    data = "# exported\n# by hand\nnom;prix\ncafé;1,5\nthé;2\n".replace(",", ".").encode("latin-1")
    source = _write(tmp_path, data)
    fmt = TabularFormat(separator=";", skip_rows=2, encoding="latin1")
    schema = infer_schema(source, fmt)
    frames = [read_piece(source, fmt, p, schema) for p in plan_pieces(source, fmt, 8)]
    assert pd.concat(frames, ignore_index=True).to_dict("list") == {"nom": ["café", "thé"],
                                                                    "prix": [1.5, 2.0]}


def test_files_with_other_columns_are_refused_by_name(tmp_path: Path) -> None:
    first = _write(tmp_path, b"a,b\n1,2\n")
    schema = infer_schema(first, TabularFormat())
    other = tmp_path / "other.csv"
    other.write_bytes(b"b,a\n3,4\n")                          # same columns, other order: fine
    source = LocalFileSource(other, name="other.csv")
    piece = next(plan_pieces(source, TabularFormat(), 100))
    assert read_piece(source, TabularFormat(), piece, schema).to_dict("list") == {"a": [4], "b": [3]}
    other.write_bytes(b"a,c\n3,4\n")
    source = LocalFileSource(other, name="other.csv")
    piece = next(plan_pieces(source, TabularFormat(), 100))
    with pytest.raises(TabularDataError, match=r"other\.csv piece 0.*\['a', 'c'\]"):
        read_piece(source, TabularFormat(), piece, schema)


def test_unbalanced_quotes_are_refused(tmp_path: Path) -> None:
    source = _write(tmp_path, b'a,b\n1,"open\n2,3\n')
    with pytest.raises(TabularDataError, match="never closed"):
        list(plan_pieces(source, TabularFormat(support_multi_line=True), 4))


def test_utf16_is_refused_with_a_reason() -> None:
    with pytest.raises(TabularDataError, match="encoding: utf16 is not supported"):
        TabularFormat(encoding="utf16")
