"""Tabular pieces read from a real Azurite: ranged reads over plain HTTP (``BlobReader.read_range``),
faults retried, and what a piece costs in requests (none through the SDK)."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shared.local.azurite import Azurite
from shared.local.faultproxy import FaultyProxy
from shared.scoring import blobreader, tables
from shared.scoring.tabular import TabularDataError
from shared.service.planning import tables as table_plans
from shared.settings import azurite_connection_string
from shared.spec import InputSpec
from shared.storage import Storage, requests_sent_by_this_thread

from .conftest import put_files

CONTAINER = "tabreads"
BLOBS = {"ten.bin": b"0123456789", "empty.bin": b"", "odd name/ü é.bin": b"abcdef",
         "big.bin": os.urandom(3 * 1024 * 1024 + 5)}


@pytest.fixture
def blobs(storage: Storage) -> str:
    put_files(storage, CONTAINER, BLOBS)
    return CONTAINER


RANGES = [(0, 1), (2, 4), (0, 10), (8, 5), (9, 1), (10, 1), (10, 100), (11, 3), (1000, 1),
          (0, 10**9)]


def test_ranged_reads_return_the_bytes_and_the_size(storage: Storage, blobs: str) -> None:
    reader = storage.blob_reader
    for name, body in BLOBS.items():
        for offset, length in RANGES + [(len(body) - 7, 7), (len(body) // 2, 1 << 20)]:
            if offset < 0:
                continue
            assert reader.read_range(blobs, name, offset, length) == \
                (body[offset:offset + length], len(body)), (name, offset, length)


def test_a_ranged_read_of_a_missing_blob_raises_not_found(storage: Storage, blobs: str) -> None:
    with pytest.raises(blobreader.BlobNotFound, match="tabreads/nope.csv"):
        storage.blob_reader.read_range(blobs, "nope.csv", 0, 10)
    for offset, length in ((-1, 5), (0, 0)):
        with pytest.raises(ValueError):
            storage.blob_reader.read_range(blobs, "ten.bin", offset, length)


def test_ranged_reads_retry_throttling_lost_answers_and_stalls(
        storage: Storage, blobs: str, azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kind of fault is retried until the right bytes come back (with a short backoff here:
    the SDK's, up to seconds per retry, is not what this test is about)."""
    monkeypatch.setattr(blobreader, "_backoff", lambda attempt: 0.01)
    with FaultyProxy(azurite.blob_port, busy_rate=0.25, drop_rate=0.2, stall_rate=0.1,
                     stall_s=1.5, seed=5) as proxy:
        conn = azurite_connection_string(proxy.port, azurite.queue_port, azurite.table_port)
        faulty = Storage(dataclasses.replace(storage.settings, connection_string=conn,
                                             storage_timeout_s=0.5))
        reader = faulty.blob_reader
        for name, body in BLOBS.items():
            for offset, length in ((0, 3), (max(0, len(body) - 2), 10), (len(body) + 4, 1),
                                   (1, 1 << 20)):
                assert reader.read_range(blobs, name, offset, length) == \
                    (body[offset:offset + length], len(body))
    assert proxy.counts["busy"] and proxy.counts["dropped"] and proxy.counts["stalled"]


# -- a piece's requests ---------------------------------------------------------------------------
def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(rows)
    frame = pd.DataFrame({f"f{k}": rng.normal(size=rows).round(6) for k in range(12)})
    frame.insert(0, "id", np.arange(rows))
    return frame


def _parquet(frame: pd.DataFrame, group_rows: int) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, row_group_size=group_rows)
    return buf.getvalue()


FILES = {"csv/t.csv": (lambda f: f.to_csv(index=False).encode(), 2),
         "groups/t.parquet": (lambda f: _parquet(f, 2_000), 3),      # pieces of whole row groups
         "one/t.parquet": (lambda f: _parquet(f, 40_000), 3)}        # row ranges of one group


