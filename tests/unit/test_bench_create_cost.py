"""The harness's probe of what a file create costs in the scratch folder."""

from pathlib import Path

from bench.e2e import file_create_cost_us


def test_the_probe_measures_creates_and_leaves_nothing_behind(tmp_path: Path) -> None:
    cost = file_create_cost_us(tmp_path, files=50)
    assert cost > 0
    assert list(tmp_path.iterdir()) == []
