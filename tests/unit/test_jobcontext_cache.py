"""The job-row cache: an expired row is read again once per process, not once per invocation."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from shared.service.working.jobcontext import JobContexts


def test_concurrent_invocations_share_one_refresh_of_an_expired_job_row(tmp_path) -> None:
    release, reads = threading.Event(), []

    def get_job(job_id: str) -> SimpleNamespace:
        reads.append(job_id)
        release.wait(5)
        return SimpleNamespace(job_id=job_id, spec_json='{"v":1}', state="running")

    storage = SimpleNamespace(settings=SimpleNamespace(job_cache_ttl_s=2.0, scratch_dir=str(tmp_path)))
    contexts = JobContexts(storage, SimpleNamespace(get_job=get_job), "node0")  # type: ignore[arg-type]
    old = SimpleNamespace(job=SimpleNamespace(spec_json='{"v":1}', state="old"), spec=None, inputs=[],
                          scoring=None, pool_key="k", target=None, processes=1)
    contexts._cache["j1"] = (time.monotonic() - 60, old)        # expired

    got: list = []
    refresher = threading.Thread(target=lambda: got.append(contexts.get("j1")))
    refresher.start()
    while not reads:
        time.sleep(0.01)
    others = [contexts.get("j1") for _ in range(5)]              # while the refresh is under way
    release.set()
    refresher.join()
    assert reads == ["j1"]
    assert all(o is old for o in others)
    assert got[0].job.state == "running" and contexts.get("j1").job.state == "running"
    assert len(reads) == 1                                        # fresh now: no further read
    contexts.get("j1", fresh=True)
    assert len(reads) == 2


def test_a_job_s_first_context_is_built_once_however_many_invocations_want_it(tmp_path, monkeypatch) -> None:
    """At a job's start a host receives several of its messages at once: one thread reads the job
    row and builds the context (snapshot, models), the others wait for it instead of doing the same."""
    release, reads, builds = threading.Event(), [], []

    def get_job(job_id: str) -> SimpleNamespace:
        reads.append(job_id)
        release.wait(5)
        return SimpleNamespace(job_id=job_id, spec_json='{"v":1}', state="running")

    storage = SimpleNamespace(settings=SimpleNamespace(job_cache_ttl_s=2.0, scratch_dir=str(tmp_path)))
    contexts = JobContexts(storage, SimpleNamespace(get_job=get_job), "node0")  # type: ignore[arg-type]
    monkeypatch.setattr(contexts, "_build", lambda job: builds.append(job) or SimpleNamespace(job=job))
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(contexts.get("j1"))) for _ in range(6)]
    for t in threads:
        t.start()
    while not reads:
        time.sleep(0.01)
    time.sleep(0.2)             # the other five are waiting now (or about to ask)
    release.set()
    for t in threads:
        t.join(10)
    assert reads == ["j1"] and len(builds) == 1
    assert len(got) == 6 and all(g is got[0] for g in got)


def test_a_failed_first_build_lets_the_next_invocation_try_again(tmp_path, monkeypatch) -> None:
    storage = SimpleNamespace(settings=SimpleNamespace(job_cache_ttl_s=2.0, scratch_dir=str(tmp_path)))
    reads: list[str] = []

    def get_job(job_id: str) -> SimpleNamespace:
        reads.append(job_id)
        if len(reads) == 1:
            raise ConnectionError("storage unavailable")
        return SimpleNamespace(job_id=job_id, spec_json='{"v":1}', state="running")

    contexts = JobContexts(storage, SimpleNamespace(get_job=get_job), "node0")  # type: ignore[arg-type]
    monkeypatch.setattr(contexts, "_build", lambda job: SimpleNamespace(job=job))
    try:
        contexts.get("j1")
    except ConnectionError:
        pass
    assert contexts.get("j1").job.state == "running" and len(reads) == 2
