"""Entity-group transactions written and read by :mod:`shared.service.ledger.transactions` give
the SDK's answers and errors, against a real Azurite, and survive a lost answer."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from azure.core import MatchConditions
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.local.azurite import Azurite, azurite_connection_string
from shared.local.faultproxy import FaultyProxy
from shared.service.ledger import transactions
from shared.service.ledger.rows import BatchRow, Totals
from shared.service.ledger.store import Ledger
from shared.settings import Settings
from shared.states import BatchState
from shared.storage import Storage

MERGE = {"mode": UpdateMode.MERGE}
REPLACE = {"mode": UpdateMode.REPLACE}


def seeded(storage: Storage, name: str) -> tuple[TableClient, dict[str, str]]:
    storage.table_service.create_table(name)
    table = storage.table(name)
    etags = {}
    for key in ("a", "b", "o'neil"):
        etags[key] = table.upsert_entity({"PartitionKey": "p", "RowKey": key, "n": 1, "s": "old"})["etag"]
    return table, etags


def if_match(etag: str) -> dict[str, Any]:
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


# each case: the operations, given the seeded rows' etags (one of them stale where it must fail)
CASES = {
    "create, merge on etag, replace, upsert": lambda e: [
        ("create", {"PartitionKey": "p", "RowKey": "new", "n": 5, "f": 0.25, "ok": True}),
        ("update", {"PartitionKey": "p", "RowKey": "a", "n": 2}, {**MERGE, **if_match(e["a"])}),
        ("update", {"PartitionKey": "p", "RowKey": "b", "s": "é, ü and \"quotes\""}, REPLACE),
        ("upsert", {"PartitionKey": "p", "RowKey": "o'neil", "s": "x" * 30_000}, MERGE),
        ("upsert", {"PartitionKey": "p", "RowKey": "fresh", "n": -3}, REPLACE)],
    "create of a row that exists (409, index 1)": lambda e: [
        ("upsert", {"PartitionKey": "p", "RowKey": "z", "n": 1}, MERGE),
        ("create", {"PartitionKey": "p", "RowKey": "a", "n": 9})],
    "update on a stale etag (412, index 2)": lambda e: [
        ("upsert", {"PartitionKey": "p", "RowKey": "z", "n": 1}, MERGE),
        ("upsert", {"PartitionKey": "p", "RowKey": "y", "n": 1}, MERGE),
        ("update", {"PartitionKey": "p", "RowKey": "a", "n": 3},
         {**MERGE, **if_match(e["a"].replace("Z'", "1Z'"))})],
    "update of a row that does not exist (404, index 0)": lambda e: [
        ("update", {"PartitionKey": "p", "RowKey": "missing", "n": 3}, MERGE),
        ("upsert", {"PartitionKey": "p", "RowKey": "y", "n": 1}, MERGE)],
    "a body over the service's 4 MiB": lambda e: [
        ("upsert", {"PartitionKey": "p", "RowKey": f"big{i:03d}", "s": "x" * 30_000, "t": "y" * 30_000},
         REPLACE) for i in range(80)],
    "100 operations": lambda e: [
        ("upsert", {"PartitionKey": "p", "RowKey": f"r{i:03d}", "n": i, "s": f"row {i}"}, REPLACE)
        for i in range(100)],
}


def outcome(table: TableClient, submit: Any, ops: list[Any]) -> tuple[Any, list[dict[str, Any]]]:
    try:
        answer: Any = [sorted(meta) for meta in submit(ops)]
    except TableTransactionError as exc:
        answer = (type(exc).__name__, exc.status_code, exc.index, str(exc.error_code))
    rows = sorted((dict(e) for e in table.list_entities()), key=lambda e: e["RowKey"])
    return answer, rows


@pytest.mark.parametrize("case", CASES)
def test_each_answer_error_and_resulting_row_is_the_sdks(storage: Storage, case: str) -> None:
    sdk_table, sdk_etags = seeded(storage, f"{storage.settings.ledger_table}sdk")
    our_table, our_etags = seeded(storage, f"{storage.settings.ledger_table}ours")
    theirs = outcome(sdk_table, sdk_table.submit_transaction, CASES[case](sdk_etags))
    ours = outcome(our_table, lambda ops: transactions.submit(our_table, ops), CASES[case](our_etags))
    assert ours == theirs
    if case.startswith("create,") or case == "100 operations":
        assert isinstance(ours[0], list) and all(meta == ["etag"] for meta in ours[0])
    else:
        assert isinstance(ours[0], tuple) and ours[0][0] in ("TableTransactionError", "RequestTooLargeError")


def test_the_etags_answered_are_the_rows_etags(storage: Storage) -> None:
    table, etags = seeded(storage, f"{storage.settings.ledger_table}etags")
    answer = transactions.submit(table, [("update", {"PartitionKey": "p", "RowKey": "a", "n": 2},
                                          {**MERGE, **if_match(etags["a"])}),
                                         ("create", {"PartitionKey": "p", "RowKey": "c", "n": 1})])
    assert [meta["etag"] for meta in answer] == [table.get_entity("p", k).metadata["etag"] for k in ("a", "c")]


def test_a_transaction_on_a_table_that_does_not_exist_names_it(storage: Storage) -> None:
    table = storage.table(f"{storage.settings.ledger_table}gone")
    with pytest.raises(Exception) as ours:
        transactions.submit(table, [("upsert", {"PartitionKey": "p", "RowKey": "a"}, MERGE)])
    assert ours.value.status_code == 404 and table.table_name in str(ours.value)


def test_a_commit_whose_answer_was_lost_is_counted_once(azurite: Azurite, settings: Settings) -> None:
    """The settle transaction landed and its answer was lost: the retry finds the row moved
    (412), the commit says so, and the row and the counters hold that one commit."""
    with FaultyProxy(azurite.table_port) as proxy:
        blob, queue, _ = azurite.ports
        behind = dataclasses.replace(settings, connection_string=azurite_connection_string(blob, queue, proxy.port))
        storage = Storage(behind)
        storage.ensure()
        ledger = Ledger(storage.ledger)
        ledger.put_batches([BatchRow(job_id="lostjob", index=0, items=[[0, "a.png"]])])
        row = ledger.mark_running(ledger.get_batch("lostjob", 0), "node-1")
        done = dataclasses.replace(row, state=BatchState.SUCCEEDED, ok=1, rows=1)
        proxy.lose_answers(lambda m, path: m == "POST" and "$batch" in path, count=1)
        assert ledger.commit(done, Totals(batches_succeeded=1, items_succeeded=1, rows=1)) is False
        assert proxy.counts["answer lost"] == 1
        stored = ledger.get_batch("lostjob", 0)
        assert stored.state == BatchState.SUCCEEDED and stored.try_id == row.try_id
        assert ledger.totals("lostjob") == Totals(batches_succeeded=1, items_succeeded=1, rows=1)
