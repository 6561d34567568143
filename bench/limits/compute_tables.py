"""compute-tables: the tables' compute limit, CSV / Parquet bytes in memory read in ParallelRun's
pieces (shared.scoring.tabular) and scored by the tabular entry script's ``run()`` (no storage
involved)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench.limits import entry_scripts
from bench.limits.compute import Parallel, compute_variants, fastest, median_run, medians, rate
from bench.limits.results import MIN_ACCURACY, add_projection, expect, log, result
from bench.limits.storage import TableSet
from bench.limits.timing import Timed, Workers, split

TABLE_LABEL = "label"


class MemorySource:
    """A :class:`shared.scoring.tabular.RangeSource` over bytes in memory."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.size = len(data)
        self._data = data

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self.size:
            return b""
        return self._data[offset:offset + length]


def right_predictions(scored: Any, frame: Any) -> int:
    """How many rows of score_table.py's ``run(frame)`` result predict the row's label."""
    return int((scored["prediction"].to_numpy() == frame[TABLE_LABEL].to_numpy(dtype=np.int64)).sum())


class TableScorer:
    """Worker state: some files' bytes, the pieces (mini-batches) it reads from them, the tabular
    entry script (loaded, its ``init()`` called)."""

    def __init__(self, files: dict[str, bytes], pieces: list[dict[str, Any]],
                 schema: dict[str, Any], threads: int) -> None:
        from shared.scoring.tables import file_format
        from shared.scoring.tabular import Piece, Schema

        self.sources = {name: MemorySource(name, data) for name, data in files.items()}
        self.formats = {name: file_format({}, name) for name in files}
        self.pieces = [Piece.from_dict(p) for p in pieces]
        self.schema = Schema.from_dict(schema)
        self.script = entry_scripts.tabular()
        self.session, self.input = self.script.g_session, self.script.g_input_name
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        # score-only: the model's input as run() makes it, taken out beforehand
        self.features = [self._read(p)[self.script.FEATURE_COLUMNS].to_numpy(dtype=np.float32)
                         for p in self.pieces]

    def _read(self, piece: Any) -> Any:
        from shared.scoring.tabular import read_piece
        return read_piece(self.sources[piece.file], self.formats[piece.file], piece, self.schema)

    def _map(self, fn: Callable[[Any], tuple[int, int]], items: Sequence[Any]) -> tuple[int, int]:
        answers = list(self.pool.map(fn, items) if self.pool else map(fn, items))
        return sum(a for a, _ in answers), sum(b for _, b in answers)

    def parse_score(self) -> tuple[int, int]:
        """(rows, right predictions) of reading every piece and scoring it with ``run()``."""
        def one(piece: Any) -> tuple[int, int]:
            frame = self._read(piece)
            scored = self.script.run(frame)
            return len(scored), right_predictions(scored, frame)
        return self._map(one, self.pieces)

    def parse(self) -> tuple[int, int]:
        return self._map(lambda piece: (len(self._read(piece)), 0), self.pieces)

    def score(self) -> tuple[int, int]:
        def one(features: np.ndarray) -> tuple[int, int]:
            labels = self.session.run(["label", "probabilities"], {self.input: features})[0]
            return len(labels), 0
        return self._map(one, self.features)


def plan_table(tables: TableSet, target_bytes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The schema and the pieces ParallelRun's planner makes for these files (untimed)."""
    from shared.scoring.tables import file_format
    from shared.scoring.tabular import infer_schema, plan_pieces

    sources = [MemorySource(n, d) for n, d in zip(tables.names, tables.data)]
    schema = infer_schema(sources[0], file_format({}, sources[0].name))
    pieces = [p.to_dict() for s in sources for p in plan_pieces(s, file_format({}, s.name), target_bytes)]
    return schema.to_dict(), pieces


TABLE_PIECES = (1024 * 1024, 10 * 1024 * 1024)   # the harness's table grid: 1MB (PRS default), 10MB


def measure_compute_tables(tables: TableSet, runs: int, piece_sizes: Sequence[int] = TABLE_PIECES,
                           min_accuracy: float = MIN_ACCURACY) -> dict[str, Any]:
    """Parse + score the table in memory, in pieces of each of ``piece_sizes`` (the mini-batch sizes
    ParallelRun is run with), each way of using the cores; the limit is the fastest combination."""
    files = dict(zip(tables.names, tables.data))
    variants = compute_variants(os.cpu_count() or 1)
    timings: dict[str, dict[str, list[Timed]]] = {"parse_score": {}, "score": {}, "parse": {}}
    ways: dict[str, tuple[Parallel, int, int]] = {}   # label -> (variant, piece size, pieces)
    accuracy = 0.0

    def check_rows(timed: Timed) -> None:
        expect(sum(r[0] for r in timed.results), tables.rows, "rows")

    def check_accuracy(timed: Timed) -> None:
        nonlocal accuracy
        check_rows(timed)
        accuracy = sum(r[1] for r in timed.results) / tables.rows
        if accuracy < min_accuracy:
            raise RuntimeError(f"accuracy {accuracy:.3f} < {min_accuracy}: the model did not score")

    for size in piece_sizes:
        schema, pieces = plan_table(tables, size)
        log(f"compute-tables {tables.fmt}: {tables.rows} rows in {len(tables.names)} files, "
            f"{len(pieces)} pieces of <= {size} bytes")
        for variant in variants:
            label = f"{variant.label}, pieces of {size // (1024 * 1024)}MB"
            ways[label] = (variant, size, len(pieces))
            args = []
            for share in split(pieces, variant.processes):
                needed = {p["file"] for p in share}
                args.append(({n: d for n, d in files.items() if n in needed}, share, schema,
                             variant.threads))
            with Workers(TableScorer, args) as pool:
                pool.run("parse_score")                      # warm-up, untimed
                for kind in timings:
                    timings[kind][label] = median_run(
                        pool, kind, (), runs, check_accuracy if kind == "parse_score" else check_rows)
                log(f"  {label}: " + ", ".join(
                    f"{k} {rate(timings[k][label], tables.rows):.0f} rows/s" for k in timings))

    best = fastest(timings["parse_score"])
    score_best = fastest(timings["score"])
    parse_best = fastest(timings["parse"])
    variant, size, n_pieces = ways[best]
    out = result("compute-tables", f"tables-{tables.fmt}", tables.rows, timings["parse_score"][best],
                 f"compute limit: {tables.fmt} bytes in memory -> shared.scoring.tabular.read_piece (as the "
                 f"scoring process reads a mini-batch; pyarrow parser, default threads) -> the entry "
                 f"script's scoring (onnxruntime, 1 intra-op thread; result DataFrame built, not "
                 f"written) for {n_pieces} pieces of <= {size} bytes; best of {len(ways)} "
                 f"ways ({len(variants)} uses of the cores x {len(piece_sizes)} piece sizes): {best}",
                 unit="rows", variant=best, accuracy=round(accuracy, 4), pieces=n_pieces,
                 piece_bytes=size, bytes=sum(tables.sizes),
                 by_variant=medians(timings["parse_score"], tables.rows),
                 score_only_items_per_s=rate(timings["score"][score_best], tables.rows),
                 score_only_variant=score_best,
                 parse_only_items_per_s=rate(timings["parse"][parse_best], tables.rows),
                 parse_only_variant=parse_best)
    out["mb_per_s"] = round(sum(tables.sizes) / out["seconds"] / 1e6, 1)
    add_projection(out, variant.cores, uses_storage=False)
    return out
