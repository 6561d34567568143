"""CPU per item by process kind: /proc parsing, the host's stage counters, aggregating by kind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bench import hostcpu
from shared.local import cpustats

TICK = os.sysconf("SC_CLK_TCK")


def burn(seconds: float) -> None:
    """Spin on this thread until it has used ``seconds`` of its own CPU."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_proc_stat_fields_survive_a_name_with_spaces_and_parentheses() -> None:
    # fields 14-17 of proc(5): utime, stime, cutime, cstime (in clock ticks)
    rest = ["S", "1", "2", "3", "0", "-1", "4194560", "10", "0", "0", "0"]
    stat = f"4242 (python (worker) x) {' '.join(rest)} {3 * TICK} {TICK} {2 * TICK} {TICK // 2} 20 0 9"
    own, reaped = cpustats.proc_cpu_s(stat)
    assert own == pytest.approx(4.0)
    assert reaped == pytest.approx(2.5, abs=1 / TICK)


def test_thread_groups_drop_the_pool_index() -> None:
    assert cpustats.thread_group("fn-score_batch_3") == "fn-score_batch"
    assert cpustats.thread_group("download_12") == "download"
    assert cpustats.thread_group("Thread-12 (_renew)") == "Thread (_renew)"
    assert cpustats.thread_group("poll-plan") == "poll-plan"


def test_a_stage_counts_the_cpu_spent_inside_not_the_waiting() -> None:
    before = cpustats.stages()
    with cpustats.stage("test: busy"):
        burn(0.05)
    with cpustats.stage("test: idle"):
        time.sleep(0.2)
    after = cpustats.stages()
    busy = after["test: busy"] - before.get("test: busy", 0.0)
    idle = after["test: idle"] - before.get("test: idle", 0.0)
    assert 0.05 <= busy < 0.5
    assert idle < 0.02


def test_live_threads_are_counted_by_group_with_their_own_cpu() -> None:
    done = threading.Event()

    def work() -> None:
        burn(0.1)
        done.wait(10)

    threads = [threading.Thread(target=work, name=f"burner_{i}") for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    while any(t.is_alive() and (cpustats.thread_cpu_s(t.native_id or 0) or 0) < 0.1 for t in threads):
        time.sleep(0.02)
    found = cpustats.threads()
    done.set()
    for t in threads:
        t.join()
    assert 0.2 <= found["burner"] < 1.0
    # gone: no answer, no crash (a joined thread's kernel task may outlive join() for a moment)
    deadline = time.monotonic() + 10
    while cpustats.thread_cpu_s(threads[0].native_id or 0) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cpustats.thread_cpu_s(threads[0].native_id or 0) is None


def test_children_that_exited_and_live_ones_are_both_counted() -> None:
    code = "import time\nend=time.process_time()+0.3\nwhile time.process_time()<end: pass\n"
    reaped_before, _ = cpustats.children_cpu_s()
    subprocess.run([sys.executable, "-c", code], check=True)                 # exits, reaped
    live = subprocess.Popen([sys.executable, "-c", code + "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while True:
            reaped, alive = cpustats.children_cpu_s()
            if alive.get(live.pid, 0.0) >= 0.3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        live.kill()
        live.wait()
    assert reaped - reaped_before >= 0.3
    assert alive[live.pid] >= 0.3


def test_sigusr2_writes_the_accounting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpustats.CPU_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(cpustats.PROFILE_ENV, raising=False)
    previous = signal.getsignal(cpustats.REQUEST_SIGNAL)
    try:
        cpustats.install("nodeT")
        with cpustats.stage("test: before the snapshot"):
            burn(0.01)
        os.kill(os.getpid(), cpustats.REQUEST_SIGNAL)
        time.sleep(0.05)   # the handler runs in this (the main) thread at the next bytecode
        data = json.loads((tmp_path / "nodeT.json").read_text())
    finally:
        signal.signal(cpustats.REQUEST_SIGNAL, previous)
    assert data["node_id"] == "nodeT" and data["pid"] == os.getpid()
    assert data["emulation_s"]["test: before the snapshot"] >= 0.01
    assert data["process_s"] >= data["emulation_s"]["test: before the snapshot"]
    assert "MainThread" in data["threads_s"]


def node(process: float, emulation: dict[str, float], reaped: float, live: dict[str, float],
         profiler: float = 0.0, threads: dict[str, float] | None = None) -> dict:
    return {"process_s": process, "emulation_s": emulation, "children_reaped_s": reaped,
            "children_live_s": live, "profiler_s": profiler, "threads_s": threads or {}}


def test_kinds_split_the_host_process_and_sum_the_nodes() -> None:
    snap = {"azurite_s": 7.0, "nodes": {
        "node0": node(10.0, {"queue: receive": 1.0, "queue: delete or release": 0.5}, 3.0,
                      {"11": 1.0, "12": 2.0}, profiler=0.5),
        "node1": node(4.0, {"queue: receive": 1.0}, 0.0, {"21": 1.5})}}
    k = hostcpu.kinds(snap)
    assert k == {"worker": pytest.approx(8.0 + 3.0), "emulation": pytest.approx(2.5),
                 "scoring": pytest.approx(7.5), "azurite": 7.0}


def test_per_item_is_the_growth_between_snapshots() -> None:
    before = {"azurite_s": 1.0, "nodes": {"node0": node(2.0, {"queue: receive": 0.5}, 0.0, {"11": 1.0})}}
    # the live child 11 exited meanwhile (now in the reaped total), child 12 started
    after = {"azurite_s": 5.0, "nodes": {"node0": node(6.0, {"queue: receive": 1.5}, 3.0, {"12": 2.0})}}
    per = hostcpu.per_item(before, after, items=1000, batches=200)
    assert per["worker"] == {"cpu_s": 3.0, "ms_per_item": 3.0, "ms_per_batch": 15.0}
    assert per["emulation"]["ms_per_batch"] == 5.0
    assert per["scoring"]["cpu_s"] == 4.0
    assert per["azurite"]["ms_per_item"] == 4.0


def test_breakdown_keeps_the_stages_and_thread_groups_that_grew() -> None:
    before = {"nodes": {"node0": node(1, {"queue: receive": 0.5}, 0, {}, threads={"fn-worker": 1.0,
                                                                               "poll-plan": 0.2})}}
    after = {"nodes": {"node0": node(2, {"queue: receive": 0.75, "queue: lease renewal": 0.01}, 0, {},
                                     threads={"fn-worker": 3.0, "poll-plan": 0.2, "download": 0.4})}}
    b = hostcpu.breakdown(before, after)
    assert b["emulation"] == {"queue: lease renewal": 0.01, "queue: receive": 0.25}
    assert b["threads"] == {"download": 0.4, "fn-worker": 2.0}
