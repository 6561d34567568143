"""The host's sampling profiler: CPU-weighted stacks across threads, collapsed, and its tables."""

from __future__ import annotations

import threading
import time

from bench import profile
from shared.local.profiler import ThreadProfiles


def spin_in_a_named_function(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def test_every_thread_is_profiled_by_its_own_cpu_time() -> None:
    original = threading.Thread.run
    try:
        profiles = ThreadProfiles().install()
        busy = threading.Thread(target=spin_in_a_named_function, args=(3_000_000,), name="busy_0")
        idle = threading.Thread(target=time.sleep, args=(0.3,), name="idle_0")
        for t in (busy, idle):
            t.start()
        for t in (busy, idle):
            t.join()
    finally:
        threading.Thread.run = original  # type: ignore[method-assign]
    counts = profile.parse(profiles.collapsed())
    threads_ns = profile.by_thread(counts)
    assert threads_ns["busy"] >= 0.05e9          # a few hundred ms of CPU, timed by its own clock
    assert threads_ns["idle"] < 0.01e9           # 0.3 s asleep costs nothing
    own, _ = profile.by_function(counts)
    assert own.most_common(1)[0][0] == "tests/unit/test_bench_profile.py:spin_in_a_named_function"
    calls = profile.parse_calls(profiles.calls())
    assert calls["tests/unit/test_bench_profile.py:spin_in_a_named_function"][0] == 1
    later = profile.subtract_calls(calls, {k: (v[0], v[1], v[2]) for k, v in calls.items()})
    assert later == {}


PROCESS = "fn-score_batch;shared/local/queues.py:_process"
COMMIT = f"{PROCESS};functions/worker.py:score_batch;shared/service/ledger/store.py:commit;" \
    "azure/data/tables/_table_client.py:submit_transaction"
FOLDED = "\n".join([
    f"{COMMIT};azure/core/pipeline/_base.py:run;"
    "azure/data/tables/_authentication.py:_add_authorization_header;hmac.py:new 3000000",
    f"{COMMIT};requests/sessions.py:send;socket.py:readinto 2000000",
    f"{PROCESS};shared/local/queues.py:_finish;azure/storage/queue/_queue_client.py:delete_message;"
    "json/decoder.py:decode 1000000",
    "poll-score_batch;shared/local/queues.py:_poll_loop;shared/local/queues.py:_receive;typing.py:inner 500000",
    f"{PROCESS};functions/worker.py:score_batch;shared/service/working/pool.py:run;enum.py:__call__ 1500000",
    "not a stack line",
    "",
])


def test_collapsed_stacks_parse_and_subtract() -> None:
    after = profile.parse(FOLDED)
    assert len(after) == 5 and sum(after.values()) == 8_000_000
    before = profile.parse(FOLDED.splitlines()[0].replace("3000000", "1000000"))
    delta = profile.subtract(after, before)
    assert sum(delta.values()) == 7_000_000


def test_a_stack_goes_to_its_innermost_known_part() -> None:
    cats = profile.by_category(profile.parse(FOLDED))
    assert cats["SDK: request signing (SharedKey HMAC)"] == 3_000_000
    assert cats["HTTP client (requests, urllib3, http.client, sockets)"] == 2_000_000
    assert cats["JSON"] == 1_000_000
    # typing.py and enum.py belong to no part: the frame above them decides
    assert cats["local host: queue, blob and timer triggers"] == 500_000
    assert cats["ours: scoring pool and pipes to children"] == 1_500_000


def test_self_and_total_per_function_and_file() -> None:
    counts = profile.parse(FOLDED)
    own, total = profile.by_function(counts)
    assert own["hmac.py:new"] == 3_000_000
    assert total["shared/service/ledger/store.py:commit"] == 5_000_000
    assert total["shared/local/queues.py:_process"] == 7_500_000
    assert profile.by_file(counts)["socket.py"] == 2_000_000
    text = profile.render(counts, top=3, per=10)
    assert "| SDK: request signing (SharedKey HMAC) | 0.00 | 37.5% | 0.30 |" in text
    assert "`hmac.py:new`" in text
