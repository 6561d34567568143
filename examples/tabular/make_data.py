"""Breast-cancer tables (CSV, Parquet, JSON Lines) made from scikit-learn's bundled data set.

Azure ML's ParallelRunStep scores a TabularDataset by handing the entry script one pandas DataFrame
per mini-batch. This module writes the tables such a job reads, from
``sklearn.datasets.load_breast_cancer()`` (569 rows, 30 numeric features, shipped inside
scikit-learn, so nothing is downloaded):

* column ``id`` (int64): 0, 1, 2, ... - unique, and in file order across all the files written;
* the 30 feature columns (float64) in data-set order, named in snake case (:data:`FEATURE_COLUMNS`,
  e.g. ``mean_radius``, ``worst_fractal_dimension``) - the order the model expects;
* column ``label`` (int64): the true class, 0 = malignant, 1 = benign (the data set's coding).

The first 569 rows are the data set itself. ``rows=N`` with N > 569 keeps going with copies of it,
each value multiplied by a small factor in 1 +/- 2 % drawn from a generator seeded by the copy
number, and rounded to the decimals its column has in the original data (so the values look alike
and the files stay compact). Labels are copied. The rows are the same whatever ``parts`` is, so a
bench can make 1,000,000 rows in one file or in 16.

Formats (``write_tables(..., formats=...)``), all in one folder, one or ``parts`` files each:

* ``csv``: header line, comma-separated, ``\\n`` line ends - what ``Dataset.Tabular.from_delimited_files``
  reads;
* ``parquet``: several row groups per file (:func:`row_group_rows`) - ``from_parquet_files``;
* ``jsonl``: one JSON object per line - ``from_json_lines_files``.

File names are ``breast_cancer.<ext>`` (one part) or ``breast_cancer_<k:05d>.<ext>``, so lexical
order is row order. Importing this module has no side effects. Command line::

    python examples/tabular/make_data.py OUT_DIR [--rows N] [--parts K] [--formats csv,parquet,jsonl]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

N_BASE_ROWS = 569                 # rows in scikit-learn's breast-cancer data set
N_FEATURES = 30
SEED = 20240601                   # the jitter of copy c >= 1 is drawn from default_rng([SEED, c])
JITTER = 0.02                     # values of the copies are scaled by a factor in [1 - JITTER, 1 + JITTER]
FORMATS = ("csv", "parquet", "jsonl")
BASENAME = "breast_cancer"
MAX_ROW_GROUP_ROWS = 10_000

# scikit-learn's feature names ("mean radius", "radius error", "worst radius", ...) in snake case,
# in the data set's order: ten measurements of the cell nuclei, as mean, standard error and worst.
MEASUREMENTS = ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
                "concave_points", "symmetry", "fractal_dimension")
FEATURE_COLUMNS = (*(f"mean_{m}" for m in MEASUREMENTS), *(f"{m}_error" for m in MEASUREMENTS),
                   *(f"worst_{m}" for m in MEASUREMENTS))
COLUMNS = ("id", *FEATURE_COLUMNS, "label")


@lru_cache(maxsize=1)
def _base() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The data set: features (569, 30) float64, labels (569,) int64, decimals per column (30,)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = tuple(str(n).replace(" ", "_") for n in data.feature_names)
    if names != FEATURE_COLUMNS:  # guards the column order the model depends on
        raise RuntimeError(f"unexpected feature names in scikit-learn's data set: {names}")
    x = np.ascontiguousarray(data.data, dtype=np.float64)
    y = np.asarray(data.target, dtype=np.int64)
    decimals = np.array([next(d for d in range(12) if np.all(np.abs(np.round(col, d) - col) < 1e-9))
                         for col in x.T])
    if decimals.max() > 10:  # _write's JSON Lines precision relies on this
        raise RuntimeError("unexpected precision in scikit-learn's breast-cancer data set")
    x.flags.writeable = y.flags.writeable = decimals.flags.writeable = False
    return x, y, decimals


def _copy(c: int) -> np.ndarray:
    """Copy ``c`` of the data set's features: the original for c == 0, else jittered and rounded."""
    x, _, decimals = _base()
    if c == 0:
        return x
    factor = np.random.default_rng([SEED, c]).uniform(1.0 - JITTER, 1.0 + JITTER, size=x.shape)
    jittered = x * factor
    for j, d in enumerate(decimals):
        jittered[:, j] = np.round(jittered[:, j], int(d))
    return jittered


