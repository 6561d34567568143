"""Tables at scale (bench/tables_scale.py): the generated table, and a job's fixed cost from its
timeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bench import tables_scale, workloads
from examples.tabular import make_data


def test_the_generated_table_looks_like_the_data_set_and_any_slice_is_its_own() -> None:
    table = workloads.scale_table(1_000, 3_000).to_pandas()
    assert list(table.columns) == list(make_data.COLUMNS)
    assert table["id"].tolist() == list(range(1_000, 3_000))
    base = make_data.make_frame(0, 569)
    rows = table["id"].to_numpy() % 569
    assert (table["label"].to_numpy() == base["label"].to_numpy()[rows]).all()
    ratio = table["mean_area"].to_numpy() / base["mean_area"].to_numpy()[rows]
    assert ratio.min() > 0.97 and ratio.max() < 1.03               # jittered by at most ~2 %
    _, _, decimals = make_data._base()
    for j, name in enumerate(make_data.FEATURE_COLUMNS):            # rounded like the data set
        scaled = table[name].to_numpy() * 10.0 ** decimals[j]
        assert np.allclose(scaled, np.rint(scaled)), name
    again = workloads.scale_table(1_000, 3_000).to_pandas()
    pd.testing.assert_frame_equal(table, again)


def test_files_of_each_format_hold_the_same_rows(tmp_path: Path) -> None:
    written = workloads.write_scale_tables(tmp_path, 2_500, 1_000)
    assert [p.name for p in written["csv"]] == [f"breast_cancer_{k:05d}.csv" for k in range(3)]
    first = written["csv"][0].read_text().splitlines()[0]
    assert first == ",".join(make_data.COLUMNS)                     # a plain header, no quotes
    csv = pd.concat([pd.read_csv(p) for p in written["csv"]], ignore_index=True)
    parquet = pd.concat([pq.read_table(p).to_pandas() for p in written["parquet"]], ignore_index=True)
    assert csv["id"].tolist() == list(range(2_500))
    pd.testing.assert_frame_equal(csv, parquet)
    assert [tables_scale.workloads_rows(p, "csv") for p in written["csv"]] == [1_000, 1_000, 500]
    assert [tables_scale.workloads_rows(p, "parquet") for p in written["parquet"]] == [1_000, 1_000, 500]


def test_the_fixed_cost_is_the_time_beyond_the_rows_at_the_steady_rate() -> None:
    job = {"seconds": 4.0, "timeline": {"first_try_started": 0.7, "first_settled": 1.0,
                                        "last_settled": 3.9, "done": 4.0, "steady_items_per_s": 400_000}}
    fixed = tables_scale.fixed_cost(job, 1_000_000)
    assert fixed["steady_work_s"] == pytest.approx(2.5)
    assert fixed["fixed_s"] == pytest.approx(1.5)
    assert fixed["to_first_try_s"] == pytest.approx(0.7)
    assert fixed["first_try_s"] == pytest.approx(0.3)
    assert fixed["last_settle_to_done_s"] == pytest.approx(0.1)
    assert tables_scale.fixed_cost({"seconds": 1.0, "timeline": {}}, 10)["fixed_s"] is None


def test_piece_sizes_are_read_as_the_spec_reads_them() -> None:
    assert tables_scale.size_bytes("10MB") == 10 * 1024 * 1024
    assert tables_scale.size_bytes("64kb") == 64 * 1024
    assert tables_scale.size_bytes("1GB") == 1 << 30
    assert tables_scale.size_bytes("5000") == 5000


def test_a_run_stops_before_it_fills_memory(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="GB free"):
        tables_scale.check_space(tmp_path, 1 << 60)
    tables_scale.check_space(tmp_path, 1)
