"""The storage under test and the workloads' blobs in it: listed once and never timed; read with
the Azure SDK's async client (:func:`sdk_read`: untimed to hold data in memory, timed by io-sdk)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench import workloads


@dataclass(frozen=True)
class Target:
    """The storage account under test; ``azurite_pid`` (when known) lets runs report Azurite's CPU."""

    connection_string: str
    azurite_pid: int | None = None

    def fields(self) -> dict[str, str]:
        return dict(kv.split("=", 1) for kv in self.connection_string.split(";") if "=" in kv)


@dataclass(frozen=True)
class BlobSet:
    """Known blobs of one workload: listed once, never timed."""

    container: str
    names: list[str]
    sizes: list[int]

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes)


@dataclass(frozen=True)
class TableSet(BlobSet):
    """One table format's files; ``data`` holds their bytes (read once, untimed)."""

    fmt: str = "csv"
    rows: int = 0
    data: list[bytes] = field(default_factory=list, repr=False)


def list_blobs(target: Target, container: str, prefix: str) -> BlobSet:
    from azure.storage.blob import ContainerClient

    with ContainerClient.from_connection_string(target.connection_string, container) as client:
        blobs = sorted((b.name, int(b.size)) for b in client.list_blobs(name_starts_with=prefix))
    if not blobs:
        raise SystemExit(f"no blobs under {container}/{prefix}: upload the workload first "
                         f"(bench.workloads) or use --standalone")
    return BlobSet(container, [n for n, _ in blobs], [s for _, s in blobs])


def image_set(target: Target) -> BlobSet:
    return list_blobs(target, workloads.IMAGES_CONTAINER, workloads.IMAGES_PREFIX)


def table_set(target: Target, fmt: str) -> TableSet:
    """The files of one format, downloaded once (untimed: also warms Azurite) and their rows counted."""
    listed = list_blobs(target, workloads.TABLES_CONTAINER, f"{fmt}/")
    data = asyncio.run(sdk_read(target.connection_string, listed.container, listed.names,
                                 concurrency=4, keep=True))[2]
    return TableSet(listed.container, listed.names, listed.sizes, fmt=fmt,
                    rows=sum(_count_rows(fmt, d) for d in data), data=data)


def _count_rows(fmt: str, data: bytes) -> int:
    if fmt == "parquet":
        import pyarrow.parquet as pq
        return int(pq.ParquetFile(io.BytesIO(data)).metadata.num_rows)
    return data.count(b"\n") - 1 + (not data.endswith(b"\n"))     # less the header line


async def sdk_read(connection_string: str, container: str, names: Sequence[str], concurrency: int,
                    keep: bool = False) -> tuple[int, int, list[bytes]]:
    """Download ``names`` with ``concurrency`` coroutines sharing one aiohttp session sized to it.

    Returns (blobs read, bytes read, the bodies in ``names`` order if ``keep``)."""
    import aiohttp
    from azure.core.pipeline.transport import AioHttpTransport
    from azure.storage.blob.aio import ContainerClient

    bodies: list[bytes] = [b""] * len(names) if keep else []
    totals = [0, 0]
    work = iter(enumerate(names))      # shared by the coroutines: each takes the next blob

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                     auto_decompress=False) as session:
        transport = AioHttpTransport(session=session, session_owner=False)
        async with ContainerClient.from_connection_string(connection_string, container,
                                                          transport=transport) as client:
            async def reader() -> None:
                for index, name in work:
                    downloader = await client.download_blob(name, max_concurrency=1)
                    data = await downloader.readall()
                    totals[0] += 1
                    totals[1] += len(data)
                    if keep:
                        bodies[index] = data
            await asyncio.gather(*(reader() for _ in range(min(concurrency, len(names)))))
    return totals[0], totals[1], bodies