def make_frame(start: int = 0, stop: int | None = None):
    """Rows ``start`` .. ``stop - 1`` of the (endless) table as a DataFrame with :data:`COLUMNS`.

    ``stop`` defaults to 569 (the data set itself). Row ``i`` is row ``i % 569`` of copy
    ``i // 569``, so any slice can be made on its own and equals the same slice of a larger table.
    """
    import pandas as pd

    stop = N_BASE_ROWS if stop is None else int(stop)
    start = int(start)
    if start < 0 or stop < start:
        raise ValueError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
    _, y, _ = _base()
    x = np.empty((stop - start, N_FEATURES), dtype=np.float64)
    pos = start
    while pos < stop:
        c, r = divmod(pos, N_BASE_ROWS)
        n = min(N_BASE_ROWS - r, stop - pos)
        x[pos - start:pos - start + n] = _copy(c)[r:r + n]
        pos += n
    ids = np.arange(start, stop, dtype=np.int64)
    frame = pd.DataFrame(x, columns=list(FEATURE_COLUMNS))
    frame.insert(0, "id", ids)
    frame["label"] = y[ids % N_BASE_ROWS]
    return frame


def row_group_rows(n_rows: int) -> int:
    """Rows per Parquet row group for a file of ``n_rows``: about four groups, at most 10,000 rows each."""
    return max(1, min(MAX_ROW_GROUP_ROWS, -(-int(n_rows) // 4)))


def file_name(fmt: str, part: int, parts: int) -> str:
    """``breast_cancer.csv`` for a single part, else ``breast_cancer_00003.csv``."""
    return f"{BASENAME}.{fmt}" if parts == 1 else f"{BASENAME}_{part:05d}.{fmt}"


def _write(frame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(path, index=False, lineterminator="\n")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, path, row_group_size=row_group_rows(len(frame)))
    elif fmt == "jsonl":
        # No value has more than 7 decimals (see _base), so 10 decimal places write every value as
        # its shortest decimal form, which parses back to the same float64 (with a precise parser:
        # json.loads, or pandas.read_json(..., precise_float=True)).
        frame.to_json(path, orient="records", lines=True, double_precision=10)
    else:  # pragma: no cover - checked by write_tables
        raise ValueError(fmt)


def write_tables(out_dir: str | os.PathLike[str], rows: int | None = None,
                 formats: Iterable[str] = FORMATS, parts: int = 1) -> dict[str, list[str]]:
    """Write the table (569 rows, or ``rows``) in each of ``formats``, split into ``parts`` files each.

    Part ``k`` holds rows ``k * rows // parts`` .. ``(k + 1) * rows // parts - 1``. Returns the paths
    written per format, in part order.
    """
    rows = N_BASE_ROWS if rows is None else int(rows)
    if isinstance(formats, str):
        raise ValueError(f"formats must be a sequence such as {FORMATS}, not the string {formats!r}")
    formats = tuple(formats)
    if not formats:
        raise ValueError(f"formats must be a non-empty sequence of {FORMATS}")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; choose from {FORMATS}")
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if not 1 <= int(parts) <= rows:
        raise ValueError(f"parts must be between 1 and rows ({rows}), got {parts}")
    parts = int(parts)
    formats = tuple(dict.fromkeys(formats))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {fmt: [] for fmt in formats}
    for k in range(parts):
        frame = make_frame(k * rows // parts, (k + 1) * rows // parts)
        for fmt in formats:
            path = out / file_name(fmt, k, parts)
            _write(frame, path, fmt)
            written[fmt].append(str(path))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write scikit-learn's breast-cancer data set (id, 30 features, label) as CSV, "
                    "Parquet and JSON Lines tables.")
    parser.add_argument("out_dir", help="folder to write the tables into (created if missing)")
    parser.add_argument("--rows", type=int, default=None,
                        help=f"rows in all (default {N_BASE_ROWS}; more repeats the data with a small jitter)")
    parser.add_argument("--parts", type=int, default=1, help="files per format (default 1)")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help=f"comma-separated formats to write (default {','.join(FORMATS)})")
    args = parser.parse_args(argv)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    try:
        written = write_tables(args.out_dir, rows=args.rows, formats=formats, parts=args.parts)
    except ValueError as exc:
        parser.error(str(exc))
    rows = N_BASE_ROWS if args.rows is None else args.rows
    for fmt, paths in written.items():
        size = sum(os.path.getsize(p) for p in paths)
        print(f"{fmt}: {len(paths)} file(s), {size:,} bytes")
    print(f"wrote {rows:,} rows to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
