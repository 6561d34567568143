"""io-http, the I/O limit: the same reads as io-sdk with a minimal pipelined HTTP/1.1 client of our
own (an asyncio protocol, one container SAS made once, no per-request signing)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from bench.limits.io_sweep import IoConfig, Pools, check_read, io_result, sweep
from bench.limits.results import log
from bench.limits.storage import BlobSet, Target
from bench.limits.timing import Workers, split

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


class _PipelinedConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection keeping up to ``depth`` GETs in flight (pipelining).

    Requests come from an iterator shared by all the connections of a reader, so a fast connection
    takes more of them. Responses come back in request order; each is framed by its Content-Length
    (Azurite sends one for blob GETs; anything else, or a status other than 200, is an error). Just
    enough HTTP for this: no chunked bodies, no redirects, no retries."""

    def __init__(self, requests: Iterator[bytes], depth: int, done: asyncio.Future[None]) -> None:
        self._requests = requests
        self._depth = depth
        self._done = done
        self._transport: asyncio.Transport | None = None
        self._in_flight = 0
        self._buf = bytearray()
        self._need = -1                 # body bytes still due; -1 while reading a header
        self._chunks: list[bytes] = []
        self.responses = 0
        self.body_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send_more()

    def data_received(self, data: bytes) -> None:
        try:
            if 0 < self._need and not self._buf and len(data) <= self._need:
                # The middle of a large body: keep the chunk as it is, no copy into the buffer.
                self._chunks.append(data)
                self._need -= len(data)
                if self._need == 0:
                    self._complete()
            else:
                self._buf += data
                self._parse()
            self._send_more()
        except Exception as exc:  # noqa: BLE001 - ends the read with the error
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done.done():
            return
        if self._in_flight:
            self._done.set_exception(ConnectionError(
                f"connection closed with {self._in_flight} request(s) unanswered: {exc}"))
        else:
            self._done.set_result(None)

    def _send_more(self) -> None:
        assert self._transport is not None
        batch = []
        while self._in_flight < self._depth:
            request = next(self._requests, None)
            if request is None:
                break
            batch.append(request)
            self._in_flight += 1
        if batch:
            self._transport.write(b"".join(batch))     # one send for the whole batch
        elif self._in_flight == 0 and not self._transport.is_closing():
            self._transport.close()                    # nothing left: connection_lost resolves done

    def _parse(self) -> None:
        buf = self._buf
        while buf:
            if self._need < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(buf[:end])
                if head[9:12] != b"200":
                    raise RuntimeError(f"HTTP error: {head.decode(errors='replace')[:400]}")
                match = _CONTENT_LENGTH.search(head)
                if match is None:
                    raise RuntimeError("response without Content-Length (chunked?)")
                del buf[:end + 4]
                self._need = int(match.group(1))
                if self._need == 0:
                    self._complete()
                continue
            take = min(self._need, len(buf))
            self._chunks.append(bytes(buf[:take]))
            del buf[:take]
            self._need -= take
            if self._need == 0:
                self._complete()

    def _complete(self) -> None:
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks = []
        self._need = -1
        self._in_flight -= 1
        self.responses += 1
        self.body_bytes += len(body)

    def _fail(self, exc: Exception) -> None:
        if not self._done.done():
            self._done.set_exception(exc)
        if self._transport is not None:
            self._transport.abort()


async def _http_read(host: str, port: int, requests: Sequence[bytes], connections: int,
                     depth: int) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    shared = iter(requests)
    protocols: list[_PipelinedConnection] = []
    waits: list[asyncio.Future[None]] = []
    for _ in range(min(connections, len(requests))):
        done: asyncio.Future[None] = loop.create_future()
        protocol = _PipelinedConnection(shared, depth, done)
        await loop.create_connection(lambda p=protocol: p, host, port)
        protocols.append(protocol)
        waits.append(done)
    await asyncio.gather(*waits)
    return sum(p.responses for p in protocols), sum(p.body_bytes for p in protocols)


@dataclass(frozen=True)
class HttpTarget:
    """Where raw requests go and how they are authorised: one container SAS, made once."""

    host: str
    port: int
    path: str           # the container's URL path, e.g. /devstoreaccount1/bench-images
    sas: str

    def request(self, blob: str) -> bytes:
        return (f"GET {self.path}/{quote(blob)}?{self.sas} HTTP/1.1\r\n"
                f"Host: {self.host}:{self.port}\r\n\r\n").encode("ascii")


def http_target(target: Target, container: str) -> HttpTarget:
    from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

    fields = target.fields()
    url = urlsplit(ContainerClient.from_connection_string(target.connection_string, container).url)
    if url.scheme != "http" or url.hostname is None or url.port is None:
        raise SystemExit(f"io-http speaks plain HTTP to host:port only, not {url.geturl()}")
    sas = generate_container_sas(fields["AccountName"], container, account_key=fields["AccountKey"],
                                 permission=ContainerSasPermissions(read=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=6))
    return HttpTarget(url.hostname, url.port, url.path.rstrip("/"), sas)


class HttpReader:
    """Worker state: its share of the requests, built once; each run opens fresh connections."""

    def __init__(self, host: str, port: int, requests: list[bytes]) -> None:
        self.host, self.port, self.requests = host, port, requests

    def read(self, connections: int, depth: int) -> tuple[int, int]:
        return asyncio.run(_http_read(self.host, self.port, self.requests, connections, depth))


def measure_io_http(target: Target, blobs: BlobSet, workload: str, configs: Sequence[IoConfig],
                    runs: int, rows: int | None = None) -> dict[str, Any]:
    log(f"io-http {workload}: {len(blobs.names)} blobs, {blobs.total_bytes / 1e6:.1f} MB")
    http = http_target(target, blobs.container)
    requests = [http.request(name) for name in blobs.names]
    pools = Pools(lambda p: Workers(HttpReader, [(http.host, http.port, part)
                                                 for part in split(requests, p)],
                                    target.azurite_pid))
    try:
        best, measured, screening = sweep(
            configs, lambda c: pools.get(c.processes).run("read", c.concurrency, c.depth), runs,
            check_read(blobs))
    finally:
        pools.close()
    return io_result("io-http", workload, blobs, measured, best, screening, rows,
                      f"own asyncio HTTP/1.1 client, container SAS made once, Content-Length framing; "
                      f"best of {len(configs)} configs: {best.processes} process(es) x "
                      f"{best.concurrency} keep-alive connection(s) x {best.depth} pipelined "
                      f"request(s) each")
