"""The dtype policy (one schema for every piece), and the JSON forms of formats, pieces, schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from shared.errors import SubmitterError
from shared.scoring.tabular import (
    LocalFileSource,
    Piece,
    Schema,
    TabularDataError,
    TabularFormat,
    infer_schema,
    pandas_dtype,
    plan_pieces,
    read_piece,
    text,
)


def _csv(tmp_path: Path, body: str, name: str = "t.csv") -> LocalFileSource:
    path = tmp_path / name
    path.write_text(body)
    return LocalFileSource(path, name=name)


def _frames(source: LocalFileSource, fmt: TabularFormat, target: int,
            schema: Schema | None = None) -> list[pd.DataFrame]:
    schema = schema or infer_schema(source, fmt)
    return [read_piece(source, fmt, p, schema) for p in plan_pieces(source, fmt, target)]


def test_gaps_in_a_later_piece_keep_the_first_pieces_dtypes(tmp_path: Path) -> None:
    rows = [f"{i},{i % 2 == 0},{i}.5,2024-01-{i % 28 + 1:02d}" for i in range(50)]
    rows += [",,,"] * 5 + ["7,true,1.0,2024-02-01"]
    source = _csv(tmp_path, "n,b,x,d\n" + "\n".join(rows) + "\n")
    frames = _frames(source, TabularFormat(), 200)
    assert len(frames) > 3 and frames[-1]["n"].isna().sum() == 5 and not frames[0]["n"].isna().any()
    want = {"n": "Int64", "b": "boolean", "x": "float64", "d": "datetime64[us]"}
    assert all(f.dtypes.astype(str).to_dict() == want for f in frames)
    assert frames[-1]["n"].tolist()[-1] == 7


def test_a_value_that_does_not_fit_names_file_piece_column_and_value(tmp_path: Path) -> None:
    source = _csv(tmp_path, "id,v\n" + "".join(f"{i},{i}\n" for i in range(100)) + "oops,1\n")
    fmt = TabularFormat()
    sample = _csv(tmp_path, "id,v\n1,2\n", name="first.csv")   # the schema comes from a first file
    schema = infer_schema(sample, fmt)
    named = r"t\.csv piece \d+ \(bytes \d+-\d+\): column 'id'.*'oops'"
    with pytest.raises(TabularDataError, match=named) as err:
        _frames(source, fmt, 100, schema)
    assert isinstance(err.value, ValueError) and isinstance(err.value, SubmitterError)
    declared = TabularFormat(column_types={"id": "string"})
    frames = _frames(source, declared, 100, infer_schema(sample, declared))
    assert pd.concat(frames)["id"].tolist()[-1] == "oops"


def test_inference_reads_only_the_first_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text, "SAMPLE_BYTES", 64)
    source = _csv(tmp_path, "a\n" + "1\n" * 100 + "x\n")
    assert infer_schema(source, TabularFormat()).dtypes == {"a": "Int64"}


def test_all_missing_in_the_sample_reads_as_strings(tmp_path: Path) -> None:
    source = _csv(tmp_path, "a,b\n1,\n2,\n")
    schema = infer_schema(source, TabularFormat())
    assert schema.dtypes == {"a": "Int64", "b": "object"}
    frame = _frames(source, TabularFormat(), 100)[0]
    assert frame["b"].isna().all()
    kept = _frames(source, TabularFormat(empty_as_string=True), 100)[0]
    assert kept["b"].tolist() == ["", ""]


def test_timestamps_with_an_offset_keep_it(tmp_path: Path) -> None:
    source = _csv(tmp_path, "t\n2024-01-01T00:00:00Z\n2024-01-01T00:00:00.123456789Z\n")
    schema = infer_schema(source, TabularFormat())
    assert schema.dtypes == {"t": "datetime64[ns, UTC]"}


@pytest.mark.parametrize("arrow,dtype", [
    (pa.int8(), "Int8"), (pa.uint64(), "UInt64"), (pa.float32(), "float32"), (pa.bool_(), "boolean"),
    (pa.string(), "object"), (pa.timestamp("ms", "Europe/Paris"), "datetime64[ms, Europe/Paris]"),
    (pa.duration("s"), "timedelta64[s]"), (pa.date32(), "object"), (pa.list_(pa.int64()), "object"),
])
def test_pandas_dtypes_of_arrow_types(arrow: pa.DataType, dtype: str) -> None:
    assert pandas_dtype(arrow) == dtype


def test_schema_round_trips_through_json(tmp_path: Path) -> None:
    source = _csv(tmp_path, "a,b,c\n1,x,2024-01-01\n")
    schema = infer_schema(source, TabularFormat())
    data = json.loads(json.dumps(schema.to_dict()))
    assert Schema.from_dict(data) == schema
    assert [c["dtype"] for c in data["columns"]] == ["Int64", "object", "datetime64[us]"]
    with pytest.raises(TabularDataError, match="malformed schema"):
        Schema.from_dict({"columns": []})


def test_format_round_trips_and_refuses_unknown_fields() -> None:
    fmt = TabularFormat(separator="\t", support_multi_line=True, column_types={"a": "int"})
    data = json.loads(json.dumps(fmt.to_dict()))
    assert data == {"kind": "delimited", "separator": "\t", "support_multi_line": True,
                    "column_types": {"a": "int"}}
    assert TabularFormat.from_dict(data) == fmt
    assert TabularFormat.from_dict({"kind": "parquet"}) == TabularFormat(kind="parquet")
    with pytest.raises(TabularDataError, match="unknown field.*delimiter"):
        TabularFormat.from_dict({"delimiter": ";"})
    with pytest.raises(TabularDataError, match="separator.*column_types.a.*'number'"):
        TabularFormat(separator="ab", column_types={"a": "number"})


def test_pieces_are_small_json() -> None:
    pieces = [Piece("data/part-1.csv", "delimited", 3, 100, 2000, (3, 40), est_bytes=1900),
              Piece("p.parquet", "parquet", 0, row_groups=(4,), row_offset=500, row_count=250, est_bytes=9)]
    for piece in pieces:
        text_form = json.dumps(piece.to_dict(), separators=(",", ":"))
        assert len(text_form) < 120
        assert Piece.from_dict(json.loads(text_form)) == piece
    with pytest.raises(TabularDataError, match="malformed piece"):
        Piece.from_dict({"kind": "parquet"})


def test_a_piece_must_match_its_source_and_format(tmp_path: Path) -> None:
    source = _csv(tmp_path, "a\n1\n")
    piece = next(plan_pieces(source, TabularFormat(), 10))
    schema = infer_schema(source, TabularFormat())
    with pytest.raises(TabularDataError, match="cannot be read as jsonl"):
        read_piece(source, TabularFormat(kind="jsonl"), piece, schema)
    with pytest.raises(TabularDataError, match="other.csv"):
        read_piece(_csv(tmp_path, "a\n1\n", name="other.csv"), TabularFormat(), piece, schema)


@pytest.mark.parametrize("target", [0, -1, 1.5, True])
def test_target_must_be_a_positive_number_of_bytes(tmp_path: Path, target: object) -> None:
    with pytest.raises(ValueError, match="target_bytes"):
        plan_pieces(_csv(tmp_path, "a\n1\n"), TabularFormat(), target)  # type: ignore[arg-type]
