"""The planner's pages listed ahead: bounded in number and age, never a failed page."""

from __future__ import annotations

import threading

from shared.service.planning.planner import _Prefetcher


def test_a_page_is_taken_once() -> None:
    ahead = _Prefetcher()
    ahead.start("k", lambda: (["a", "b"], "next"))
    assert ahead.take("k") == (["a", "b"], "next")
    assert ahead.take("k") is None
    assert ahead.take("other") is None


def test_at_most_max_pages_are_kept_oldest_dropped_first() -> None:
    ahead = _Prefetcher(max_pages=2)
    for key in ("a", "b", "c"):
        ahead.start(key, lambda key=key: ([key], None))
    assert ahead.take("a") is None
    assert ahead.take("b") == (["b"], None)
    assert ahead.take("c") == (["c"], None)


def test_a_page_older_than_its_ttl_is_dropped() -> None:
    ahead = _Prefetcher(ttl_s=0.0)
    ahead.start("k", lambda: (["a"], None))
    threading.Event().wait(0.01)
    assert ahead.take("k") is None


def test_a_page_that_failed_to_list_is_not_used() -> None:
    def fail() -> tuple[list[str], str | None]:
        raise ConnectionError("down")

    ahead = _Prefetcher()
    ahead.start("k", fail)
    assert ahead.take("k") is None


def test_starting_a_page_already_listing_is_a_no_op() -> None:
    release = threading.Event()
    calls = []

    def slow() -> tuple[list[str], str | None]:
        calls.append(1)
        release.wait(5)
        return ["a"], None

    ahead = _Prefetcher()
    ahead.start("k", slow)
    ahead.start("k", slow)
    release.set()
    assert ahead.take("k") == (["a"], None)
    assert len(calls) == 1
