"""naive: the baseline a plain script gives, one process, one file at a time with the sync SDK:
list, download, decode, score (listing included), with the examples' entry scripts on a session
with onnxruntime's default options."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import workloads
from bench.limits import entry_scripts
from bench.limits.compute_tables import right_predictions
from bench.limits.results import MIN_ACCURACY, add_projection, expect, log, result
from bench.limits.storage import Target
from bench.limits.timing import Stopwatch
from examples.mnist.digits import label_from_filename


def _naive_runs(target: Target, container: str, prefix: str, runs: int, expected: int, unit: str,
                score: Callable[[str, bytes], tuple[int, int]]) -> tuple[list[Any], float, int]:
    """``runs`` timed passes of the naive baseline: list ``container/prefix``, then download and
    ``score(name, data) -> (items, right)`` one blob at a time; (measurements, accuracy, blobs)."""
    from azure.storage.blob import ContainerClient

    measured = []
    accuracy, blobs = 0.0, 0
    for _ in range(runs):
        watch = Stopwatch(target)
        watch.start()
        with ContainerClient.from_connection_string(target.connection_string, container) as client:
            count = right = blobs = 0
            for blob in client.list_blobs(name_starts_with=prefix):
                items, ok = score(blob.name, client.download_blob(blob.name).readall())
                count += items
                right += ok
                blobs += 1
        measured.append(watch.stop())
        expect(count, expected, unit)
        accuracy = right / count
        if accuracy < MIN_ACCURACY:
            raise RuntimeError(f"accuracy {accuracy:.3f} < {MIN_ACCURACY}")
        log(f"  run: {measured[-1].seconds:.2f} s")
    return measured, accuracy, blobs


def measure_naive_images(target: Target, expected: int, runs: int) -> dict[str, Any]:
    script = entry_scripts.mnist(default_session=True)
    session, input_name = script.g_session, script.g_input_name
    log(f"naive images: {expected} blobs, one at a time")

    def score(name: str, png: bytes) -> tuple[int, int]:
        # the script's preprocess() of the PNG, scored alone (its run() takes file paths)
        x = script.preprocess(io.BytesIO(png))[np.newaxis, :]
        digit = int(session.run(["label"], {input_name: x})[0][0])
        return 1, int(digit == label_from_filename(name))

    measured, accuracy, _ = _naive_runs(target, workloads.IMAGES_CONTAINER, workloads.IMAGES_PREFIX,
                                        runs, expected, "images", score)
    out = result("naive", "images", expected, measured,
                  "one process, sync SDK: list, then per blob download_blob(name).readall(), Pillow "
                  "decode + preprocessing, onnxruntime (default threads) on a batch of 1; listing "
                  "included", items_read=expected, accuracy=round(accuracy, 4))
    add_projection(out, None)
    return out


def measure_naive_tables(target: Target, fmt: str, rows: int, runs: int) -> dict[str, Any]:
    import pandas as pd

    script = entry_scripts.tabular(default_session=True)
    log(f"naive tables-{fmt}: {rows} rows, one file at a time")

    def score(name: str, data: bytes) -> tuple[int, int]:
        frame = (pd.read_parquet(io.BytesIO(data)) if fmt == "parquet"
                 else pd.read_csv(io.BytesIO(data)))
        scored = script.run(frame)
        return len(scored), right_predictions(scored, frame)

    measured, accuracy, files = _naive_runs(target, workloads.TABLES_CONTAINER, f"{fmt}/", runs,
                                            rows, "rows", score)
    out = result("naive", f"tables-{fmt}", rows, measured,
                  f"one process, sync SDK: list, then per file download_blob(name).readall(), "
                  f"pandas.read_{'parquet' if fmt == 'parquet' else 'csv'} of the whole file, the "
                  f"entry script's scoring (onnxruntime, default threads) on the whole file; listing "
                  f"included", unit="rows", files=files, accuracy=round(accuracy, 4))
    add_projection(out, None)
    return out
