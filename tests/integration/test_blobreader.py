"""Input downloads' plain-HTTP path (shared/scoring/blobreader.py) against a real Azurite: contents, odd
names, a missing blob, and storage faults retried like the SDK's."""

from __future__ import annotations

import dataclasses
import io
import os

import pytest

from shared.local.azurite import Azurite
from shared.local.faultproxy import FaultyProxy
from shared.scoring.blobreader import BlobNotFound
from shared.settings import azurite_connection_string
from shared.storage import Storage

from .conftest import put_files

NAMES = {"plain.bin": os.urandom(3000), "with space/ü ñ é.png": b"\x89PNG odd name",
         "big/one.bin": os.urandom(5 * 1024 * 1024 + 17), "empty.txt": b""}


@pytest.fixture
def inputs(storage: Storage) -> str:
    put_files(storage, "reader-inputs", NAMES)
    return "reader-inputs"


def test_reads_every_blob_exactly(storage: Storage, inputs: str) -> None:
    reader = storage.blob_reader
    for name, body in NAMES.items():
        buf = io.BytesIO()
        assert reader.read_into(inputs, name, buf) == len(body)
        assert buf.getvalue() == body, name


def test_a_missing_blob_raises_not_found(storage: Storage, inputs: str) -> None:
    with pytest.raises(BlobNotFound, match="reader-inputs/nope.png"):
        storage.blob_reader.read_into(inputs, "nope.png", io.BytesIO())


def test_a_sas_from_a_connection_string_is_used_as_is(storage: Storage, inputs: str) -> None:
    """A connection string with a SAS instead of a key (no signing possible) still reads."""
    token = storage.blob_reader._token(inputs)   # a read SAS made with the key
    blob = storage.blob_service.url.rstrip("/")
    conn = f"BlobEndpoint={blob};SharedAccessSignature={token}"
    sas_storage = Storage(dataclasses.replace(storage.settings, connection_string=conn))
    buf = io.BytesIO()
    sas_storage.blob_reader.read_into(inputs, "plain.bin", buf)
    assert buf.getvalue() == NAMES["plain.bin"]


def test_throttling_lost_answers_and_stalls_are_retried(storage: Storage, inputs: str,
                                                        azurite: Azurite) -> None:
    with FaultyProxy(azurite.blob_port, busy_rate=0.2, drop_rate=0.15, stall_rate=0.1,
                     stall_s=2.5, seed=3) as proxy:
        conn = azurite_connection_string(proxy.port, azurite.queue_port, azurite.table_port)
        faulty = Storage(dataclasses.replace(storage.settings, connection_string=conn,
                                             storage_timeout_s=1.0))
        reader = faulty.blob_reader
        for _ in range(4):
            for name, body in NAMES.items():
                buf = io.BytesIO()
                reader.read_into(inputs, name, buf)
                assert buf.getvalue() == body, name
    assert proxy.counts["busy"] and proxy.counts["dropped"] and proxy.counts["stalled"]

