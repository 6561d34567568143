"""The benchmark's data, made here (nothing is downloaded) and put in Azurite.

* **images**: 10,000 PNG digits, 28x28 grayscale, made from scikit-learn's 1,797 digits (rendered
  like the MNIST example, :mod:`examples.mnist.digits`) each shifted by -1..1 pixel in x and y,
  named ``digits/digit_<index:05d>_label_<digit>.png`` in container ``bench-images``;
* **tables**: 1,000,000 rows of the breast-cancer table (:mod:`examples.tabular.make_data`: id, 30
  features, label) as CSV and as Parquet, in ``parts`` files each, under ``csv/`` and ``parquet/``
  in container ``bench-tables``.

Every consumer (the limits, the naive baseline, Ray Data, ParallelRun) reads the same blobs.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from examples.mnist import digits
from examples.tabular import make_data

ROOT = Path(__file__).resolve().parents[1]
IMAGES_CONTAINER = "bench-images"
IMAGES_PREFIX = "digits/"
TABLES_CONTAINER = "bench-tables"
MNIST_MODEL = ROOT / "examples" / "mnist" / "model" / "mnist.onnx"
MNIST_CODE = ROOT / "examples" / "mnist" / "code"
TABLE_MODEL = ROOT / "examples" / "tabular" / "model" / "breast_cancer.onnx"
TABLE_CODE = ROOT / "examples" / "tabular" / "code"
FEATURE_COLUMNS = list(make_data.FEATURE_COLUMNS)
SHIFT = 1   # pixel, either way: the example model, trained on centred digits, still scores ~0.9


@dataclass(frozen=True)
class Images:
    container: str
    prefix: str
    names: list[str]            # blob names, in listing (= index) order
    labels: list[int]
    total_bytes: int


def digit_images(n: int, seed: int = 0) -> Iterator[tuple[str, bytes, int]]:
    """(blob name, PNG bytes, label) of ``n`` shifted digits; the same for the same ``seed``."""
    from PIL import Image, ImageChops
    from sklearn.datasets import load_digits

    data = load_digits()
    base = [digits.render_digit(img) for img in data.images]
    rng = np.random.default_rng(seed)
    shifts = rng.integers(-SHIFT, SHIFT + 1, size=(n, 2))
    for i in range(n):
        k = i % len(base)
        dx, dy = (int(v) for v in shifts[i])
        img: Image.Image = ImageChops.offset(base[k], dx, dy)   # wraps a black border: no ink lost
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        label = int(data.target[k])
        yield f"{IMAGES_PREFIX}{digits.digit_filename(i, label)}", buf.getvalue(), label


def upload_images(storage, n: int = 10_000, concurrency: int = 32) -> Images:
    """Put ``n`` digits in ``bench-images`` (a fresh container: Azurite slows as containers grow)."""
    container = storage.ensure_container(IMAGES_CONTAINER)
    items = list(digit_images(n))
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda it: container.upload_blob(it[0], it[1], overwrite=True), items))
    return Images(IMAGES_CONTAINER, IMAGES_PREFIX, [it[0] for it in items], [it[2] for it in items],
                  sum(len(it[1]) for it in items))


@dataclass(frozen=True)
class Tables:
    container: str
    rows: int
    files: dict[str, list[str]]     # format -> blob names, in row order
    local: dict[str, list[str]]     # format -> local paths of the same files
    bytes: dict[str, int]


def make_tables(folder: Path, rows: int = 1_000_000, parts: int = 8) -> dict[str, list[str]]:
    return make_data.write_tables(folder, rows=rows, formats=("csv", "parquet"), parts=parts)


def upload_tables(storage, folder: Path, rows: int = 1_000_000, parts: int = 8) -> Tables:
    """Write the table as CSV and Parquet (``parts`` files each) and upload them to ``bench-tables``."""
    written = make_tables(folder, rows, parts)
    container = storage.ensure_container(TABLES_CONTAINER)
    files: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for fmt, paths in written.items():
        files[fmt] = []
        sizes[fmt] = 0
        for path in paths:
            name = f"{fmt}/{Path(path).name}"
            with open(path, "rb") as fh:
                container.upload_blob(name, fh, overwrite=True, max_concurrency=4)
            files[fmt].append(name)
            sizes[fmt] += Path(path).stat().st_size
    return Tables(TABLES_CONTAINER, rows, files, written, sizes)



def scale_table(start: int, stop: int, seed: int = 0):
    """Rows ``start`` .. ``stop - 1`` of a table as large as wanted, as a ``pyarrow.Table`` with the
    columns of :mod:`examples.tabular.make_data` (id, the 30 features, label), made vectorised.

    Row ``i`` is data-set row ``i % 569`` with each value scaled by a factor in 1 +/- 2 % and
    rounded to the decimals its column has in the data set, like ``make_data``'s copies, but drawn
    for the whole slice at once (one generator per slice, seeded by ``seed`` and ``start``) instead
    of one per copy of 569 rows: about 0.3 s per million rows instead of ~4.5 s, and no DataFrame.
    """
    import pyarrow as pa

    x, y, decimals = make_data._base()
    ids = np.arange(start, stop, dtype=np.int64)
    base = ids % make_data.N_BASE_ROWS
    rng = np.random.default_rng([make_data.SEED, seed, start])
    factor = rng.uniform(1.0 - make_data.JITTER, 1.0 + make_data.JITTER, size=(len(ids), make_data.N_FEATURES))
    scale = 10.0 ** decimals
    values = np.rint(x[base] * factor * scale) / scale   # the shortest decimal of each is short
    columns = {"id": pa.array(ids)}
    columns.update({name: pa.array(values[:, j]) for j, name in enumerate(FEATURE_COLUMNS)})
    columns["label"] = pa.array(y[base])
    return pa.table(columns)


def write_scale_tables(folder: Path, rows: int, file_rows: int,
                       formats: tuple[str, ...] = ("csv", "parquet")) -> dict[str, list[Path]]:
    """``rows`` rows of :func:`scale_table` in files of ``file_rows`` rows (the last may hold
    fewer), each format written from the same slice: ``breast_cancer_<k:05d>.<fmt>`` under
    ``folder/<fmt>/`` (lexical order is row order). CSV with pyarrow's writer (a plain header
    line, numbers as their shortest text), Parquet in row groups of
    :func:`examples.tabular.make_data.row_group_rows`."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    written: dict[str, list[Path]] = {fmt: [] for fmt in formats}
    for fmt in formats:
        (folder / fmt).mkdir(parents=True, exist_ok=True)
    header = (",".join(make_data.COLUMNS) + "\n").encode()
    for k, start in enumerate(range(0, rows, file_rows)):
        table = scale_table(start, min(rows, start + file_rows))
        for fmt in formats:
            path = folder / fmt / f"{make_data.BASENAME}_{k:05d}.{fmt}"
            if fmt == "csv":
                with open(path, "wb") as fh:
                    fh.write(header)
                    pacsv.write_csv(table, fh, pacsv.WriteOptions(include_header=False,
                                                                  batch_size=64 * 1024))
            elif fmt == "parquet":
                pq.write_table(table, path, row_group_size=make_data.row_group_rows(table.num_rows))
            else:
                raise ValueError(f"unknown format {fmt!r}: csv or parquet")
            written[fmt].append(path)
    return written
