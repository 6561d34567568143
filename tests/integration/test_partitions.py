"""partition_keys: exactly one mini-batch per combination of key values, whatever the listing order
and however many pages the listing takes, also when planner steps die and run again."""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared.local.azurite import Azurite
from shared.local.faultproxy import FaultyProxy
from shared.local.host import LocalHost, load_app
from shared.messages import PlanMessage
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger import rows, store
from shared.service.ledger.store import Ledger
from shared.service.planning import planner
from shared.settings import Settings, azurite_connection_string
from shared.spec import InputSpec
from shared.storage import Storage

from .conftest import output_rows, put_files

USERS = ("u1", "u2", "u3")
SEASONS = ("fall", "spring", "summer", "winter")
GENRES = ("jazz", "piano", "rock")


def songs(root: str = "") -> list[str]:
    """Blob names whose listing interleaves the combinations of (user, genres): a user's genres
    repeat in every season's folder. u1 has "blues" in winter only (first seen late), u3 has no
    rock in spring."""
    names = [f"{root}{u}/{s}/{g}.wav" for u in USERS for s in SEASONS for g in GENRES
             if not (u == "u3" and s == "spring" and g == "rock")]
    return sorted(names + [f"{root}u1/winter/blues.wav"])


def expected(names: list[str], root: str = "") -> list[tuple[str, list[str]]]:
    """(user/genres, its files in listing order), the combinations in order of first appearance."""
    combos: dict[str, list[str]] = {}
    for name in names:
        user, _, file = name[len(root):].split("/")
        combos.setdefault(f"user={user},genres={file[:-4]}", []).append(name)
    return list(combos.items())


def paged(settings: Settings, page_size: int) -> Storage:
    storage = Storage(dataclasses.replace(settings, plan_page_size=page_size))
    storage.ensure()
    return storage


def song_job(code: str, inputs: list, **extra: Any) -> dict:
    return {"name": "songs", "entry_script": "partition_echo.py", "source_directory": code,
            "inputs": inputs, "partition_keys": ["user", "genres"], "error_threshold": 0, **extra}


def plan_steps(storage: Storage, ledger: Ledger, before_each: Callable[[int], None] | None = None,
               twice: bool = False) -> int:
    """Run the job's plan messages by hand, each until it returns (a step that raised - a planner
    that died - runs again on the same message); ``twice``: each step's message is handled a
    second time, as when the queue delivers it again. Returns the steps run."""
    queue = storage.queue(storage.settings.plan_queue)
    steps: list[int] = []
    while msgs := list(queue.receive_messages(max_messages=1)):
        msg = PlanMessage.from_json(msgs[0].content)
        if before_each:
            before_each(msg.step)
        for _ in range(50):
            try:
                planner.plan_step(storage, ledger, msg)
                break
            except Died:
                continue
        if twice and msg.step not in steps:
            planner.plan_step(storage, ledger, msg)
        queue.delete_message(msgs[0])
        steps.append(msg.step)
    return sorted(set(steps))


class Died(Exception):
    """A planner step that died here."""


def run_job(storage: Storage, ledger: Ledger, job_id: str) -> dict:
    with LocalHost(load_app(), storage.settings, lease_s=10) as host:
        host.drain(timeout_s=120)
    return jobs.status(storage, ledger, job_id)


def check_batches(storage: Storage, ledger: Ledger, job_id: str, status: dict,
                  want: list[tuple[str, list[str]]]) -> None:
    """One mini-batch per combination, in order of first appearance, each with exactly its files;
    the output rows show each file once, in its combination's mini-batch."""
    assert status["state"] == "succeeded", status
    assert status["mini_batches"]["total"] == len(want)
    batches = [[name for _, name in b.items] for b in ledger.batches(job_id)]
    assert batches == [files for _, files in want]
    rows = [row.split(" ") for row in output_rows(storage, status)]
    by_batch: dict[int, list[str]] = defaultdict(list)
    values: dict[int, set[str]] = defaultdict(set)
    for index, combo, name in rows:
        by_batch[int(index)].append(name)
        values[int(index)].add(combo)
    assert len(rows) == sum(len(files) for _, files in want)
    assert [(values[i].pop(), by_batch[i]) for i in range(len(want))] == want


