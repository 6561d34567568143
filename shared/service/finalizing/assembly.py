"""Exactly-once, in-order output on top of at-least-once delivery.

Each try that succeeds stages its rows as an *uncommitted block* whose id is the mini-batch index
plus a random token, so duplicate and concurrent tries never overwrite each other. The ledger
transaction that wins records which block counts. The finalizer commits the winners' block ids in
mini-batch order; every other block is discarded by the commit. Nothing is written twice, nothing is
created and deleted.

A blob holds at most 50,000 committed blocks, so mini-batch ``i`` is staged on shard ``i //
blocks_per_shard``: shard 0 is the output blob itself, later shards are blobs of the job's system
folder that the finalizer commits and appends to the output in chunks.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, ContentSettings

from shared.service import outbox
from shared.storage import Storage

log = logging.getLogger("parallelrun.output")

COPY_CHUNK = 64 * 1024 * 1024
HEADER_BLOCK = "header".ljust(22, "h")   # the same length as every other block id
TEXT = ContentSettings(content_type="text/plain; charset=utf-8")


class LostBlocks(Exception):
    """A commit named staged blocks storage no longer holds (``batches``: their mini-batches, when
    known; empty when only the commit's ``InvalidBlockList`` says so)."""

    def __init__(self, batches: list[int]) -> None:
        self.batches = batches
        super().__init__(f"staged rows lost for mini-batch(es) {batches[:10]}" if batches
                         else "a commit named a staged block that storage no longer holds")


def _lost_block(exc: HttpResponseError) -> bool:
    return getattr(exc, "error_code", None) == "InvalidBlockList" or \
        isinstance(exc, ResourceNotFoundError)


def block_id(batch: int) -> str:
    """A fresh block id for a try of ``batch``: all ids have the same length, as Azure requires."""
    return f"{batch:010d}{uuid.uuid4().hex[:12]}"


def _copy_block_id(shard: int, chunk: int) -> str:
    return f"s{shard:05d}c{chunk:06d}".ljust(22, "x")


@dataclass(frozen=True)
class OutputTarget:
    """Where a job's rows go."""

    job_id: str
    container: str
    blob_name: str                  # the output file, or with parts the folder holding them
    system_container: str
    blocks_per_shard: int
    parts: bool = False             # output_format parquet: one part blob per mini-batch

    def shard_of(self, batch: int) -> int:
        return batch // self.blocks_per_shard

    def part_blob(self, storage: Storage, batch: int) -> BlobClient:
        return storage.container(self.container).get_blob_client(
            f"{self.blob_name}/part-{batch:06d}.parquet")

    def staging_blob(self, storage: Storage, shard: int) -> BlobClient:
        if shard == 0:
            return storage.container(self.container).get_blob_client(self.blob_name)
        return storage.container(self.system_container).get_blob_client(
            f"jobs/{self.job_id}/shards/{shard:05d}")


def stage_rows(storage: Storage, target: OutputTarget, batch: int, data: str | bytes) -> str:
    """Stage a mini-batch's rows (or its part file); returns the block id the ledger must record.

    A blob holds at most 100,000 uncommitted blocks (duplicate and retried tries add to them): at
    that limit a checkpoint is requested, which commits the winners and so discards the rest, and
    the error goes up (the message is delivered again once the checkpoint has made room)."""
    bid = block_id(batch)
    blob = target.part_blob(storage, batch) if target.parts else \
        target.staging_blob(storage, target.shard_of(batch))
    try:
        blob.stage_block(bid, data.encode("utf-8") if isinstance(data, str) else data)
    except HttpResponseError as exc:
        if getattr(exc, "error_code", None) == "BlockCountExceedsLimit":
            outbox.finalize(storage, target.job_id, checkpoint=True)
            log.error("job=%s: %s holds too many uncommitted blocks; checkpoint requested",
                      target.job_id, blob.blob_name)
        raise
    return bid


def checkpoint(storage: Storage, target: OutputTarget, winners: list[tuple[int, str]],
               header: str = "") -> int:
    """Commit the winners staged so far onto each staging blob, in order (a job running or paused
    for days: uncommitted blocks expire ~7 days after upload; committed ones do not). Returns the
    blocks committed. Uncommitted blocks it does not name (tries still in flight) are discarded;
    the finalizer finds them missing and runs those mini-batches again. Each commit is
    conditional on the blob's ETag, so it never overwrites a commit made meanwhile (the output's
    final one)."""
    if target.parts:     # one blob per mini-batch: no other try's block is on it
        for batch, bid in winners:
            target.part_blob(storage, batch).commit_block_list([BlobBlock(bid)])
        return len(winners)
    by_shard: dict[int, list[str]] = {}
    for batch, bid in winners:
        by_shard.setdefault(target.shard_of(batch), []).append(bid)
    committed = 0
    for shard, ids in sorted(by_shard.items()):
        blob = target.staging_blob(storage, shard)
        blocks = [BlobBlock(b) for b in ids]
        if header and shard == 0:
            blob.stage_block(HEADER_BLOCK, header.encode("utf-8"))
            blocks.insert(0, BlobBlock(HEADER_BLOCK))
        try:
            condition: dict[str, Any] = {"etag": blob.get_blob_properties().etag,
                         "match_condition": MatchConditions.IfNotModified}
        except ResourceNotFoundError:
            condition = {"match_condition": MatchConditions.IfMissing}
        try:
            blob.commit_block_list(blocks, content_settings=TEXT, **condition)
        except (ResourceModifiedError, ResourceExistsError):
            log.info("checkpoint skipped: job=%s shard=%d changed meanwhile", target.job_id, shard)
            continue
        committed += len(ids)
    return committed


def assemble_parts(storage: Storage, target: OutputTarget, winners: Iterable[tuple[int, str]]) -> str:
    """Commit each winning part file (its one block), then ``_SUCCESS``; returns the folder URL."""
    count, lost = 0, []
    for batch, bid in winners:
        try:
            target.part_blob(storage, batch).commit_block_list([BlobBlock(bid)])
        except HttpResponseError as exc:
            if not _lost_block(exc):
                raise
            lost.append(batch)
        count += 1
    if lost:
        raise LostBlocks(lost)
    folder = storage.container(target.container)
    folder.upload_blob(f"{target.blob_name}/_SUCCESS", b"", overwrite=True)
    log.info("output committed: job=%s folder=%s/%s parts=%d", target.job_id, target.container,
             target.blob_name, count)
    return folder.get_blob_client(f"{target.blob_name}/").url


def assemble(storage: Storage, target: OutputTarget, winners: Iterable[tuple[int, str]],
             header: str = "") -> str:
    """Commit the winning blocks (``(batch, block id)`` in batch order), after ``header`` if any;
    returns the blob URL."""
    by_shard: dict[int, list[str]] = {}
    for batch, bid in winners:
        by_shard.setdefault(target.shard_of(batch), []).append(bid)
    output = target.staging_blob(storage, 0)
    blocks = []
    if header:
        output.stage_block(HEADER_BLOCK, header.encode("utf-8"))
        blocks.append(BlobBlock(HEADER_BLOCK))
    blocks += [BlobBlock(b) for b in by_shard.pop(0, [])]
    for shard in sorted(by_shard):
        shard_blob = target.staging_blob(storage, shard)
        _commit(shard_blob, [BlobBlock(b) for b in by_shard[shard]])
        size = shard_blob.get_blob_properties().size
        for chunk, offset in enumerate(range(0, size, COPY_CHUNK)):
            bid = _copy_block_id(shard, chunk)
            data = shard_blob.download_blob(offset, min(COPY_CHUNK, size - offset)).readall()
            output.stage_block(bid, data)
            blocks.append(BlobBlock(bid))
    _commit(output, blocks, content_settings=TEXT)
    log.info("output committed: job=%s blob=%s/%s blocks=%d", target.job_id, target.container,
             target.blob_name, len(blocks))
    return output.url


def _commit(blob: BlobClient, blocks: list[BlobBlock], **kwargs: Any) -> None:
    try:
        blob.commit_block_list(blocks, **kwargs)
    except HttpResponseError as exc:
        if _lost_block(exc):
            raise LostBlocks([]) from exc
        raise


def missing_blocks(storage: Storage, target: OutputTarget,
                   winners: Iterable[tuple[int, str]]) -> list[int]:
    """The mini-batches among ``winners`` (``(batch, block id)``) whose block storage no longer
    holds, staged or committed: one Get Block List per staging blob. Part files are checked by
    their commit (one block each), not here."""
    if target.parts:
        return []
    by_shard: dict[int, list[tuple[int, str]]] = {}
    for batch, bid in winners:
        by_shard.setdefault(target.shard_of(batch), []).append((batch, bid))
    missing = []
    for shard, wanted in sorted(by_shard.items()):
        try:
            committed, uncommitted = target.staging_blob(storage, shard).get_block_list("all")
        except ResourceNotFoundError:
            committed, uncommitted = [], []
        held = {b.id for b in committed} | {b.id for b in uncommitted}
        missing += [batch for batch, bid in wanted if bid not in held]
    return missing
