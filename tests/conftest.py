"""Shared fixtures: one real Azurite per test process, and per-test storage namespaces.

A test marked ``scores_nothing`` (API validation, planning, ledger, CLI errors, the host's own
machinery...) may start hosts, but no job of it runs ``run()``: its settings keep no warm spare
scoring processes (``warm_processes=0``), which would only cost CPU. The mark is checked: such a
test fails if a host of the test process starts a scoring process for a job, or keeps spares
anyway (settings of its own). Node processes (LocalCluster) get the settings but are not checked.
Every other test keeps the default spares: it runs the path production runs.

A test marked ``stops_jobs`` (cancelled, over a budget, unrunnable) has workers that trust a
cached job row for 0.5 s instead of 5 s (``job_cache_ttl_s``): the finalizer of a stopped job
waits ``2 x job_cache_ttl_s + 1`` for them to learn of the stop, 2 s instead of 11 s."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def scores_nothing(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("scores_nothing") is not None


def marked_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The Settings fields a test's marks change (see the module's docstring)."""
    fields: dict[str, Any] = {}
    if scores_nothing(request):
        fields["warm_processes"] = 0
    if request.node.get_closest_marker("stops_jobs") is not None:
        fields["job_cache_ttl_s"] = 0.5
    return fields


@pytest.fixture
def settings(azurite: Azurite, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings whose queues, tables and containers belong to this test alone."""
    ns = f"t{os.getpid() % 10000}x{next(_counter)}{uuid.uuid4().hex[:4]}"
    # scripts may write only their own work dir (shared.scoring.sandbox) and "writable/", which a test
    # gives them to leave marks in for one another
    base = Settings(connection_string=azurite.connection_string, scratch_dir=str(tmp_path / "scratch"),
                    sandbox_writable=(str(tmp_path / "writable"),), **marked_settings(request))
    return base.with_namespace(ns)


@pytest.fixture(autouse=True)
def _nothing_scored(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A ``scores_nothing`` test fails if a pool of this process started a job's scoring process
    or kept warm spares (checked after every other fixture of the test has been torn down)."""
    if not scores_nothing(request):
        yield
        return
    from shared.service.working.pool import ScoringPool

    started: list[str] = []
    start, warm_up = ScoringPool._start, ScoringPool.warm_up

    def watched_start(self: ScoringPool, config: Any) -> Any:
        started.append(f"a scoring process for job {config.job_id}")
        return start(self, config)

    def watched_warm_up(self: ScoringPool) -> None:
        if self.settings.warm_processes > 0:
            started.append(f"{self.settings.warm_processes} warm spare(s)")
        warm_up(self)

    monkeypatch.setattr(ScoringPool, "_start", watched_start)
    monkeypatch.setattr(ScoringPool, "warm_up", watched_warm_up)
    yield
    if started:
        pytest.fail(f"marked scores_nothing, but a host started {', '.join(sorted(set(started)))}: "
                    "remove the mark", pytrace=False)


@pytest.fixture
def storage(settings: Settings) -> Storage:
    store = Storage(settings)
    store.ensure()
    return store
