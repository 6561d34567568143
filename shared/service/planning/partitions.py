"""Planning with ``partition_keys``: exactly one mini-batch per combination of key values, in any
listing order, page by page.

A combination's files need not be next to each other in the listing (``u5/fall/piano.wav``,
``u5/fall/rock.wav``, ``u5/winter/piano.wav`` with keys ``[user, genres]``), so planning has two
phases, both one bounded step at a time, with their state in the job's ledger partition:

1. *Listing* (one page per step, as for every job): the page's items are grouped by combination,
   in order of first appearance. For each combination the step records where it was first seen, a
   ``ps<hash>`` row created once (:meth:`Ledger.see_partitions`): the page (the step's number)
   and the position of its first item there. A combination first seen on this page gets its order
   row ``po<page><position>-<hash>`` holding its items of this page; one seen before gets a
   continuation row ``pc<hash>-<page>`` with its items of this page, and its order row is marked
   ``more``. No mini-batch is written yet.
2. *Cutting* (after the last page): the order rows are read in key order, i.e. the combinations in
   order of first appearance, a bounded number of items per step; a combination marked ``more``
   has its continuation rows read too (a range query, in page order). Each combination becomes
   ONE mini-batch row, enqueued as in every job.

Every write is idempotent, so a step that dies is simply run again: the ``ps`` row is created at
most once and re-read by a re-run (which then writes the same order row), the other rows are
upserts of the same content. A page listed again can differ from the first listing (blobs added
meanwhile move the page's end): a file that a combination's earlier page already holds is not
taken twice (:func:`merge`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from shared.errors import SubmitterError
from shared.scoring.tables import partition_of
from shared.service.ledger.rows import (
    PARTITION_ITEMS_CHARS,
    PartitionRow,
    continuation_entity,
    mark_entity,
    order_entity,
    transaction_chunks,
)
from shared.service.ledger.store import Ledger
from shared.spec import InputSpec

ITEMS_CHARS = PARTITION_ITEMS_CHARS    # the items of one mini-batch row, as JSON
GROUP = 16          # order rows whose continuation rows are read at once (cutting, phase 2)


@dataclass
class Combination:
    """The items of one combination on one page."""

    combo: str                  # the hash of (input index, key values): its rows' keys
    input_index: int
    values: dict[str, str]
    first: int                  # the position of its first item among the page's items
    items: list[list[Any]] = field(default_factory=list)


def combination_key(input_index: int, values: Sequence[str]) -> str:
    """A combination's hash (128 bits: combinations never collide in practice)."""
    text = json.dumps([input_index, list(values)], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def combinations(items: list[list[Any]], inputs: Sequence[InputSpec], keys: list[str]
                 ) -> list[Combination]:
    """A page's items ``[input, blob, ...]`` grouped by (input, values of ``keys``), in order of
    first appearance; a combination never spans inputs."""
    found: dict[tuple[int, tuple[str, ...]], Combination] = {}
    for pos, item in enumerate(items):
        values = partition_of(inputs[item[0]].wire, item[1], keys)
        ident = (item[0], tuple(values.values()))
        combination = found.get(ident)
        if combination is None:
            combination = found[ident] = Combination(combination_key(*ident), item[0], values, pos)
        combination.items.append(item)
    for combination in found.values():
        check_size(combination.items, inputs)
    return list(found.values())


def check_size(items: list[list[Any]], inputs: Sequence[InputSpec]) -> str:
    """The items as JSON; a SubmitterError if one mini-batch row cannot hold them."""
    text = json.dumps(items, separators=(",", ":"))
    if len(text) > ITEMS_CHARS:
        first = items[0]
        raise SubmitterError(
            f"the partition of {first[1]!r} (input {inputs[first[0]].describe()}) has more items "
            f"than one mini-batch can list ({len(items):,} so far, {len(text):,} characters of "
            f"names; at most {ITEMS_CHARS:,}): partition by more keys")
    return text


def merge(rows: Iterable[tuple[int, list[list[Any]]]]) -> list[list[Any]]:
    """A combination's items from its rows ``(page, items)``, in page order. The items of a file
    that an earlier page already holds are left out: a page listed again after the listing moved
    can hold a file that the next page holds too."""
    out: list[list[Any]] = []
    taken: set[tuple[int, str]] = set()
    for _, items in sorted(rows, key=lambda row: row[0]):
        names = set()
        for item in items:
            name = (item[0], item[1])
            if name not in taken:
                names.add(name)
                out.append(item)
        taken |= names
    return out


def record_page(ledger: Ledger, job_id: str, page: int, found: list[Combination],
                pool: Executor, concurrency: int) -> None:
    """Phase 1: record a page's combinations (see the module doc). Returns when every row is
    written, raising the first failure (the step is then run again)."""
    if not found:
        return
    firsts = [(c.combo, c.first) for c in found]
    step = -(-len(firsts) // concurrency)
    slices = [firsts[i:i + step] for i in range(0, len(firsts), step)]
    seen: dict[str, tuple[int, int]] = {}
    for part in _all(pool, lambda s: ledger.see_partitions(job_id, page, s), slices):
        seen.update(part)
    entities: list[dict[str, Any]] = []
    for c in found:
        first_page, first_pos = seen[c.combo]
        if first_page == page:      # first seen here (by this run or an earlier run of the step)
            entities.append(order_entity(job_id, page, first_pos, c.combo, c.items))
        else:
            entities.append(continuation_entity(job_id, c.combo, page, c.items))
            entities.append(mark_entity(job_id, first_page, first_pos, c.combo))
    _all(pool, ledger.merge_rows, transaction_chunks(entities))


def next_batches(ledger: Ledger, job_id: str, after: str, budget: int, pool: Executor,
                 inputs: Sequence[InputSpec]) -> tuple[list[list[list[Any]]], str, bool]:
    """Phase 2: the next combinations' mini-batches (their items), in order of first appearance,
    from the order row after ``after``, until ``budget`` items are taken (at least one
    combination; the continuation rows of up to ``GROUP`` combinations are read at once).
    Returns (mini-batches, the last order row's key, whether none are left)."""
    batches: list[list[list[Any]]] = []
    count = 0
    last = after
    group: list[PartitionRow] = []
    rows = ledger.partition_orders(job_id, after)
    while True:
        row = next(rows, None)
        if row is not None:
            group.append(row)
            if len(group) < GROUP:
                continue
        marked = [r for r in group if r.more]
        later = dict(zip((r.key for r in marked), _all(
            pool, lambda r: ledger.partition_continuations(job_id, r.combo), marked)))
        for r in group:
            items = merge([(r.page, r.items)] + [(c.page, c.items) for c in later.get(r.key, [])])
            if items:
                check_size(items, inputs)
                batches.append(items)
                count += len(items)
        last = group[-1].key if group else last
        group = []
        if row is None:
            return batches, last, True
        if count >= budget:
            return batches, last, False


def _all(pool: Executor, fn: Any, args: list[Any]) -> list[Any]:
    """``fn`` over ``args`` on ``pool``, every call finished before returning (the first failure
    is raised then)."""
    if len(args) <= 1:
        return [fn(a) for a in args]
    futures = [pool.submit(fn, a) for a in args]
    for future in futures:
        future.exception()      # wait for every one, failed or not
    return [future.result() for future in futures]
