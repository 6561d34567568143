"""The CLI's pure parts: the ETA and clock of `status --watch`, the stage line, storage endpoints."""

from __future__ import annotations

from typing import Any

import pytest

from shared.cli.console import clock, eta_s, progress_counts, stages_text, timing_text
from shared.cli.reach import advice, endpoint


def status(state: str = "running", elapsed_s: float = 0.0, started_at: float = 1.0,
           items: tuple[int, int, int] = (0, 0, 0), batches: tuple[int, int, int] = (0, 0, 0),
           planning_done: bool = True) -> dict[str, Any]:
    return {"state": state, "timings": {"elapsed_s": elapsed_s, "started_at": started_at},
            "items": dict(zip(("total", "succeeded", "failed"), items, strict=True)),
            "mini_batches": {**dict(zip(("total", "succeeded", "failed"), batches, strict=True)),
                             "planning_done": planning_done}}


def test_the_eta_is_what_is_left_at_the_rate_so_far() -> None:
    assert eta_s(25, 100, 50.0) == pytest.approx(150.0)
    assert eta_s(100, 100, 50.0) == 0
    assert eta_s(0, 100, 50.0) is None       # nothing done yet: no rate
    assert eta_s(10, None, 50.0) is None     # planning not done: no total


@pytest.mark.parametrize("seconds,text", [(0, "0:00"), (5.9, "0:05"), (65, "1:05"),
                                          (3600 + 62, "1:01:02")])
def test_clock(seconds: float, text: str) -> None:
    assert clock(seconds) == text


def test_the_watch_counts_from_the_jobs_start_and_shows_an_eta() -> None:
    # 40 of 100 items after 80 s since the job started: 2 s an item, 120 s left
    line = timing_text(status(elapsed_s=80.0, items=(100, 30, 10)))
    assert line == "1:20 elapsed, ETA 2:00"


def test_a_table_job_counts_mini_batches_and_has_no_eta_before_planning_is_done() -> None:
    st = status(elapsed_s=30.0, batches=(8, 2, 0), planning_done=False)
    assert progress_counts(st) == (2, None)
    assert timing_text(st) == "0:30 elapsed, ETA ?"
    st = status(elapsed_s=30.0, batches=(8, 2, 0))
    assert timing_text(st) == "0:30 elapsed, ETA 1:30"


def test_a_finished_job_shows_its_whole_duration_and_a_queued_one_none() -> None:
    assert timing_text(status(state="succeeded", elapsed_s=125.0, items=(10, 10, 0))) == "2:05 elapsed"
    assert timing_text(status(state="queued", started_at=0.0)) == "not started"


def test_the_stage_line_has_seconds_per_stage_and_ms_per_try() -> None:
    line = stages_text({"tries": 4, "total_s": {"queue": 1.2, "run": 8.0},
                        "per_try_ms": {"queue": 300.0, "run": 2000.0}})
    assert line == "queue 1.2 s (300.0 ms/try), run 8.0 s (2000.0 ms/try) over 4 tries"


def test_endpoints_and_what_to_do_when_storage_is_not_there() -> None:
    assert endpoint("http://127.0.0.1:10000/devstoreaccount1") == ("127.0.0.1", 10000)
    assert endpoint("https://acct.blob.core.windows.net/") == ("acct.blob.core.windows.net", 443)
    assert advice("127.0.0.1", 10000) == ("no storage at 127.0.0.1:10000: start it with "
                                          "`parallelrun up`, or set AzureWebJobsStorage")
    assert "acct.blob.core.windows.net:443" in advice("acct.blob.core.windows.net", 443)
