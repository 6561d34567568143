"""The fast text of numeric frames is exactly what pandas' to_csv writes, or is not used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared.scoring.child import format_rows
from shared.scoring.textrows import numeric_frame_text

DTYPES = [np.dtype(t) for t in ("float64", "float32", "int64", "int32", "uint8", "uint64", "bool")]


def column(dtype: np.dtype, n: int) -> st.SearchStrategy[np.ndarray]:
    if dtype.kind == "f":
        # any float: NaN, infinities, -0.0, subnormals, huge and tiny values, integral values
        width = dtype.itemsize * 8
        as_dtype = dtype.type
        return hnp.arrays(dtype, n, elements=st.one_of(
            st.floats(width=width, allow_nan=True, allow_infinity=True),
            st.integers(-10**6, 10**6).map(float),
            st.floats(1e-5, 1e-3).map(lambda x: float(as_dtype(x))),      # around the 1e-4 edge
            st.floats(1e13, 1e17).map(lambda x: float(as_dtype(x)))))     # around 1e15 and 1e16
    return hnp.arrays(dtype, n)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 30))
    dtypes = draw(st.lists(st.sampled_from(DTYPES), min_size=1, max_size=4))
    return pd.DataFrame({f"c{i}": draw(column(d, n)) for i, d in enumerate(dtypes)})


@settings(max_examples=400, deadline=None)
@given(frames(), st.sampled_from([" ", ",", "\t", "|"]))
def test_numeric_frames_are_written_exactly_as_pandas_writes_them(frame: pd.DataFrame,
                                                                   sep: str) -> None:
    fast = numeric_frame_text(frame, sep)
    expected = frame.to_csv(sep=sep, header=False, index=False).encode()
    if fast is not None:
        assert fast == expected


def test_a_million_random_probabilities_and_ids_match_pandas() -> None:
    rng = np.random.default_rng(7)
    n = 200_000
    frame = pd.DataFrame({"id": np.arange(n), "prediction": rng.integers(0, 2, n),
                          "probability": np.round(rng.random(n), 6),
                          "score": rng.normal(0, 1e3, n).astype(np.float32),
                          "wide": rng.standard_cauchy(n) * 10.0 ** rng.integers(-8, 18, n)})
    frame.loc[::97, "wide"] = np.nan
    fast = numeric_frame_text(frame, " ")
    assert fast is not None
    assert fast == frame.to_csv(sep=" ", header=False, index=False).encode()


@pytest.mark.parametrize("frame", [
    pd.DataFrame({"name": ["a b", "c"]}),                                  # may need quoting
    pd.DataFrame({"x": pd.array([1, None], dtype="Int64")}),               # nullable
    pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-01-02"])}),     # dates
    pd.DataFrame({"c": pd.Categorical(["a", "b"])}),
    pd.DataFrame({"x": [1.5, np.nan]}),                                    # one column, missing: ""
    pd.DataFrame({"x": np.array([1.5, 2.5], dtype=np.float16)}),
    pd.DataFrame({"x": []}, dtype=float),
])
def test_other_frames_fall_back_to_pandas(frame: pd.DataFrame) -> None:
    assert numeric_frame_text(frame, " ") is None
    text, n, _ = format_rows(frame, "text")
    assert (text.decode() if isinstance(text, bytes) else text) == \
        frame.to_csv(sep=" ", header=False, index=False)
    assert n == len(frame)


def test_format_rows_uses_the_fast_text_for_text_and_csv_outputs() -> None:
    frame = pd.DataFrame({"id": [1, 2], "p": [0.25, 1.0], "ok": [True, False]})
    text, n, header = format_rows(frame, "text")
    assert (text, n, header) == (b"1 0.25 True\n2 1.0 False\n", 2, "")
    text, n, header = format_rows(frame, "csv")
    assert (text, n, header) == (b"1,0.25,True\n2,1.0,False\n", 2, "id,p,ok\n")
