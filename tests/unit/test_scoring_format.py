"""PRS's append_row formatting of run() results, and the csv / jsonl output formats."""

import pandas as pd
import pytest

from shared.scoring.child import format_rows


def test_list_results_are_str_of_each_element_per_line() -> None:
    assert format_rows(["a: 1", 2, None]) == ("a: 1\n2\nNone\n", 3, "")
    assert format_rows([]) == ("", 0, "")


def test_dataframe_results_are_space_separated_without_header_or_index() -> None:
    df = pd.DataFrame({"file": ["x.png", "y z.png"], "score": [0.5, 2]})
    text, n, header = format_rows(df)
    assert n == 2 and header == ""
    assert text.splitlines() == ['x.png 0.5', '"y z.png" 2.0']


def test_csv_output_has_comma_rows_and_a_separate_header() -> None:
    df = pd.DataFrame({"id": [1, 2], "label": ["a,b", "c"]})
    assert format_rows(df, "csv") == ('1,"a,b"\n2,c\n', 2, "id,label\n")


def test_jsonl_output_has_one_object_per_row() -> None:
    df = pd.DataFrame({"id": [1, 2], "p": [0.25, 0.5]})
    assert format_rows(df, "jsonl") == ('{"id":1,"p":0.25}\n{"id":2,"p":0.5}\n', 2, "")
    assert format_rows(["a", 3], "jsonl") == ('"a"\n3\n', 2, "")


def test_other_results_are_refused_with_a_clear_message() -> None:
    with pytest.raises(TypeError, match="must return a list or a pandas DataFrame, got dict"):
        format_rows({"a": 1})
