"""compute-images: the images' compute limit, PNG bytes in memory decoded and preprocessed by the
MNIST entry script and scored with the session its ``init()`` makes, on all cores, per mini-batch
size (no storage involved)."""

from __future__ import annotations

import io
import os
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from bench.limits import entry_scripts
from bench.limits.compute import compute_variants, fastest, median_run, medians, rate, variant_named
from bench.limits.results import MIN_ACCURACY, add_projection, expect, log, result
from bench.limits.timing import Timed, Workers, split
from examples.mnist.digits import label_from_filename


def _slices(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


class ImageScorer:
    """Worker state: PNG bytes in memory, the MNIST entry script (loaded, its ``init()`` called) and
    (for score-only) the decoded arrays.

    ``threads`` > 1 scores mini-batches on that many Python threads sharing one session (onnxruntime
    runs concurrent ``run`` calls and releases the GIL, Pillow releases it while decoding)."""

    def __init__(self, names: list[str], pngs: list[bytes], labels: list[int], threads: int) -> None:
        self.names = [os.path.basename(n) for n in names]
        self.pngs = pngs
        self.labels = np.asarray(labels, dtype=np.int64)
        self.script = entry_scripts.mnist()
        self.session, self.input = self.script.g_session, self.script.g_input_name
        self.features = np.stack(self._preprocess(pngs))
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def _map(self, fn: Callable[[slice], int], size: int) -> int:
        parts = _slices(len(self.pngs), size)
        return sum(self.pool.map(fn, parts) if self.pool else map(fn, parts))

    def _preprocess(self, pngs: Sequence[bytes]) -> list[np.ndarray]:
        """The script's ``preprocess()`` of each PNG (Pillow opens the bytes as it opens a file)."""
        preprocess = self.script.preprocess
        return [preprocess(io.BytesIO(png)) for png in pngs]

    def decode_score(self, size: int) -> int:
        """What ``run(mini_batch)`` of digit_identification.py does, per mini-batch of ``size``;
        returns how many predictions were right. Its ``run()`` takes file paths, so the rest of it
        (one ``session.run`` per mini-batch, a line per image) is repeated here."""
        def one(part: slice) -> int:
            batch = np.stack(self._preprocess(self.pngs[part])).astype(np.float32, copy=False)
            digits = self.session.run(["label"], {self.input: batch})[0]
            lines = [f"{name}: {int(d)}" for name, d in zip(self.names[part], digits)]
            assert len(lines) == len(batch)
            return int((np.asarray(digits, dtype=np.int64) == self.labels[part]).sum())
        return self._map(one, size)

    def score(self, size: int) -> int:
        def one(part: slice) -> int:
            digits = self.session.run(["label"], {self.input: self.features[part]})[0]
            return int((np.asarray(digits, dtype=np.int64) == self.labels[part]).sum())
        return self._map(one, size)

    def decode(self, size: int) -> int:
        def one(part: slice) -> int:
            return len(np.stack(self._preprocess(self.pngs[part])))
        return self._map(one, size)


def measure_compute_images(names: list[str], pngs: list[bytes], batch_sizes: Sequence[int],
                           runs: int, min_accuracy: float = MIN_ACCURACY) -> list[dict[str, Any]]:
    n = len(pngs)
    labels = [label_from_filename(name) for name in names]
    variants = compute_variants(os.cpu_count() or 1)
    log(f"compute-images: {n} PNGs in memory, batch sizes {list(batch_sizes)}, "
        f"variants {[v.label for v in variants]}")
    # kind -> batch size -> variant label -> runs
    timings: dict[str, dict[int, dict[str, list[Timed]]]] = {
        k: {b: {} for b in batch_sizes} for k in ("decode_score", "score", "decode")}
    accuracy: dict[int, float] = {}

    for variant in variants:
        args = [(part_names, part_pngs, part_labels, variant.threads) for part_names, part_pngs,
                part_labels in zip(split(names, variant.processes), split(pngs, variant.processes),
                                   split(labels, variant.processes))]
        with Workers(ImageScorer, args) as pool:
            pool.run("decode_score", 10)                # warm-up, untimed
            for size in batch_sizes:
                def check_accuracy(timed: Timed, size: int = size) -> None:
                    accuracy[size] = sum(timed.results) / n
                    if accuracy[size] < min_accuracy:
                        raise RuntimeError(f"accuracy {accuracy[size]:.3f} < {min_accuracy}: "
                                           f"the model did not score the images")
                for kind in ("decode_score", "score"):
                    timings[kind][size][variant.label] = median_run(pool, kind, (size,), runs,
                                                                     check_accuracy)
                timings["decode"][size][variant.label] = median_run(
                    pool, "decode", (size,), runs, lambda t: expect(sum(t.results), n, "images"))
                log(f"  {variant.label}, batch {size}: " + ", ".join(
                    f"{k} {n / statistics.median(t.seconds for t in timings[k][size][variant.label]):.0f}/s"
                    for k in timings))

    out = []
    for size in batch_sizes:
        best = fastest(timings["decode_score"][size])
        score_best = fastest(timings["score"][size])
        decode_best = fastest(timings["decode"][size])
        out.append(result(
            "compute-images", "images", n, timings["decode_score"][size][best],
            f"compute limit: PNG bytes in memory -> Pillow decode + the entry script's preprocessing "
            f"-> onnxruntime (1 intra-op thread per session) per mini-batch of {size}; best of "
            f"{len(variants)} ways to use the cores: {best}",
            batch_size=size, variant=best, accuracy=round(accuracy[size], 4),
            by_variant=medians(timings["decode_score"][size], n),
            score_only_items_per_s=rate(timings["score"][size][score_best], n),
            score_only_variant=score_best,
            score_only_by_variant=medians(timings["score"][size], n),
            decode_only_items_per_s=rate(timings["decode"][size][decode_best], n),
            decode_only_variant=decode_best))
        add_projection(out[-1], variant_named(variants, best).cores, uses_storage=False)
    return out
