"""io-sdk: every blob of a workload read with the Azure SDK's async client (aiohttp)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from bench.limits.io_sweep import IoConfig, Pools, check_read, io_result, sweep
from bench.limits.results import log
from bench.limits.storage import BlobSet, Target, sdk_read
from bench.limits.timing import Workers, split


class SdkReader:
    """Worker state: reads its share of a blob set with the async SDK."""

    def __init__(self, connection_string: str, container: str, names: list[str]) -> None:
        import aiohttp  # noqa: F401  (imported here so that no timed run pays for it)
        import azure.storage.blob.aio  # noqa: F401
        self.connection_string, self.container, self.names = connection_string, container, names

    def read(self, concurrency: int) -> tuple[int, int]:
        count, size, _ = asyncio.run(sdk_read(self.connection_string, self.container, self.names,
                                               concurrency))
        return count, size


def measure_io_sdk(target: Target, blobs: BlobSet, workload: str, configs: Sequence[IoConfig],
                   runs: int, rows: int | None = None) -> dict[str, Any]:
    log(f"io-sdk {workload}: {len(blobs.names)} blobs, {blobs.total_bytes / 1e6:.1f} MB")
    pools = Pools(lambda p: Workers(SdkReader, [(target.connection_string, blobs.container, part)
                                                for part in split(blobs.names, p)],
                                    target.azurite_pid))
    try:
        best, measured, screening = sweep(
            configs, lambda c: pools.get(c.processes).run("read", c.concurrency), runs,
            check_read(blobs))
    finally:
        pools.close()
    return io_result("io-sdk", workload, blobs, measured, best, screening, rows,
                      f"azure.storage.blob.aio ContainerClient.download_blob(name).readall() over one "
                      f"aiohttp session per process; best of {len(configs)} configs: "
                      f"{best.processes} process(es) x {best.concurrency} concurrent downloads")
