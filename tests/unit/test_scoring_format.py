"""PRS's append_row formatting of run() results."""

import pandas as pd
import pytest

from shared.scoring import format_rows


def test_list_results_are_str_of_each_element_per_line() -> None:
    assert format_rows(["a: 1", 2, None]) == ("a: 1\n2\nNone\n", 3)
    assert format_rows([]) == ("", 0)


def test_dataframe_results_are_space_separated_without_header_or_index() -> None:
    df = pd.DataFrame({"file": ["x.png", "y z.png"], "score": [0.5, 2]})
    text, n = format_rows(df)
    assert n == 2
    assert text.splitlines() == ['x.png 0.5', '"y z.png" 2.0']


def test_other_results_are_refused_with_a_clear_message() -> None:
    with pytest.raises(TypeError, match="must return a list or a pandas DataFrame, got dict"):
        format_rows({"a": 1})