@pytest.mark.parametrize("name", list(FILES))
def test_a_piece_costs_a_few_ranged_reads_and_no_sdk_request(
        storage: Storage, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    frame = _frame(40_000)
    encode, most = FILES[name]
    put_files(storage, "tabreads-pieces", {name: encode(frame)})
    spec = InputSpec(container="tabreads-pieces", prefix=name.split("/")[0] + "/", type="tabular")
    schema = table_plans.schema_for(storage, spec, name)
    items = list(table_plans.pieces(storage, spec, 0, name, 256_000))
    assert len(items) > 3

    calls: list[tuple[int, int]] = []
    read_range: Callable[..., Any] = storage.blob_reader.read_range

    def counting(container: str, blob: str, offset: int, length: int) -> tuple[bytes, int]:
        calls.append((offset, length))
        return read_range(container, blob, offset, length)

    monkeypatch.setattr(storage.blob_reader, "read_range", counting)
    loader = tables.TableLoader()
    loader._reader = storage
    frames = []
    for item in items:
        calls.clear()
        sdk_before = requests_sent_by_this_thread()
        frames.append(loader.load({"items": [item], "inputs": [spec.wire], "schemas": {"0": schema}}))
        assert requests_sent_by_this_thread() == sdk_before
        assert 1 <= len(calls) <= most, (item, calls)
    got = pd.concat(frames, ignore_index=True)
    assert got["id"].tolist() == frame["id"].tolist()
    np.testing.assert_allclose(got["f3"].to_numpy(), frame["f3"].to_numpy())


def test_a_scoring_process_reads_with_the_worker_s_tokens_alone(storage: Storage) -> None:
    """The worker hands read tokens over with the request; the loader needs no credentials."""
    frame = _frame(5_000)
    put_files(storage, "tabreads-grant", {"g/t.csv": frame.to_csv(index=False).encode()})
    spec = InputSpec(container="tabreads-grant", prefix="g/", type="tabular")
    schema = table_plans.schema_for(storage, spec, "g/t.csv")
    [item] = list(table_plans.pieces(storage, spec, 0, "g/t.csv", 1 << 20))
    grant = storage.blob_reader.read_grant(["tabreads-grant"])
    assert set(grant) == {"url", "api_version", "timeout_s", "tokens"}
    loader = tables.TableLoader()
    got = loader.load({"items": [item], "inputs": [spec.wire], "schemas": {"0": schema}, "read": grant})
    assert got["id"].tolist() == frame["id"].tolist()
    other = {**spec.wire, "container": "tabreads-other"}
    with pytest.raises(PermissionError, match="tabreads-other"):
        loader.load({"items": [item], "inputs": [other], "schemas": {"0": schema},
                     "read": {**grant, "tokens": {}}})


@pytest.mark.parametrize("name", list(FILES))
def test_pieces_read_ahead_by_the_worker_need_no_storage_in_the_scoring_process(
        storage: Storage, tmp_path: Any, name: str) -> None:
    """The worker reads a piece's bytes before the mini-batch waits for a process
    (``tables.read_ahead``); the process then parses them without a request of its own: here its
    loader holds no token for the container at all, and every piece still reads the same rows."""
    frame = _frame(40_000)
    encode, _ = FILES[name]
    put_files(storage, "tabreads-ahead", {name: encode(frame)})
    spec = InputSpec(container="tabreads-ahead", prefix=name.split("/")[0] + "/", type="tabular")
    schema = table_plans.schema_for(storage, spec, name)
    items = list(table_plans.pieces(storage, spec, 0, name, 256_000))
    assert len(items) > 3
    grant = {**storage.blob_reader.read_grant(["tabreads-ahead"]), "tokens": {}}
    loader = tables.TableLoader()
    frames = []
    for i, (index, blob, piece) in enumerate(items):
        held = tables.read_ahead(storage, spec.wire, blob, piece, tmp_path / f"piece-{i}")
        frames.append(loader.load({"items": [[index, blob, piece]], "inputs": [spec.wire],
                                   "schemas": {"0": schema}, "read": grant, "held": [held]}))
    got = pd.concat(frames, ignore_index=True)
    assert got["id"].tolist() == frame["id"].tolist()
    np.testing.assert_allclose(got["f3"].to_numpy(), frame["f3"].to_numpy())
    # without them it would need a token (Parquet's reader reports the refusal as a bad file)
    with pytest.raises((PermissionError, TabularDataError), match="no read token for container 'tabreads-ahead'"):
        loader.load({"items": [items[1]], "inputs": [spec.wire], "schemas": {"0": schema}, "read": grant})


def test_a_parquet_file_rewritten_since_planning_is_not_read_ahead(storage: Storage, tmp_path: Any) -> None:
    """Its planned ranges would be the old file's: the worker says so and leaves the piece to the
    scoring process, which reads the file as it is and reports what does not fit."""
    put_files(storage, "tabreads-changed", {"p/t.parquet": _parquet(_frame(4_000), 1_000)})
    spec = InputSpec(container="tabreads-changed", prefix="p/", type="tabular")
    [item, *_] = list(table_plans.pieces(storage, spec, 0, "p/t.parquet", 50_000))
    put_files(storage, "tabreads-changed", {"p/t.parquet": _parquet(_frame(6_000), 1_000)})
    with pytest.raises(TabularDataError, match=r"p/t.parquet piece 0 .*the file has \d+ bytes, \d+ when it was"):
        tables.read_ahead(storage, spec.wire, item[1], item[2], tmp_path / "piece")
