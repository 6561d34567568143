"""The host's sampling profiler: CPU-weighted stacks across threads, collapsed, and its tables."""

from __future__ import annotations

import threading
import time

from bench import profile
from shared.local.sampler import Sampler


def spin_in_a_named_function(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_the_sampler_charges_cpu_to_the_thread_and_function_that_used_it() -> None:
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            spin_in_a_named_function(0.01)

    def idle() -> None:
        stop.wait(30)

    threads = [threading.Thread(target=busy, name="busy_0"), threading.Thread(target=idle, name="idle_0")]
    for t in threads:
        t.start()
    sampler = Sampler(0.002).start()
    try:
        deadline = time.monotonic() + 20
        while sum(sampler.counts.values()) < 0.3e9 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sampler.stop()
        stop.set()
        for t in threads:
            t.join()
    counts = profile.parse(sampler.collapsed())
    threads_ns = profile.by_thread(counts)
    assert threads_ns["busy"] >= 0.8 * sum(counts.values())
    assert threads_ns.get("idle", 0) < 0.02e9
    own, total = profile.by_function(counts)
    assert own.most_common(1)[0][0] == "tests/unit/test_bench_profile.py:spin_in_a_named_function"
    assert sampler.own_cpu_s > 0


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
