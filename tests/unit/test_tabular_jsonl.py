"""Splitting JSON Lines files: line-aligned pieces hold every record once, in order."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.scoring.tabular import (
    LocalFileSource,
    TabularDataError,
    TabularFormat,
    infer_schema,
    plan_pieces,
    read_piece,
)

VALUES = {"i": st.integers(-2**62, 2**62), "f": st.floats(-1e9, 1e9, allow_nan=False),
          "s": st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=10),
          "b": st.booleans()}
records = st.lists(st.fixed_dictionaries({}, optional={k: st.none() | v for k, v in VALUES.items()}),
                   min_size=1, max_size=30).filter(lambda rs: any(rs))


def _norm(value: object) -> object:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=records, target=st.integers(1, 300), data=st.data())
def test_pieces_hold_every_record_once_in_order(tmp_path: Path, rows: list[dict], target: int,
                                                data: st.DataObject) -> None:
    eol = data.draw(st.sampled_from(["\n", "\r\n"]))
    lines = []
    for row in rows:
        blank = [""] * data.draw(st.integers(0, 2))
        lines += blank + [json.dumps(row, ensure_ascii=data.draw(st.booleans()))]
    body = eol.join(lines) + (eol if data.draw(st.booleans()) else "")
    path = tmp_path / "t.jsonl"
    path.write_bytes(body.encode())
    source, fmt = LocalFileSource(path, name="t.jsonl"), TabularFormat(kind="jsonl")
    schema = infer_schema(source, fmt)
    pieces = list(plan_pieces(source, fmt, target))
    assert pieces[0].start == 0 and pieces[-1].end == source.size
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
    frames = [read_piece(source, fmt, p, schema) for p in pieces]
    assert all(f.dtypes.astype(str).to_dict() == schema.dtypes for f in frames)
    got = [[_norm(v) for v in r] for f in frames for r in f.itertuples(index=False)]
    assert got == [[_norm(row.get(name)) for name in schema.names] for row in rows]


def test_types_are_inferred_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('\ufeff{"id": 1, "when": "2024-05-01T10:00:00", "tags": ["a"], "ok": true}\n'
                    '{"id": null, "when": null, "tags": [], "ok": null}\n')
    source, fmt = LocalFileSource(path, name="t.jsonl"), TabularFormat(kind="jsonl")
    schema = infer_schema(source, fmt)
    assert schema.dtypes == {"id": "Int64", "when": "datetime64[us]", "tags": "object", "ok": "boolean"}
    frames = [read_piece(source, fmt, p, schema) for p in plan_pieces(source, fmt, 1)]
    assert [len(f) for f in frames] == [1, 1]
    assert frames[1]["id"].isna().all() and list(frames[0]["tags"][0]) == ["a"]


def test_a_value_that_does_not_fit_names_the_piece(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"n": 1}\n' * 10 + '{"n": 1.5}\n')
    source, fmt = LocalFileSource(path, name="t.jsonl"), TabularFormat(kind="jsonl")
    pieces = list(plan_pieces(source, fmt, 30))
    head = infer_schema(LocalFileSource(path, name="t.jsonl"), fmt)
    assert head.dtypes == {"n": "float64"}          # the sample saw 1.5: float for every piece
    int_schema = infer_schema(source, TabularFormat(kind="jsonl", column_types={"n": "int"}))
    with pytest.raises(TabularDataError, match=r"t\.jsonl piece 3 .*1\.5"):
        read_piece(source, fmt, pieces[-1], int_schema)


def test_a_key_not_in_the_schema_is_refused_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1}\n{"a": 2, "late": "x"}\n')
    source = LocalFileSource(path, name="t.jsonl")
    piece = list(plan_pieces(source, TabularFormat(kind="jsonl"), 9))[-1]
    first_line = TabularFormat(kind="jsonl")
    schema = infer_schema(source, first_line)
    assert schema.names == ["a", "late"]             # the sample has both; now pretend it had not
    narrow = infer_schema(LocalFileSource(_first(tmp_path), name="t.jsonl"), first_line)
    with pytest.raises(TabularDataError, match="column_types"):
        read_piece(source, first_line, piece, narrow)
    declared = infer_schema(LocalFileSource(_first(tmp_path), name="t.jsonl"),
                            TabularFormat(kind="jsonl", column_types={"late": "string"}))
    assert read_piece(source, first_line, piece, declared).to_dict("list") == {"a": [2], "late": ["x"]}


def _first(tmp_path: Path) -> Path:
    path = tmp_path / "first.jsonl"
    path.write_text('{"a": 1}\n')
    return path
