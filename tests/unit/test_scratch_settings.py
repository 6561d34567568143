"""The scratch, snapshot-cache and sandbox settings, and the pure decisions behind them."""

from __future__ import annotations

import os

from shared.scoring.sandbox import REFER, TRUNCATE, WRITE_FILE, write_rights
from shared.service.working.snapshots import eviction_order
from shared.settings import Settings

CHANGED = {"scratch_dir": "/srv/scratch", "snapshot_cache_count": 3, "snapshot_cache_bytes": 1 << 25, "sandbox": False,
           "sandbox_writable": ("/data/a", "/data/b")}


def test_defaults_are_the_documented_ones() -> None:
    s = Settings()
    assert s.scratch_dir == ""            # a private folder per host start
    assert (s.limits.max_snapshot_members, s.limits.max_snapshot_expanded_bytes) == (10_000, 1 << 30)
    assert (s.snapshot_cache_count, s.snapshot_cache_bytes) == (16, 4 << 30)
    assert s.sandbox is True and s.sandbox_writable == ()


def test_the_fields_round_trip_through_the_environment() -> None:
    for settings in (Settings(), Settings(**CHANGED)):
        assert Settings.from_env(settings.to_env()) == settings


def test_the_environment_names() -> None:
    env = {"PARALLELRUN_SCRATCH_DIR": "/x", "PARALLELRUN_MAX_SNAPSHOT_MEMBERS": "7",
           "PARALLELRUN_MAX_SNAPSHOT_EXPANDED_BYTES": "8", "PARALLELRUN_SNAPSHOT_CACHE_COUNT": "9",
           "PARALLELRUN_SNAPSHOT_CACHE_BYTES": "10", "PARALLELRUN_SANDBOX": "off",
           "PARALLELRUN_SANDBOX_WRITABLE": os.pathsep.join(["/a", "/b"])}
    s = Settings.from_env(env)
    assert (s.scratch_dir, s.limits.max_snapshot_members, s.limits.max_snapshot_expanded_bytes,
            s.snapshot_cache_count,
            s.snapshot_cache_bytes, s.sandbox, s.sandbox_writable) == ("/x", 7, 8, 9, 10, False, ("/a", "/b"))


def test_a_namespace_keeps_the_default_scratch_private() -> None:
    assert Settings().with_namespace("ns").scratch_dir == ""
    assert Settings(scratch_dir="/s").with_namespace("ns").scratch_dir == "/s/ns"


def test_eviction_takes_the_least_recently_used_first_and_skips_those_kept() -> None:
    entries = [("a", 1.0, 10), ("b", 2.0, 10), ("c", 3.0, 10), ("d", 4.0, 10)]
    assert eviction_order(entries, 4, 100, set()) == []
    assert eviction_order(entries, 2, 100, set()) == ["a", "b"]
    assert eviction_order(entries, 2, 100, {"a"}) == ["b", "c"]
    assert eviction_order(entries, 10, 25, set()) == ["a", "b"]
    assert eviction_order(entries, 0, 0, {"a", "b", "c", "d"}) == []


def test_landlock_rights_by_abi() -> None:
    assert write_rights(1) & WRITE_FILE and not write_rights(1) & (REFER | TRUNCATE)
    assert write_rights(3) & REFER and write_rights(3) & TRUNCATE