def partition_rows(storage: Storage, job_id: str) -> dict[str, int]:
    """The job's planning rows by kind: seen, order, continuation."""
    rows = storage.ledger.query_entities("PartitionKey eq @pk and RowKey ge 'p' and RowKey lt 'q'",
                                         parameters={"pk": job_id}, select=["RowKey"])
    kinds: dict[str, int] = defaultdict(int)
    for row in rows:
        kinds[row["RowKey"][:2]] += 1
    return dict(kinds)


def test_interleaved_combinations_over_several_pages_make_one_mini_batch_each(
        settings: Settings, code: str) -> None:
    storage = paged(settings, 5)
    names = songs()
    put_files(storage, "part-songs", dict.fromkeys(names, b"x"))
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, song_job(code, [{"container": "part-songs", "name": "songs",
                                                        "partition_format": "{user}/{season}/{genres}.wav"}]))
    status = run_job(storage, ledger, job.job_id)
    want = expected(names)
    assert len(want) == 10 and len(names) == 36    # 36 files listed 5 at a time: 8 pages
    check_batches(storage, ledger, job.job_id, status, want)


def test_a_partition_format_that_carries_the_input_s_prefix(settings: Settings, code: str) -> None:
    storage = paged(settings, 7)
    names = songs("dataset_partition_test/")
    put_files(storage, "part-prefix", dict.fromkeys(names, b"x") | {"other/u1/fall/x.wav": b"x"})
    ledger = Ledger(storage.ledger)
    # as PRS: Dataset.File.from_files((datastore, "dataset_partition_test/*/*/*.wav"),
    #                                 partition_format="dataset_partition_test/{user}/{season}/{genres}.wav")
    job = jobs.submit(storage, ledger, song_job(code, [{
        "path": "part-prefix/dataset_partition_test/*/*/*.wav", "name": "songs",
        "partition_format": "dataset_partition_test/{user}/{season}/{genres}.wav"}]))
    status = run_job(storage, ledger, job.job_id)
    check_batches(storage, ledger, job.job_id, status, expected(names, "dataset_partition_test/"))


def test_planner_steps_that_die_midway_and_duplicate_messages_lose_and_double_nothing(
        settings: Settings, code: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = paged(settings, 5)
    names = songs()
    put_files(storage, "part-dies", dict.fromkeys(names, b"x"))
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, song_job(code, [{"container": "part-dies", "name": "songs",
                                                        "partition_format": "{user}/{season}/{genres}.wav"}]))
    died: list[str] = []
    step = [0]
    real_merge, real_put = getattr(Ledger, "merge_rows", None), Ledger.put_batches

    def merge_rows(self: Ledger, entities: list) -> None:
        if step[0] == 1 and "seen" not in died:          # after its "seen" rows, before the rest
            died.append("seen")
            raise Died()
        assert real_merge is not None
        real_merge(self, entities)
        if step[0] == 3 and "rows" not in died:          # after its first rows
            died.append("rows")
            raise Died()

    def put_batches(self: Ledger, rows: list) -> None:
        real_put(self, rows)
        if rows and "cut" not in died:       # phase 2: rows written, the cursor not moved
            died.append("cut")
            raise Died()

    def before_each(n: int) -> None:
        step[0] = n

    monkeypatch.setattr(Ledger, "merge_rows", merge_rows, raising=False)
    monkeypatch.setattr(Ledger, "put_batches", put_batches)
    monkeypatch.setattr(planner, "WRITE_CONCURRENCY", 1)    # one transaction after another
    # so a step writes several: looked up by rows.transaction_chunks and by Ledger.see_partitions
    monkeypatch.setattr(rows, "TRANSACTION_OPS", 3, raising=False)
    monkeypatch.setattr(store, "TRANSACTION_OPS", 3, raising=False)
    steps = plan_steps(storage, ledger, before_each, twice=True)
    monkeypatch.undo()
    status = run_job(storage, ledger, job.job_id)
    check_batches(storage, ledger, job.job_id, status, expected(names))
    assert partition_rows(storage, job.job_id) == {"ps": 10, "po": 10, "pc": 15}
    assert died == ["seen", "rows", "cut"]
    assert len(steps) > 8                 # 8 pages, then the steps that cut the mini-batches


