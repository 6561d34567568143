"""One local host process, in the foreground.

    python -m shared.local.node --node-id ID [--http-port N] [--app PATH] [--host-json PATH]
                                [--parent-fd FD]

Runs a :class:`~shared.local.host.LocalHost` over ``Settings.from_env()`` in the foreground until
SIGINT, SIGTERM or SIGHUP, or, with ``--parent-fd``, until that pipe reaches end-of-file (the
parent that holds its other end died, even by SIGKILL). Stopping finishes the in-flight
invocations for up to ``PARALLELRUN_LOCAL_STOP_GRACE_S`` (default 20 s); then, and whenever the
node exits, its scoring processes are killed with their process groups, so none outlives it.
:class:`~shared.local.cluster.LocalCluster` starts one per node (``--nodes N``).
Once every listener runs it prints one line ``parallelrun-local node <ID> ready [http=<URL>]`` on
stdout, which the cluster waits for. The lease is ``PARALLELRUN_LOCAL_LEASE_S`` (default 30 s).
``kill -USR1 <pid>`` writes every thread's stack to the node's log (for a stuck node). With
``PARALLELRUN_LOCAL_CPU_DIR`` set, ``kill -USR2 <pid>`` writes the node's CPU accounting there
(:mod:`shared.local.cpustats`; ``PARALLELRUN_LOCAL_PROFILE=1`` adds a profile of every thread).
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from shared.local import cpustats
from shared.local.host import DEFAULT_APP, DEFAULT_HOST_JSON, LocalHost, load_app
from shared.local.procs import kill_children, watch_parent
from shared.settings import Settings

log = logging.getLogger("parallelrun.local.node")

READY = "parallelrun-local node {node_id} ready"
STOP_GRACE_ENV = "PARALLELRUN_LOCAL_STOP_GRACE_S"
DEFAULT_STOP_GRACE_S = 20.0   # below LocalCluster.stop's 30 s, so the node cleans up itself


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m shared.local.node", description=__doc__)
    parser.add_argument("--node-id", default="node0", help="name of this node in logs and ledger")
    parser.add_argument("--http-port", type=int, default=None,
                        help="serve the HTTP functions on 127.0.0.1:PORT (0: any free port)")
    parser.add_argument("--app", default=str(DEFAULT_APP), help="function app module file")
    parser.add_argument("--host-json", default=str(DEFAULT_HOST_JSON), help="host.json to honour")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--parent-fd", type=int, default=None,
                        help="stop when this pipe reaches end-of-file (the parent died)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {args.node_id} %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to the log
    grace_s = float(os.environ.get(STOP_GRACE_ENV) or DEFAULT_STOP_GRACE_S)
    stop = _Stop(args.node_id, grace_s)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.request(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    cpustats.install(args.node_id)   # opt-in: PARALLELRUN_LOCAL_CPU_DIR (kill -USR2 writes it)
    if args.parent_fd is not None:
        watch_parent(args.parent_fd, lambda: stop.request("its parent is gone"))
    try:
        host = LocalHost(load_app(args.app), Settings.from_env(), host_json=args.host_json,
                         node_id=args.node_id, http_port=args.http_port)
        host.start()
        line = READY.format(node_id=args.node_id)
        if args.http_port is not None:
            line += f" http={host.http_url}"
        print(line, flush=True)
        while not stop.event.wait(0.5):
            pass
        host.stop()
        stop.done()
    finally:
        kill_children()   # scoring processes a failed start or a stuck stop left behind
    return 0


class _Stop:
    """A stop request, and the deadline it sets: a node that has not stopped ``grace_s`` after
    it was asked to (in-flight invocations that go on, storage that no longer answers during
    start) kills its scoring processes and exits at once."""

    def __init__(self, node_id: str, grace_s: float) -> None:
        self.node_id = node_id
        self.grace_s = grace_s
        self.event = threading.Event()
        self._watchdog: threading.Timer | None = None

    def request(self, why: str) -> None:
        if self.event.is_set():
            return
        log.warning("node %s: %s, stopping", self.node_id, why)
        self.event.set()
        self._watchdog = threading.Timer(self.grace_s, self._too_late)
        self._watchdog.daemon = True
        self._watchdog.start()

    def done(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()

    def _too_late(self) -> None:
        log.warning("node %s did not stop within %.0f s; killing its scoring processes",
                    self.node_id, self.grace_s)
        kill_children()
        os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
