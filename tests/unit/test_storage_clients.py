"""Storage builds each container's client once and keeps the most recently used."""

from __future__ import annotations

import pytest

from shared import storage as storage_module
from shared.settings import Settings
from shared.storage import Storage

CONN = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;")


def test_a_containers_client_is_built_once() -> None:
    store = Storage(Settings(connection_string=CONN))
    first = store.container("outputs")
    assert store.container("outputs") is first
    assert store.container("other") is not first and store.container("other").container_name == "other"


def test_only_the_most_recently_used_clients_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage_module, "CONTAINER_CLIENTS", 2)
    store = Storage(Settings(connection_string=CONN))
    a, b = store.container("a"), store.container("b")
    assert store.container("a") is a          # "a" used again: "b" is now the oldest
    store.container("c")
    assert store.container("a") is a
    assert store.container("b") is not b      # dropped, built again
