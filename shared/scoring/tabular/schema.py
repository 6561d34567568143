"""The columns and types every mini-batch of an input is read with (:class:`Schema`), and the one
conversion from Arrow to pandas (:func:`to_frame`).

The dtype policy. A schema is inferred once, from the first file of an input (the first 1 MiB of its
records for text, the file schema for Parquet), then every piece of every file is *read with* it:
text is parsed straight into the schema's Arrow types, Parquet columns are cast to them. Inferred
types are widened so that later pieces still fit:

============================  ===================  ==============================================
inferred (Arrow)              read as (Arrow)      pandas dtype
============================  ===================  ==============================================
any integer (text)            int64                ``Int64`` (nullable: a later gap stays a gap)
intN / uintN (Parquet)        the same             ``IntN`` / ``UIntN`` (nullable)
floating                      float64 (text)       ``float64`` (a gap is NaN)
bool                          bool                 ``boolean`` (nullable)
string, or null everywhere    string               ``object`` (str values; a gap is NaN)
date or timestamp (text)      timestamp[us] (ns    ``datetime64[us]`` (``[us, tz]`` when the
                              if the sample has    sample has an offset)
                              nanoseconds)
timestamp / duration (Pq.)    the same             ``datetime64[unit(, tz)]`` / ``timedelta64``
dictionary (Parquet)          its value type       as the value type (never ``category``, whose
                                                   dtype would differ piece by piece)
anything else                 the same             ``object``
============================  ===================  ==============================================

A later value that does not fit its column (``"abc"`` in an ``Int64`` column, ``1.5`` in JSON
inferred as an integer) is never coerced silently: reading that piece raises
:class:`~shared.scoring.tabular.formats.TabularDataError` naming the file, the piece, the column and the
value. The submitter then declares the column's type (``column_types``), which overrides inference.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from shared.scoring.tabular.formats import TabularDataError

_DECLARED: dict[str, pa.DataType] = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
                                     "string": pa.string(), "datetime": pa.timestamp("us")}
_INDEX_COLUMN = re.compile(r"^__index_level_\d+__$")   # pandas' index, stored by to_parquet


@dataclass(frozen=True)
class Schema:
    """Column names and the Arrow types they are read as; ``dtypes`` are the pandas dtypes."""

    arrow: pa.Schema

    @property
    def names(self) -> list[str]:
        return list(self.arrow.names)

    @property
    def dtypes(self) -> dict[str, str]:
        return {f.name: pandas_dtype(f.type) for f in self.arrow}

    def to_dict(self) -> dict[str, Any]:
        """Readable columns, plus the Arrow schema (IPC, base64) that :meth:`from_dict` reads."""
        return {"columns": [{"name": f.name, "dtype": pandas_dtype(f.type), "arrow": str(f.type)}
                            for f in self.arrow],
                "arrow_schema": base64.b64encode(self.arrow.serialize().to_pybytes()).decode("ascii")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schema:
        try:
            raw = base64.b64decode(data["arrow_schema"])
            return cls(pa.ipc.read_schema(pa.py_buffer(raw)))
        except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
            raise TabularDataError(f"malformed schema: {exc}") from exc


def pandas_dtype(t: pa.DataType) -> str:
    """The pandas dtype a column of Arrow type ``t`` has in every mini-batch."""
    if pa.types.is_integer(t):
        return f"{'U' if pa.types.is_unsigned_integer(t) else ''}Int{t.bit_width}"
    if pa.types.is_floating(t):
        return f"float{t.bit_width}"
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_timestamp(t):
        return f"datetime64[{t.unit}, {t.tz}]" if t.tz else f"datetime64[{t.unit}]"
    if pa.types.is_duration(t):
        return f"timedelta64[{t.unit}]"
    return "object"


def _widen_inferred(t: pa.DataType) -> pa.DataType:
    """Text inference (CSV, JSON) to the type every piece is read with (see the module table)."""
    if pa.types.is_signed_integer(t):
        return pa.int64()
    if pa.types.is_floating(t):
        return pa.float64()
    if pa.types.is_null(t) or pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_date(t):
        return pa.timestamp("us")
    if pa.types.is_timestamp(t):
        return pa.timestamp("ns" if t.unit == "ns" else "us", t.tz)
    return t


def _widen_file(t: pa.DataType) -> pa.DataType:
    """A Parquet file's type to the type every piece is read with."""
    if pa.types.is_dictionary(t):
        return _widen_file(t.value_type)
    if pa.types.is_null(t) or pa.types.is_large_string(t) or _is_string_view(t):
        return pa.string()
    return t


def _is_string_view(t: pa.DataType) -> bool:
    """``string_view`` columns (pyarrow 16 and later; a job's environment may pin an older one)."""
    check = getattr(pa.types, "is_string_view", None)
    return bool(check(t)) if check is not None else False


def from_inferred(inferred: pa.Schema, declared: Mapping[str, str], where: str,
                  from_file: bool = False) -> Schema:
    """The schema to read with, from a parsed sample's or a file's schema and declared types."""
    names = inferred.names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TabularDataError(f"{where}: duplicate column name(s) {', '.join(map(repr, duplicates))}")
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise TabularDataError(f"{where}: column_types names column(s) the file does not have: "
                               f"{', '.join(map(repr, unknown))} (columns: {', '.join(names)})")
    widen = _widen_file if from_file else _widen_inferred
    out = [pa.field(f.name, _DECLARED[declared[f.name]] if f.name in declared else widen(f.type))
           for f in inferred if not (from_file and _INDEX_COLUMN.match(f.name))]
    return Schema(pa.schema(out))


def to_frame(table: pa.Table, schema: Schema, where: str) -> pd.DataFrame:
    """``table`` (columns already in schema order) as a DataFrame with exactly the schema's dtypes."""
    if table.schema.names != schema.names:
        raise TabularDataError(f"{where}: columns {table.schema.names} differ from the input's "
                               f"schema {schema.names}")
    columns = []
    for column, target in zip(table.columns, schema.arrow, strict=True):
        if column.type != target.type:
            try:
                column = column.cast(target.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise TabularDataError(f"{where}: column {target.name!r} cannot be read as "
                                       f"{pandas_dtype(target.type)} ({target.type}): {exc}; declare "
                                       f"its type in column_types") from None
        columns.append(column)
    table = pa.Table.from_arrays(columns, schema=schema.arrow)
    frame = table.to_pandas(types_mapper=_nullable, ignore_metadata=True)
    for name, dtype in schema.dtypes.items():
        if str(frame[name].dtype) != dtype:
            frame[name] = frame[name].astype(dtype)
    return frame


def _nullable(t: pa.DataType) -> Any:
    """Arrow -> pandas extension dtypes: integers and booleans keep their gaps (no float64/object)."""
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return pd.api.types.pandas_dtype(pandas_dtype(t))
    return None
