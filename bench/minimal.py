"""The minimal client: the CPU a bare reader spends per image, beside ParallelRun's, in the same
harness run and on the same blobs.

One spawned process reads every image of the workload with a container SAS made once (no
per-request signing), 64 GETs in flight, in one of these ways:

* ``aiohttp`` (the targets' reference: what an ordinary async Python reader uses):
  ``aiohttp.ClientSession``, 64 GETs in flight over keep-alive connections, with its C HTTP
  parser, URL objects, cookie jar and tracing hooks; needs requirements-bench.txt (``./dev bench``
  installs it);
* ``streams`` (a floor for a client library): 64 coroutines, each on its own keep-alive connection
  (asyncio streams), one GET at a time: request line and headers written, status line and headers
  parsed into a dict, the body read by its Content-Length. What an async client such as aiohttp
  does per GET, without its extras (URL objects, cookie jar, tracing hooks);
* ``pipelined``: io-http's own asyncio protocol (:mod:`bench.limits.io_http`: 8 connections x 8
  pipelined requests, Content-Length framing, no header parsing): the floor for any reader;
* ``httpx``: ``httpx.AsyncClient`` with 64 GETs in flight (pure-Python h11 parsing and anyio: far
  heavier per GET than aiohttp, see docs/performance.md; not run by the harness).

Its own CPU is ``time.process_time()`` in that process around the reads (all its threads),
Azurite's is its process's (``/proc``), both per image; the median of ``runs`` runs. No decoding,
no scoring, no bookkeeping: what a reader must spend.

    .venv/bin/python -m bench.minimal --connection-string "$CS" --azurite-pid PID [--runs 3] [--client streams]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from typing import Any

from bench.limits.io_http import HttpReader, http_target
from bench.limits.storage import Target, image_set
from bench.limits.timing import Workers

CONNECTIONS, DEPTH = 8, 8
IN_FLIGHT = 64
NOTES = {"aiohttp": f"aiohttp.ClientSession, {IN_FLIGHT} GETs in flight over keep-alive connections",
         "httpx": f"httpx.AsyncClient, {IN_FLIGHT} GETs in flight over keep-alive connections",
         "pipelined": f"own asyncio HTTP/1.1 protocol, {CONNECTIONS} connections x {DEPTH} pipelined GETs",
         "streams": f"asyncio streams, {IN_FLIGHT} keep-alive connections x 1 GET at a time, "
                    f"status and headers parsed"}
MAX_HEADER = 64 * 1024


class StreamsReader:
    """Worker state for ``streams``: the request bytes, built once; each run opens fresh
    connections."""

    def __init__(self, host: str, port: int, requests: list[bytes]) -> None:
        self.host, self.port, self.requests = host, port, requests

    def read(self, concurrency: int) -> tuple[int, int]:
        import asyncio

        async def go() -> tuple[int, int]:
            totals = [0, 0]
            work = iter(self.requests)

            async def reader() -> None:
                r, w = await asyncio.open_connection(self.host, self.port, limit=MAX_HEADER)
                try:
                    for request in work:
                        w.write(request)
                        head = await r.readuntil(b"\r\n\r\n")
                        status, *lines = head[:-4].decode("latin-1").split("\r\n")
                        headers = {k.strip().lower(): v.strip()
                                   for k, _, v in (line.partition(":") for line in lines)}
                        if status.split(" ", 2)[1] != "200":
                            raise RuntimeError(f"HTTP error: {status}")
                        body = await r.readexactly(int(headers["content-length"]))
                        totals[0] += 1
                        totals[1] += len(body)
                finally:
                    w.close()
            await asyncio.gather(*(reader() for _ in range(concurrency)))
            return totals[0], totals[1]
        return asyncio.run(go())


class _ClientReader:
    """Worker state for a client library's reader: the URLs, built once; each run opens a fresh
    client (:meth:`client`) and keeps ``concurrency`` GETs (:meth:`get`) in flight."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls

    def client(self, concurrency: int) -> Any:
        raise NotImplementedError

    async def get(self, client: Any, url: str) -> bytes:
        raise NotImplementedError

    def read(self, concurrency: int) -> tuple[int, int]:
        import asyncio

        async def go() -> tuple[int, int]:
            totals = [0, 0]
            work = iter(self.urls)
            async with self.client(concurrency) as client:
                async def reader() -> None:
                    for url in work:
                        body = await self.get(client, url)
                        totals[0] += 1
                        totals[1] += len(body)
                await asyncio.gather(*(reader() for _ in range(concurrency)))
            return totals[0], totals[1]
        return asyncio.run(go())


