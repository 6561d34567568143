"""The local host runs the app's own functions with the Functions host's semantics, on Azurite.

The pure parts (host.json parsing, route templates, blob receipt decisions) are tested first and
need no Azurite; the rest drive the test app in ``hostapp/`` through a real Azurite.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.local.blobs import compile_path
from shared.local.cluster import LocalCluster
from shared.local.host import DEFAULT_HOST_JSON, LocalHost, load_app
from shared.local.hostconfig import QueueHostConfig, load_host_config, parse_host_config, parse_timespan
from shared.local.http import build_routes
from shared.local.invocation import FunctionSpec
from shared.local.receipts import Receipt, decide
from shared.settings import Settings
from shared.storage import Storage
from tests.integration.hostapp import blueprint

pytestmark = pytest.mark.scores_nothing   # the test app's functions score nothing

HOSTAPP = Path(__file__).parent / "hostapp" / "function_app.py"
# The repo's host.json, but failed messages reappear at once and poison after 3 tries (fast tests).
FAST = dataclasses.replace(load_host_config(DEFAULT_HOST_JSON), queues=QueueHostConfig(
    batch_size=8, new_batch_threshold=4, max_polling_interval_s=2, visibility_timeout_s=0,
    max_dequeue_count=3))


# -- pure: host.json --------------------------------------------------------------------------
def test_timespans_parse_to_seconds() -> None:
    assert parse_timespan("00:00:02") == 2
    assert parse_timespan("00:30:00") == 1800
    assert parse_timespan("1.02:00:00.5") == 93600.5
    for bad in ("2", "00:61:00", "soon"):
        with pytest.raises(ValueError):
            parse_timespan(bad)


def test_host_json_defaults_are_the_functions_hosts() -> None:
    config = parse_host_config({"version": "2.0"})
    assert config.route_prefix == "api"
    assert config.queues == QueueHostConfig(batch_size=16, new_batch_threshold=8,
                                            max_polling_interval_s=60, visibility_timeout_s=0,
                                            max_dequeue_count=5, message_encoding="base64")
    small = parse_host_config({"extensions": {"queues": {"batchSize": 4}}})
    assert small.queues.new_batch_threshold == 2


def test_host_json_values_are_read_case_insensitively_and_validated() -> None:
    config = parse_host_config({"Extensions": {
        "HTTP": {"routePrefix": "/v1/"},
        "queues": {"BatchSize": 32, "maxPollingInterval": "00:00:00.5",
                   "visibilityTimeout": "00:00:07", "maxdequeuecount": 2,
                   "messageEncoding": "None"}}, "functionTimeout": "00:10:00"})
    assert config.route_prefix == "v1" and config.function_timeout_s == 600
    assert (config.queues.batch_size, config.queues.new_batch_threshold) == (32, 16)
    assert config.queues.max_polling_interval_s == 0.5
    assert config.queues.visibility_timeout_s == 7 and config.queues.max_dequeue_count == 2
    assert config.queues.message_encoding == "none"
    with pytest.raises(ValueError, match="batchSize"):
        parse_host_config({"extensions": {"queues": {"batchSize": 33}}})
    with pytest.raises(ValueError, match="messageEncoding"):
        parse_host_config({"extensions": {"queues": {"messageEncoding": "utf8"}}})


def test_the_repos_host_json_parses() -> None:
    config = load_host_config(DEFAULT_HOST_JSON)
    assert config.queues.max_polling_interval_s == 0.5 and config.route_prefix == "api"


# -- pure: routes and blob receipts ------------------------------------------------------------
def test_route_templates_match_like_the_functions_host() -> None:
    routes = build_routes([FunctionSpec.from_function(f) for f in load_app(HOSTAPP).get_functions()
                           if f.get_trigger().get_dict_repr()["type"] == "httpTrigger"], "api")

    def match(path: str) -> tuple[str, dict[str, str]] | None:
        for route in routes:
            params = route.match(path)
            if params is not None:
                return route.spec.name, params
        return None

    assert match("/api/jobs/j1") == ("get_job", {"job_id": "j1"})
    assert match("/API/Jobs") == ("post_job", {})
    assert match("/api/items/7") == ("items", {"item_id": "7"})
    assert match("/api/items/7/full/") == ("items", {"item_id": "7", "view": "full"})
    assert match("/api/files") == ("files", {})
    assert match("/api/files/a/b.txt") == ("files", {"rest": "a/b.txt"})
    assert match("/api/jobs/j1/extra") is None and match("/jobs/j1") is None


def test_blob_paths_and_receipt_decisions() -> None:
    container, prefix, pattern = compile_path("reqs/in/{name}.json")
    assert (container, prefix) == ("reqs", "in/")
    assert pattern.fullmatch("in/a/b.json") and not pattern.fullmatch("in/a.txt")
    running = Receipt("e1", "running", attempts=1, heartbeat=100.0)
    assert decide("e1", None, 0, 30) == "new"
    assert decide("e2", dataclasses.replace(running, state="done"), 0, 30) == "new"
    assert decide("e1", dataclasses.replace(running, state="done"), 0, 30) == "skip"
    assert decide("e1", running, now=110, stale_after_s=30) == "busy"
    assert decide("e1", running, now=140, stale_after_s=30) == "retry"
    assert decide("e1", dataclasses.replace(running, attempts=5), 140, 30) == "give_up"


# -- with Azurite ------------------------------------------------------------------------------
@pytest.fixture
def make_host(settings: Settings, storage: Storage) -> Iterator[Callable[..., LocalHost]]:
    """Build LocalHosts over the test app (fresh app object each time); stopped at teardown."""
    hosts: list[LocalHost] = []
    blueprint.CALLS.clear()

    def make(**kwargs: Any) -> LocalHost:
        kwargs.setdefault("config", FAST)
        kwargs.setdefault("lease_s", 5)
        host = LocalHost(load_app(HOSTAPP), settings, **kwargs)
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        host.stop()


def send(storage: Storage, **body: Any) -> None:
    storage.queue(storage.settings.batch_queue).send_message(json.dumps(body))


def count(storage: Storage, queue: str) -> int:
    return storage.queue(queue).get_queue_properties().approximate_message_count


def test_a_message_is_delivered_decoded_once_and_deleted(make_host: Callable[..., LocalHost],
                                                         storage: Storage) -> None:
    send(storage, id="text")
    raw = storage.queue_service.get_queue_client(storage.settings.batch_queue)  # no encoding
    raw.send_message(base64.b64encode(b"\xff\x00binary").decode())
    host = make_host()
    host.drain(timeout_s=30)
    calls = {c["id"]: c for c in blueprint.calls("work")}
    assert calls["text"]["body"] == b'{"id": "text"}' and calls[None]["body"] == b"\xff\x00binary"
    assert [c["dequeue_count"] for c in calls.values()] == [1, 1]
    assert calls["text"]["function_name"] == "work" and calls["text"]["invocation_id"]
    assert count(storage, storage.settings.batch_queue) == 0
    assert host.stats["work"].successes == 2 and host.stats["work"].failures == 0


def test_a_failing_message_is_retried_then_poisoned_intact(make_host: Callable[..., LocalHost],
                                                           storage: Storage) -> None:
    send(storage, id="bad", fail=True)
    host = make_host()
    host.drain(timeout_s=30)
    assert [c["dequeue_count"] for c in blueprint.calls("work")] == [1, 2, 3]
    poison = storage.queue(storage.settings.batch_queue + storage.settings.poison_suffix)
    [moved] = poison.receive_messages(max_messages=1)
    assert json.loads(moved.content) == {"id": "bad", "fail": True}
    assert dataclasses.asdict(host.stats["work"]) == {
        "invocations": 3, "successes": 0, "failures": 3, "poisoned": 1}


def test_a_long_invocation_keeps_its_message_invisible(make_host: Callable[..., LocalHost],
                                                       storage: Storage) -> None:
    send(storage, id="long", sleep=4.5)
    host = make_host(lease_s=2).start()
    raw = storage.queue_service.get_queue_client(storage.settings.batch_queue)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:  # a second consumer polls well past the 2 s lease
        assert list(raw.receive_messages(max_messages=1, visibility_timeout=1)) == []
        time.sleep(0.25)
    host.drain(timeout_s=30)
    assert [c["dequeue_count"] for c in blueprint.calls("work")] == [1]
    assert host.stats["work"].successes == 1


def test_drain_returns_only_when_everything_is_processed(make_host: Callable[..., LocalHost],
                                                         storage: Storage) -> None:
    for i in range(20):
        send(storage, id=i, sleep=0.05)
    send(storage, id="slow", sleep=2)
    host = make_host()
    with pytest.raises(TimeoutError, match=storage.settings.batch_queue):
        host.drain(timeout_s=0.5)
    host.drain(timeout_s=30)
    assert sorted(str(c["id"]) for c in blueprint.calls("work")) == sorted(
        [str(i) for i in range(20)] + ["slow"])
    assert count(storage, storage.settings.batch_queue) == 0 and host.busy() == []


def test_http_functions_are_served_on_loopback(make_host: Callable[..., LocalHost]) -> None:
    host = make_host(http_port=0).start()
    assert host.http_url.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=host.http_url + "/api", timeout=10) as client:
        got = client.get("/jobs/j-1", params={"verbose": "1"}, headers={"x-test": "yes"})
        assert got.status_code == 200 and got.headers["content-type"].startswith("application/json")
        assert got.json()["job_id"] == "j-1" and got.json()["params"] == {"verbose": "1"}
        assert got.json()["header"] == "yes"
        assert got.json()["url"].endswith("/api/jobs/j-1?verbose=1")
        posted = client.post("/jobs", json={"name": "n", "inputs": [1, 2]})
        assert posted.status_code == 201
        assert posted.json() == {"received": {"name": "n", "inputs": [1, 2]}, "method": "POST"}
        assert client.put("/files/a/b.txt").json() == {"rest": "a/b.txt", "method": "PUT"}
        assert client.get("/items/3/full").json() == {"item_id": "3", "view": "full"}
        assert (client.get("/async/x").status_code, client.get("/async/x").text) == (202, "async x")
        assert client.get("/boom").status_code == 500
        for method, path in (("GET", "/nothing"), ("DELETE", "/jobs/j-1")):
            missing = client.request(method, path)
            assert missing.status_code == 404 and "error" in missing.json()
    assert host.stats["boom"].failures == 1
    port = int(host.http_url.rsplit(":", 1)[1])
    for address in _non_loopback_addresses():
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((address, port)) != 0, f"reachable on {address}"


def _non_loopback_addresses() -> set[str]:
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return set()
    return {str(info[4][0]) for info in infos if not str(info[4][0]).startswith("127.")}


def test_blob_trigger_fires_once_per_version_even_after_restart(
        make_host: Callable[..., LocalHost], storage: Storage) -> None:
    requests = storage.container(storage.settings.requests_container)
    requests.upload_blob("a.json", b"first")
    requests.upload_blob("dir/b.json", b"other")
    host = make_host()
    host.drain(timeout_s=30)
    fired = sorted((c["name"], c["data"]) for c in blueprint.calls("on_request"))
    container = storage.settings.requests_container
    assert fired == [(f"{container}/a.json", b"first"), (f"{container}/dir/b.json", b"other")]
    requests.upload_blob("a.json", b"second", overwrite=True)
    host.drain(timeout_s=30)
    assert [c["data"] for c in blueprint.calls("on_request")][2:] == [b"second"]
    host.stop()
    make_host().drain(timeout_s=30)  # a new host process would see the receipts the same way
    assert len(blueprint.calls("on_request")) == 3


def test_a_failing_blob_is_retried_five_times_then_given_up(
        make_host: Callable[..., LocalHost], storage: Storage) -> None:
    storage.container(storage.settings.requests_container).upload_blob("x.json", b"fail please")
    host = make_host()
    host.drain(timeout_s=30)
    assert len(blueprint.calls("on_request")) == 5
    assert host.stats["on_request"].poisoned == 1


def test_two_hosts_share_a_blob_without_both_running_it(
        make_host: Callable[..., LocalHost], storage: Storage) -> None:
    requests = storage.container(storage.settings.requests_container)
    for i in range(10):
        requests.upload_blob(f"r{i}.json", b"x")
    first, second = make_host(node_id="n1"), make_host(node_id="n2")
    threads = [threading.Thread(target=h.drain, kwargs={"timeout_s": 30}) for h in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    names = [c["name"] for c in blueprint.calls("on_request")]
    assert len(names) == len(set(names)) == 10


def test_a_cluster_of_two_nodes_gets_every_message_done(settings: Settings, storage: Storage,
                                                         tmp_path: Path) -> None:
    ids = [f"m{i}" for i in range(16)]
    for message_id in ids:
        send(storage, id=message_id, sleep=1.0, persist=True)
    with LocalCluster(settings, nodes=2, http_port=0, app_path=HOSTAPP, log_dir=tmp_path,
                      env={"PARALLELRUN_LOCAL_LEASE_S": "2"}) as cluster:
        assert httpx.get(cluster.http_url + "/api/health", timeout=10).json() == {"status": "ok"}
        time.sleep(0.3)
        cluster.kill(1)   # whatever node1 was running reappears after its 2 s lease
        assert not cluster.is_alive(1)
        cluster.restart(1)
        cluster.drain(timeout_s=45)
    done = {b.name.split("/")[1] for b in storage.system.list_blobs(name_starts_with="calls/")}
    assert done == set(ids)
    logs = "".join((tmp_path / f"node{i}.log").read_text() for i in range(2))
    assert "dequeue=2 succeeded" in logs, "node1's messages should have been redelivered"