def test_transactions_whose_answers_were_lost_still_record_each_combination_once(
        azurite: Azurite, settings: Settings, code: str) -> None:
    """The "seen" rows' creates landed and their answers were lost: the SDK's retry finds them
    (409), and the step takes them as its own."""
    with FaultyProxy(azurite.table_port) as proxy:
        blob, queue, _ = azurite.ports
        behind = dataclasses.replace(settings, plan_page_size=5, connection_string=(
            azurite_connection_string(blob, queue, proxy.port)))
        storage = Storage(behind)
        storage.ensure()
        names = songs()
        put_files(storage, "part-lost", dict.fromkeys(names, b"x"))
        ledger = Ledger(storage.ledger)
        job = jobs.submit(storage, ledger, song_job(code, [{"container": "part-lost", "name": "songs",
                                                            "partition_format": "{user}/{season}/{genres}.wav"}]))

        def lose_batches(n: int) -> None:      # every step's first two transactions
            proxy.lose_answers(lambda m, path: m == "POST" and "$batch" in path, count=2)

        plan_steps(storage, ledger, lose_batches)
        assert proxy.counts["answer lost"] >= 16
        status = run_job(storage, ledger, job.job_id)
    check_batches(storage, ledger, job.job_id, status, expected(names))
    assert partition_rows(storage, job.job_id) == {"ps": 10, "po": 10, "pc": 15}


@pytest.mark.parametrize("seed,page_size,budget", [(1, 1, 1), (2, 3, 2), (3, 7, 5), (4, 50, 1000)])
def test_any_listing_order_and_page_size_gives_one_row_per_combination(
        storage: Storage, seed: int, page_size: int, budget: int) -> None:
    """The two phases on the ledger alone: items in a random order, cut into pages; the rows
    cut afterwards hold each combination once, with its items in listing order."""
    from shared.service.planning import partitions
    rng = random.Random(seed)
    combos = [f"k{i}/v{j}" for i in range(4) for j in range(3)]
    items = [[0, f"{rng.choice(combos)}/f{n:03d}.txt"] for n in range(60)]
    rng.shuffle(items)
    inputs = [InputSpec(container="any", partition_format="{a}/{b}/{file}.txt")]
    ledger = Ledger(storage.ledger)
    job_id = f"prop{seed}"
    pool = planner._writers
    for page, start in enumerate(range(0, len(items), page_size)):
        found = partitions.combinations(items[start:start + page_size], inputs, ["a", "b"])
        partitions.record_page(ledger, job_id, page, found, pool, 2)
        if page % 3 == 0:                 # some pages recorded twice, as by a step run again
            partitions.record_page(ledger, job_id, page, found, pool, 2)
    cut: list[list[list[Any]]] = []
    after, done = "", False
    while not done:
        batches, after, done = partitions.next_batches(ledger, job_id, after, budget, pool, inputs)
        cut.extend(batches)
    want: dict[str, list[list[Any]]] = {}
    for item in items:
        want.setdefault(item[1].rsplit("/", 1)[0], []).append(item)
    assert cut == list(want.values())


def frame(n: int, start: int) -> pd.DataFrame:
    ids = np.arange(start, start + n)
    return pd.DataFrame({"id": ids, "x": (ids * 0.5).round(2)})


def test_tables_whose_partitions_interleave_make_one_mini_batch_each(
        settings: Settings, code: str) -> None:
    storage = paged(settings, 2)
    files, ids = {}, defaultdict(list)
    start = 0
    for shop in (1, 2, 3):
        for brand in ("x", "y"):
            files[f"sales/Store={shop}/Brand={brand}/part.csv"] = frame(30, start).to_csv(index=False).encode()
            ids[brand] += list(range(start, start + 30))
            start += 30
    put_files(storage, "part-tables", files)
    ledger = Ledger(storage.ledger)
    job = jobs.submit(storage, ledger, {
        "name": "tables", "entry_script": "table_echo.py", "source_directory": code,
        "inputs": [{"path": "part-tables/sales/", "type": "tabular"}], "error_threshold": 0,
        "partition_keys": ["Brand"], "mini_batch_size": "256"})     # several pieces per file
    status = run_job(storage, ledger, job.job_id)
    assert status["state"] == "succeeded", status
    assert status["mini_batches"]["total"] == 2
    assert status["items"]["total"] == status["items"]["succeeded"] == 180
    by_brand: dict[str, list[int]] = defaultdict(list)
    batch_of: dict[str, set[str]] = defaultdict(set)
    for row in output_rows(storage, status):     # id, dtypes, batch, Brand
        ident, _, batch, brand = row.split(" ")
        by_brand[brand].append(int(ident))
        batch_of[brand].add(batch)
    assert by_brand == {"x": ids["x"], "y": ids["y"]}
    assert batch_of == {"x": {"0"}, "y": {"1"}}
