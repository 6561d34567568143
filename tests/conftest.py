"""Shared fixtures: one real Azurite per test process, and per-test storage namespaces."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.local.azurite import Azurite
from shared.settings import Settings
from shared.storage import Storage

ROOT = Path(__file__).resolve().parents[1]
_counter = itertools.count()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A real Azurite on free ports of 127.0.0.1, in memory, for this test process."""
    debug = os.environ.get("PARALLELRUN_AZURITE_DEBUG")  # a file for Azurite's debug log
    with Azurite(debug_log=Path(debug) if debug else None) as server:
        yield server


@pytest.fixture
def settings(azurite: Azurite, tmp_path: Path) -> Settings:
    """Settings whose queues, tables and containers belong to this test alone."""
    ns = f"t{os.getpid() % 10000}x{next(_counter)}{uuid.uuid4().hex[:4]}"
    # scripts may write only their own work dir (shared.scoring.sandbox) and "writable/", which a test
    # gives them to leave marks in for one another
    base = Settings(connection_string=azurite.connection_string, scratch_dir=str(tmp_path / "scratch"),
                    sandbox_writable=(str(tmp_path / "writable"),))
    return base.with_namespace(ns)


@pytest.fixture
def storage(settings: Settings) -> Storage:
    store = Storage(settings)
    store.ensure()
    return store
