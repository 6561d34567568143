"""TabularDataset jobs: CSV, Parquet and JSON Lines split by size, partitions, output formats."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shared.local.host import LocalHost
from shared.storage import Storage

from .conftest import output_rows, put_files, submit


def frame(n: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(start)
    ids = np.arange(start, start + n)
    return pd.DataFrame({"id": ids, "x": rng.normal(size=n).round(6),
                         "name": [f"row {i}, quoted" for i in ids],
                         "flag": ids % 3 == 0})


def echo(code: str, inputs: list, **extra) -> dict:
    return {"name": "tables", "entry_script": "table_echo.py", "source_directory": code,
            "inputs": inputs, "error_threshold": 0, **extra}


def check_ids_in_order(rows: list[str], n: int) -> set[str]:
    """Every id exactly once, in order; returns the distinct dtype signatures seen."""
    ids = [int(r.split(" ")[0]) for r in rows]
    assert ids == list(range(n))
    return {r.split(" ")[1] for r in rows}


def test_a_100000_row_csv_is_split_by_size_and_every_row_comes_back_once_in_order(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    df = frame(100_000)
    df.loc[5_000:5_010, "x"] = np.nan          # missing values in a later mini-batch only
    put_files(storage, "tab-csv", {"big/data.csv": df.to_csv(index=False).encode()})
    job_id = submit(api, echo(code, [{"path": "tab-csv/big/", "type": "tabular"}],
                              mini_batch_size="512KB"))
    host.drain(timeout_s=300)
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded", status
    assert status["mini_batches"]["total"] > 5          # one file, several mini-batches
    assert status["items"] == {"total": 100_000, "succeeded": 100_000, "failed": 0}
    assert len(check_ids_in_order(output_rows(storage, status), 100_000)) == 1   # same dtypes


def test_parquet_with_many_row_groups_and_with_one_are_both_split(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    for name, group_rows in (("many.parquet", 5_000), ("one.parquet", 60_000)):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(frame(60_000), preserve_index=False), buf,
                       row_group_size=group_rows)
        put_files(storage, "tab-parquet", {f"{name[:-8]}/{name}": buf.getvalue()})
    jobs = {name: submit(api, echo(code, [{"path": f"tab-parquet/{name}/", "type": "tabular"}],
                                   mini_batch_size="256KB")) for name in ("many", "one")}
    host.drain(timeout_s=300)
    for name, job_id in jobs.items():
        status = api.get(f"/api/jobs/{job_id}").json()
        assert status["state"] == "succeeded", status
        assert status["mini_batches"]["total"] > 3, name
        assert len(check_ids_in_order(output_rows(storage, status), 60_000)) == 1


def test_json_lines_and_several_files_never_share_a_mini_batch(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    files = {f"part{k}.jsonl": frame(300, start=300 * k).to_json(orient="records", lines=True).encode()
             for k in range(3)}
    put_files(storage, "tab-jsonl", files)
    job_id = submit(api, echo(code, [{"container": "tab-jsonl", "type": "tabular"}],
                              mini_batch_size="8KB"))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    rows = output_rows(storage, status)
    check_ids_in_order(rows, 900)
    batch_of = {int(r.split(" ")[0]): int(r.split(" ")[2]) for r in rows}
    for k in range(3):   # the ids of one file are in mini-batches no other file uses
        mine = {batch_of[i] for i in range(300 * k, 300 * (k + 1))}
        others = {b for i, b in batch_of.items() if not 300 * k <= i < 300 * (k + 1)}
        assert not mine & others


def test_partition_keys_make_one_mini_batch_per_key_combination(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    files, start = {}, 0
    for store in (1, 2):
        for brand in ("x", "y"):
            for part in (0, 1):
                files[f"sales/Store={store}/Brand={brand}/part{part}.csv"] = \
                    frame(50, start=start).to_csv(index=False).encode()
                start += 50
    put_files(storage, "tab-parts", files)
    job_id = submit(api, echo(code, [{"path": "tab-parts/sales/", "type": "tabular"}],
                              partition_keys=["Store", "Brand"], mini_batch_size="1KB"))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["mini_batches"]["total"] == 4
    rows = output_rows(storage, status)
    check_ids_in_order(rows, 400)
    combos = {(r.split(" ")[2], r.split(" ")[3], r.split(" ")[4]) for r in rows}
    assert combos == {("0", "1", "x"), ("1", "1", "y"), ("2", "2", "x"), ("3", "2", "y")}


def test_file_inputs_with_partition_format(host: LocalHost, api: httpx.Client, storage: Storage,
                                           code: str) -> None:
    put_files(storage, "tab-songs", {f"{u}/{s}/{g}.wav": b"x" for u in ("ann", "bob")
                                     for s in ("spring", "summer") for g in ("jazz",)})
    job_id = submit(api, {"name": "songs", "entry_script": "misbehave.py", "source_directory": code,
                          "arguments": ["--mode", "none"],
                          "inputs": [{"container": "tab-songs",
                                      "partition_format": "{user}/{season}/{genre}.wav"}],
                          "partition_keys": ["user", "season"]})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["mini_batches"]["total"] == 4 and status["items"]["succeeded"] == 4


def test_csv_output_has_one_header_and_jsonl_output_has_objects(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "tab-out", {"t.csv": frame(500).to_csv(index=False).encode()})
    spec = echo(code, [{"path": "tab-out/", "type": "tabular"}], mini_batch_size="4KB")
    as_csv = submit(api, {**spec, "output_format": "csv"})
    as_jsonl = submit(api, {**spec, "output_format": "jsonl"})
    host.drain()
    csv_rows = output_rows(storage, api.get(f"/api/jobs/{as_csv}").json())
    assert csv_rows[0] == "id,dtypes,batch" and len(csv_rows) == 501
    assert [int(r.split(",")[0]) for r in csv_rows[1:]] == list(range(500))
    objects = [json.loads(r) for r in output_rows(storage, api.get(f"/api/jobs/{as_jsonl}").json())]
    assert [o["id"] for o in objects] == list(range(500)) and set(objects[0]) == {"id", "dtypes", "batch"}


def test_a_value_that_does_not_fit_its_column_fails_its_mini_batch_naming_file_and_column(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    df = frame(40_000)   # beyond the 1 MiB the schema is inferred from
    text = df.to_csv(index=False).replace("\n39999,", "\noops,")
    put_files(storage, "tab-bad", {"t.csv": text.encode()})
    job_id = submit(api, echo(code, [{"path": "tab-bad/", "type": "tabular"}],
                              mini_batch_size="256KB", run_max_try=1, error_threshold=-1))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["mini_batches"]["failed"] == 1
    [error] = status["errors"]
    assert error["example"]["file"] == "t.csv" and "column 'id'" in error["message"]
    assert "oops" in error["message"]


def test_parquet_output_is_a_folder_of_ordered_parts_with_success_marker(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    put_files(storage, "tab-pq-out", {"t.csv": frame(3000).to_csv(index=False).encode()})
    job_id = submit(api, echo(code, [{"path": "tab-pq-out/", "type": "tabular"}],
                              mini_batch_size="32KB", output_format="parquet",
                              append_row_file_name="scores.txt"))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded"
    folder = f"{job_id}/scores.parquet/"
    container = storage.container(status["output"]["container"])
    names = sorted(b.name for b in container.list_blobs(name_starts_with=folder))
    parts = [n for n in names if n.endswith(".parquet")]
    assert folder + "_SUCCESS" in names and len(parts) == status["mini_batches"]["succeeded"] > 1
    table = pd.concat(pd.read_parquet(io.BytesIO(container.download_blob(n).readall())) for n in parts)
    assert table["id"].tolist() == list(range(3000))
    assert list(table.columns) == ["id", "dtypes", "batch"]


def test_delimited_options_header_separator_and_multi_line_fields(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    lines = [f'{i};"note {i}\nsecond line; with separator"' for i in range(400)]
    put_files(storage, "tab-opts", {"raw.txt": ("\n".join(lines) + "\n").encode("latin1")})
    job_id = submit(api, {"name": "opts", "entry_script": "frames_columns.py", "source_directory": code,
                          "inputs": [{"path": "tab-opts/", "type": "tabular", "format": {
                              "kind": "delimited", "separator": ";", "header": False,
                              "encoding": "latin1", "support_multi_line": True}}],
                          "mini_batch_size": "2KB", "error_threshold": 0})
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded" and status["mini_batches"]["total"] > 3
    rows = output_rows(storage, status)
    assert rows == [f"{i} Column1,Column2 2" for i in range(400)]   # every note kept its newline


def test_the_tabular_example_scores_the_breast_cancer_table(
        host: LocalHost, api: httpx.Client, storage: Storage, tmp_path) -> None:
    import importlib.util

    import yaml

    from shared.service.working import models, snapshots

    from .conftest import EXAMPLES

    spec_ = importlib.util.spec_from_file_location("make_data", EXAMPLES / "tabular" / "make_data.py")
    make_data = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(make_data)
    make_data.write_tables(tmp_path, formats=("csv",))
    [csv_file] = list(tmp_path.glob("*.csv"))
    truth = pd.read_csv(csv_file)
    put_files(storage, "tables", {f"breast-cancer/{csv_file.name}": csv_file.read_bytes()})
    models.register(storage, "breast-cancer", EXAMPLES / "tabular" / "model" / "breast_cancer.onnx")
    spec = yaml.safe_load((EXAMPLES / "tabular" / "job.yaml").read_text())
    spec["source_directory"] = snapshots.upload(storage, EXAMPLES / "tabular" / spec["source_directory"])
    job_id = submit(api, spec)
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded" and status["mini_batches"]["total"] >= 2
    rows = [r.split(" ") for r in output_rows(storage, status)]
    assert [int(r[0]) for r in rows] == truth["id"].tolist()
    accuracy = np.mean([int(r[1]) == label for r, label in zip(rows, truth["label"])])
    assert accuracy >= 0.93


def test_several_tabular_inputs_each_with_its_own_format_keep_input_order(
        host: LocalHost, api: httpx.Client, storage: Storage, code: str) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame(200, start=300), preserve_index=False), buf)
    put_files(storage, "tab-multi", {"a/first.csv": frame(300).to_csv(index=False).encode(),
                                     "b/second.bin": buf.getvalue()})
    job_id = submit(api, echo(code, [{"path": "tab-multi/a/", "type": "tabular"},
                                     {"path": "tab-multi/b/", "type": "tabular", "format": "parquet"}],
                              mini_batch_size="8KB"))
    host.drain()
    status = api.get(f"/api/jobs/{job_id}").json()
    assert status["state"] == "succeeded"
    check_ids_in_order(output_rows(storage, status), 500)