class HttpxReader(_ClientReader):
    """``httpx.AsyncClient``."""

    def client(self, concurrency: int) -> Any:
        import httpx
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        return httpx.AsyncClient(limits=limits, timeout=60)

    async def get(self, client: Any, url: str) -> bytes:
        response = await client.get(url)
        response.raise_for_status()
        return bytes(response.content)


class AiohttpReader(_ClientReader):
    """``aiohttp.ClientSession``."""

    def client(self, concurrency: int) -> Any:
        import aiohttp
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency))

    async def get(self, client: Any, url: str) -> bytes:
        async with client.get(url) as response:
            response.raise_for_status()
            return bytes(await response.read())


def available(client: str) -> bool:
    """Whether ``client``'s library is installed (aiohttp and httpx come with the bench's
    requirements only)."""
    if client in ("aiohttp", "httpx"):
        import importlib.util
        return importlib.util.find_spec(client) is not None
    return True


def measure(connection_string: str, azurite_pid: int | None, runs: int = 3,
            client: str = "streams") -> dict[str, Any]:
    from urllib.parse import quote

    target = Target(connection_string, azurite_pid)
    blobs = image_set(target)
    http = http_target(target, blobs.container)
    n = len(blobs.names)
    if client in ("httpx", "aiohttp"):
        base = f"http://{http.host}:{http.port}{http.path}"
        factory: Any = HttpxReader if client == "httpx" else AiohttpReader
        args: tuple[Any, ...] = ([f"{base}/{quote(name)}?{http.sas}" for name in blobs.names],)
        run_args: tuple[Any, ...] = (IN_FLIGHT,)
    elif client == "streams":
        factory, args = StreamsReader, (http.host, http.port, [http.request(name) for name in blobs.names])
        run_args = (IN_FLIGHT,)
    else:
        factory, args = HttpReader, (http.host, http.port, [http.request(name) for name in blobs.names])
        run_args = (CONNECTIONS, DEPTH)
    timed = []
    with Workers(factory, [args], azurite_pid) as workers:
        for _ in range(runs):
            t = workers.run("read", *run_args)
            read, nbytes = t.results[0]
            if read != n or nbytes != blobs.total_bytes:
                raise RuntimeError(f"the minimal client read {read} blobs ({nbytes} bytes), "
                                   f"expected {n} ({blobs.total_bytes})")
            timed.append(t)
    own = statistics.median(t.client_cpu_s for t in timed)
    server = [t.server_cpu_s for t in timed if t.server_cpu_s is not None]
    seconds = statistics.median(t.seconds for t in timed)
    return {"name": f"minimal client ({client})", "client": client, "items": n,
            "items_per_s": round(n / seconds, 1),
            "seconds": round(seconds, 3), "runs": [round(t.seconds, 3) for t in timed],
            "cpu_ms_per_item": round(1000 * own / n, 4),
            "azurite_ms_per_item": round(1000 * statistics.median(server) / n, 4) if server else None,
            "notes": f"one process, {NOTES[client]}, container SAS made once, bodies read and "
                     f"length-checked, not decoded"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connection-string", required=True)
    parser.add_argument("--azurite-pid", type=int)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--client", choices=(*NOTES, "all"), default="all")
    args = parser.parse_args()
    for client in (tuple(NOTES) if args.client == "all" else (args.client,)):
        print(json.dumps(measure(args.connection_string, args.azurite_pid, args.runs, client)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
