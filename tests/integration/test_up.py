"""``parallelrun up`` is a host: it restarts a node that dies, and nothing outlives it.

Each test runs ``up`` as a real process on free ports with its own scratch folder; the processes
it leaves (Azurite, nodes, scoring processes) are found through /proc by that folder in their
environment, and only those are ever killed.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.local.azurite import free_port
from shared.local.cluster import LocalCluster, restart_delay
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.service.working import snapshots
from shared.settings import Settings
from shared.storage import Storage

from . import conftest
from .conftest import SCRIPTS, put_files

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def marked(marker: str) -> dict[int, str]:
    """pid -> command line of every live process whose scratch folder is ``marker`` (scoring
    processes, which inherit none of the host's settings, by their home folder inside it)."""
    found = {}
    needle = f"PARALLELRUN_SCRATCH_DIR={marker}".encode()
    home = f"HOME={marker}/".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            if needle in env or any(v.startswith(home) for v in env):
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(
                        b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def kinds(procs: dict[int, str]) -> dict[str, int]:
    out = {"azurite": 0, "node": 0, "scoring": 0}
    for cmd in procs.values():
        for kind, needle in (("azurite", "bin/azurite"), ("node", "shared.local.node"),
                             ("scoring", "shared.scoring")):
            if needle in cmd:
                out[kind] += 1
    return out


wait_for = functools.partial(conftest.wait_for, timeout_s=45.0, poll_s=0.1)


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass
class Up:
    """One ``parallelrun up`` process of this test."""

    process: subprocess.Popen[bytes]
    console: Path

    def text(self) -> str:
        return self.console.read_text(errors="replace")


@dataclass
class Place:
    tmp: Path
    marker: str
    ports: str
    http_port: int
    started: list[Up]

    def up(self, *args: str) -> Up:
        console = self.tmp / f"up{len(self.started)}.txt"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AzureWebJobsStorage")}
        env.update({"PARALLELRUN_SCRATCH_DIR": self.marker, "PARALLELRUN_WARM_PROCESSES": "1",
                    "PARALLELRUN_LOCAL_STOP_GRACE_S": "5", "PYTHONPATH": str(ROOT)})
        with open(console, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", "from shared.cli.main import main; main()", "up",
                 "--port", str(self.http_port), "--azurite-ports", self.ports,
                 "--data", str(self.tmp / "azurite"), "--log-dir", str(self.tmp / "logs"), *args],
                cwd=self.tmp, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True)
        up = Up(process, console)
        self.started.append(up)
        return up

    def ready(self, up: Up, nodes: int) -> None:
        wait_for("up to serve its API", lambda: healthy(self.http_port) or up.process.poll())
        assert up.process.poll() is None, up.text()
        wait_for(f"{nodes} node(s) with warm scoring processes", lambda: (
            kinds(marked(self.marker)) == {"azurite": 1, "node": nodes, "scoring": nodes}))


@pytest.fixture
def place(tmp_path: Path) -> Iterator[Place]:
    marker = str(tmp_path / "scratch")
    p = Place(tmp_path, marker, ",".join(str(free_port()) for _ in range(3)), free_port(), [])
    yield p
    for up in p.started:
        if up.process.poll() is None:
            up.process.kill()
            up.process.wait()
    for pid in marked(marker):   # whatever a failing test left behind: ours, by marker
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def node_pids(marker: str) -> dict[str, int]:
    out = {}
    for pid, cmd in marked(marker).items():
        match = re.search(r"shared\.local\.node --node-id (\S+)", cmd)
        if match:
            out[match.group(1)] = pid
    return out


def test_up_killed_or_its_terminal_closed_leaves_nothing_behind(place: Place) -> None:
    first = place.up("--nodes", "1")
    place.ready(first, nodes=1)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait(30)
    wait_for("every process of the killed up to end", lambda: not marked(place.marker),
             timeout_s=20)
    second = place.up("--nodes", "1")           # the same ports: nothing holds them any more
    place.ready(second, nodes=1)
    os.kill(second.process.pid, signal.SIGHUP)  # its terminal closed
    assert second.process.wait(40) == 0, second.text()
    wait_for("the second up to leave nothing", lambda: not marked(place.marker), timeout_s=20)
    assert "address already in use" not in second.text()


def test_a_node_killed_under_up_comes_back(place: Place) -> None:
    up = place.up("--nodes", "2")
    place.ready(up, nodes=2)
    killed = node_pids(place.marker)["node1"]
    os.kill(killed, signal.SIGKILL)
    wait_for("the restart's log line", lambda: re.search(
        r"node1 exited with code -9; restarting in \S+ s \(restart 1\)", up.text()))
    wait_for("node1 back", lambda: node_pids(place.marker).get("node1", killed) != killed
             and "node1 is back" in up.text())
    assert healthy(place.http_port)
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(40) == 0, up.text()
    wait_for("up to leave nothing", lambda: not marked(place.marker), timeout_s=20)


@pytest.fixture
def reaped(settings: Settings) -> Iterator[str]:
    """This test's scratch folder as a marker; its processes that are left at the end are killed."""
    yield settings.scratch_dir
    for pid in marked(settings.scratch_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_node_whose_parent_died_stops_and_kills_its_busy_scoring_processes(
        settings: Settings, storage: Storage, tmp_path: Path, reaped: str) -> None:
    put_files(storage, "orphaned", {"o1.txt": b"x", "o2.txt": b"x"})
    ledger = Ledger(storage.ledger)
    marker = reaped
    with LocalCluster(settings, nodes=1, log_dir=tmp_path / "logs",
                      env={"PARALLELRUN_LOCAL_STOP_GRACE_S": "2"}) as cluster:
        job = jobs.submit(storage, ledger, {
            "name": "orphaned", "entry_script": "slow.py",
            "source_directory": snapshots.upload(storage, SCRIPTS), "inputs": ["orphaned/"],
            "mini_batch_size": "1", "process_count_per_node": 2,
            "environment_variables": {"SLOW_SECONDS": "600"}})
        wait_for("run() under way", lambda: any(
            b.state == "running" for b in ledger.batches(job.job_id)), timeout_s=60)
        # the row says running before its scoring process has started
        wait_for("its scoring processes", lambda: kinds(marked(marker))["scoring"] >= 1, timeout_s=30)
        busy = kinds(marked(marker))
        assert busy["node"] == 1 and busy["scoring"] >= 1, busy
        cluster.abandon()
        assert cluster.nodes[0].process.wait(30) is not None
        wait_for("the node's scoring processes to end", lambda: not marked(marker), timeout_s=20)
    assert "its parent is gone" in cluster.log_path(0).read_text()


# -- supervision of LocalCluster ----------------------------------------------------------------
def test_restart_delays_double_up_to_a_limit() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert restart_delay(9) == 30 and restart_delay(3, base_s=0.5, max_s=1.5) == 1.5


@pytest.mark.scores_nothing
def test_a_node_that_crashes_at_start_is_restarted_with_growing_delays(
        settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = tmp_path / "function_app.py"
    good = (ROOT / "tests" / "integration" / "hostapp" / "function_app.py").read_text()
    app.write_text(good)
    caplog.set_level("WARNING", logger="parallelrun.local.cluster")
    with LocalCluster(settings, nodes=1, app_path=app, log_dir=tmp_path / "logs",
                      supervise=True, restart_backoff_s=0.2, max_restart_backoff_s=5) as cluster:
        app.write_text("raise SystemExit(3)\n")   # every start from now on fails
        cluster.nodes[0].process.kill()
        lines = wait_for("four restarts", lambda: [
            r.getMessage() for r in caplog.records if "restarting in" in r.getMessage()][3:] and [
            r.getMessage() for r in caplog.records if "restarting in" in r.getMessage()])
        delays = [float(re.search(r"restarting in (\S+) s", m).group(1)) for m in lines[:4]]
        assert delays == [0.2, 0.4, 0.8, 1.6], lines
        assert "node0 exited with code -9" in lines[0]
        assert all("exited with code 3" in m for m in lines[1:4]), lines
        app.write_text(good)
        wait_for("node0 back", lambda: any("node0 is back" in r.getMessage()
                                           for r in caplog.records))
        assert cluster.is_alive(0)
        cluster.kill(0)   # on purpose: not restarted
        count = len(caplog.records)
        time.sleep(0.5)
        assert not cluster.is_alive(0)
        assert not [r for r in caplog.records[count:] if "restarting" in r.getMessage()]
