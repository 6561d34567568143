"""One local host process, in the foreground.

    python -m shared.local.node --node-id ID [--http-port N] [--app PATH] [--host-json PATH]

Runs a :class:`~shared.local.host.LocalHost` over ``Settings.from_env()`` in the foreground until
SIGINT/SIGTERM. :class:`~shared.local.cluster.LocalCluster` starts one per node (``--nodes N``).
Once every listener runs it prints one line ``parallelrun-local node <ID> ready [http=<URL>]`` on
stdout, which the cluster waits for. The lease is ``PARALLELRUN_LOCAL_LEASE_S`` (default 30 s).
``kill -USR1 <pid>`` writes every thread's stack to the node's log (for a stuck node).
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys
from collections.abc import Sequence

from ..settings import Settings
from .host import DEFAULT_APP, DEFAULT_HOST_JSON, LocalHost, load_app

READY = "parallelrun-local node {node_id} ready"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m shared.local.node", description=__doc__)
    parser.add_argument("--node-id", default="node0", help="name of this node in logs and ledger")
    parser.add_argument("--http-port", type=int, default=None,
                        help="serve the HTTP functions on 127.0.0.1:PORT (0: any free port)")
    parser.add_argument("--app", default=str(DEFAULT_APP), help="function app module file")
    parser.add_argument("--host-json", default=str(DEFAULT_HOST_JSON), help="host.json to honour")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s {args.node_id} %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to the log
    host = LocalHost(load_app(args.app), Settings.from_env(), host_json=args.host_json,
                     node_id=args.node_id, http_port=args.http_port)
    host.start()
    line = READY.format(node_id=args.node_id)
    if args.http_port is not None:
        line += f" http={host.http_url}"
    print(line, flush=True)
    host.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
