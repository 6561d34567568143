"""Ray Data baseline: the benchmark's batch inference done with Ray Data, on the same blobs.

Each measurement reads a workload of :mod:`workloads` (from Azurite, or from local copies of the same
blobs), scores it on an actor pool of ONNX Runtime sessions, and consumes every result on the
driver. It does the work of the examples' entry scripts:

* **images**: read each PNG, decode it with Pillow (to 8-bit grayscale), scale the 784 pixels to
  0..1 as float32, run ``mnist.onnx`` per batch; the driver checks every prediction against the
  label in the file name (accuracy);
* **csv** / **parquet**: read the table (``read_csv`` / ``read_parquet``), take the 30 features as
  float32, run ``breast_cancer.onnx`` per batch and return ``id``, ``prediction`` and
  ``probability`` (of class 1, rounded to 6 decimals) per row, plus the label (for accuracy).

A run is timed from the call that creates the dataset (file listing included) to the last result
on the driver; ``ray.init()`` (once per process) is reported apart, as ``ray_init_s``. One JSON
object per measurement goes to stdout; Ray's own output goes to stderr or nowhere.

    .venv/bin/python -m bench.raydata images --connection-string "$CS" [--runs 3]
    .venv/bin/python -m bench.raydata csv parquet --connection-string "$CS" --source both
    .venv/bin/python -m bench.raydata --standalone --images 2000 --rows 100000 [--parts 8]

``--source local`` copies the blobs once, untimed, to ``--local-dir`` (or a temporary folder) as
``<dir>/<container>/<blob name>`` and reads those; ``--source both`` measures Azurite, then the
copies. ``--fs`` picks how Ray reads Azurite: fsspec's adlfs ("adlfs", the default) or pyarrow's
native ``AzureFileSystem`` ("arrow"; fine for the 8-file tables, not for the 10,000 images: see
:func:`azure_filesystem`). Requires ``requirements-bench.txt`` (Ray Data, adlfs) in ``.venv``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from bench import workloads
from examples.mnist import digits  # the label in a file name

NAME = "ray-data"
WORKLOADS = ("images", "csv", "parquet")
FILESYSTEMS = ("adlfs", "arrow")
IMAGE_READERS = ("binary", "images")
NUM_CPUS = 2
# Defaults chosen by measurement on the 2-core benchmark machine; every result reports its config.
FS = "adlfs"              # "arrow" cannot list a large folder in Azurite: see azure_filesystem
IMAGE_READER = "binary"
ACTORS = 2                # scoring actors (one ONNX session each)
ACTOR_CPUS = 0.5          # logical CPUs per actor: 2 x 0.5 leaves Ray 1 CPU to schedule reads on
READ_CPUS = 0.5           # logical CPUs per read task: 2 read tasks at a time
IMAGE_BATCH = 200         # images per map_batches call
TABLE_BATCH = 10_000      # rows per map_batches call


# ---------------------------------------------------------------------------------------------
# The scoring actors. They use only numpy / Pillow / onnxruntime, so a Ray worker that knows
# nothing of this project can run them (this module is pickled by value: see ray_session).


def _onnx_session(model_path: str) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    # As in the entry scripts: one compute thread per session, several sessions share the cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model_path, sess_options=options,
                                        providers=["CPUExecutionProvider"])


IMAGE_SIZE = 28


def _png_features(png: bytes) -> np.ndarray:
    """784 float32 pixels in 0..1, as ``examples/mnist/code/digit_identification.py`` computes them."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as img:
        return _pixels_features(np.asarray(_gray28(img)))


def _gray28(img: Any) -> Any:
    from PIL import Image

    gray = img.convert("L")
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.Resampling.LANCZOS)
    return gray


def _pixels_features(pixels: np.ndarray) -> np.ndarray:
    return np.asarray(pixels, dtype=np.float32).reshape(IMAGE_SIZE * IMAGE_SIZE) / np.float32(255.0)


class DigitScorer:
    """Batches of ``bytes`` (PNG, from read_binary_files) or ``image`` (28x28 uint8, from read_images)
    plus ``path`` -> ``path`` and the predicted digit."""

    def __init__(self, model_path: str) -> None:
        self.session = _onnx_session(model_path)
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "bytes" in batch:
            rows = [_png_features(png) for png in batch["bytes"]]
        else:   # already decoded to "L" by read_images(mode="L"), all 28x28
            rows = [_pixels_features(pixels) for pixels in batch["image"]]
        x = np.stack(rows).astype(np.float32, copy=False)
        labels = self.session.run(["label"], {self.input_name: x})[0]
        return {"path": batch["path"], "prediction": labels.astype(np.int64)}


class TableScorer:
    """Feature rows -> id, prediction, probability, as ``examples/tabular/code/score_table.py``."""

    def __init__(self, model_path: str, feature_columns: list[str]) -> None:
        self.session = _onnx_session(model_path)
        self.input_name = self.session.get_inputs()[0].name
        self.features = feature_columns

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = np.column_stack([batch[c] for c in self.features]).astype(np.float32, copy=False)
        labels, probabilities = self.session.run(["label", "probabilities"], {self.input_name: x})
        return {"id": batch["id"], "prediction": labels.astype(np.int64),
                "probability": np.round(probabilities[:, 1].astype(np.float64), 6),
                "label": batch["label"]}


# ---------------------------------------------------------------------------------------------
# Where the data is.


def _connection_fields(connection_string: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in connection_string.strip().strip(";").split(";") if part)


def azure_filesystem(connection_string: str, kind: str = FS) -> Any:
    """A filesystem over the blob endpoint of ``connection_string`` for Ray to read through.

    * ``adlfs``: fsspec's ``AzureBlobFileSystem`` (Python over the async azure SDK); the connection
      string carries the endpoint, account and key. Ray wraps it in
      ``pyarrow.fs.PyFileSystem(FSSpecHandler(...))``. Reading a blob costs 3 requests (properties
      twice, download) in a Ray worker, whose unpickled filesystem starts with an empty listing
      cache.
    * ``arrow``: pyarrow's native (C++) ``AzureFileSystem`` pointed at Azurite's host:port over
      http. The same host is given as the Data Lake (dfs) endpoint: pyarrow probes it for a
      hierarchical namespace, which Azurite does not have. Reading a blob costs 2 requests
      (properties, download). But to tell whether ``container/folder/`` exists (Ray asks first)
      it lists blobs by hierarchy with a tiny page size, which Azurite answers in time that grows
      about quadratically with the blobs under the prefix (0.7 s for 1,000, 3.6 s for 2,000 here;
      10,000 did not answer within the client's socket timeout, minutes, and left Azurite busy
      long after). So "arrow" is for folders of a few hundred blobs, such as the tables.
    """
    if kind == "adlfs":
        import adlfs

        return adlfs.AzureBlobFileSystem(connection_string=connection_string)
    if kind == "arrow":
        from urllib.parse import urlparse

        import pyarrow.fs

        fields = _connection_fields(connection_string)
        endpoint = urlparse(fields["BlobEndpoint"])
        if endpoint.path.strip("/") not in ("", fields["AccountName"]):
            raise ValueError(f"unexpected path in the blob endpoint {fields['BlobEndpoint']}")
        return pyarrow.fs.AzureFileSystem(
            account_name=fields["AccountName"], account_key=fields["AccountKey"],
            blob_storage_authority=endpoint.netloc, blob_storage_scheme=endpoint.scheme,
            dfs_storage_authority=endpoint.netloc, dfs_storage_scheme=endpoint.scheme)
    raise ValueError(f"unknown filesystem {kind!r}; choose from {FILESYSTEMS}")


WORKLOAD_LOCATION = {       # workload -> (container, prefix)
    "images": (workloads.IMAGES_CONTAINER, workloads.IMAGES_PREFIX),
    "csv": (workloads.TABLES_CONTAINER, "csv/"),
    "parquet": (workloads.TABLES_CONTAINER, "parquet/"),
}


@dataclass(frozen=True)
class Source:
    """Azurite (through ``fs``), or local copies of the blobs laid out as ``<root>/<container>/<blob>``."""

    kind: str                       # "azurite" or "local files"
    connection_string: str = ""
    fs: str = FS                    # Azurite only: see azure_filesystem
    root: Path | None = None        # local files only
    note: str = ""                  # goes to the result's notes

    def path(self, workload: str) -> str:
        container, prefix = WORKLOAD_LOCATION[workload]
        if self.kind == "azurite":
            return f"{container}/{prefix}"
        assert self.root is not None
        return str(self.root / container / prefix)

    def filesystem(self) -> Any:
        """What Ray reads through: an Azure filesystem for Azurite, None (local disk) otherwise."""
        return azure_filesystem(self.connection_string, self.fs) if self.kind == "azurite" else None

    def describe(self) -> str:
        if self.kind == "azurite":
            return ("pyarrow's native AzureFileSystem" if self.fs == "arrow" else "adlfs (fsspec)") + \
                " over HTTP to Azurite"
        return "the local disk"


def copy_to_local(connection_string: str, workload: str, root: Path) -> int:
    """Download a workload's blobs to ``root/<container>/<prefix>`` unless already there (untimed).

    Returns the number of files. A local file of the blob's size is taken as already copied.
    """
    import adlfs

    fs = adlfs.AzureBlobFileSystem(connection_string=connection_string)
    container, prefix = WORKLOAD_LOCATION[workload]
    blobs = {info["name"]: info["size"] for info in fs.ls(f"{container}/{prefix}", detail=True)
             if info["type"] == "file"}
    if not blobs:
        raise FileNotFoundError(f"no blobs under {container}/{prefix}: upload the workload first")
    missing = [name for name, size in blobs.items()
               if not (root / name).is_file() or (root / name).stat().st_size != size]
    if missing:
        (root / container / prefix).mkdir(parents=True, exist_ok=True)
        fs.get(missing, [str(root / name) for name in missing])  # adlfs downloads concurrently
    return len(blobs)


# ---------------------------------------------------------------------------------------------
# CPU accounting from /proc (Linux): what the driver with Ray's processes, and Azurite, burn during
# a run. On a shared 2-core machine it says more than wall time does.


def _proc_stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()   # the fields from the 3rd (state) on


def _tree(root: int, exclude: frozenset[int] = frozenset()) -> list[int]:
    """``root`` and its live descendants, without the ``exclude``d pids and their descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_proc_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid not in exclude:
            out.append(pid)
            todo += children.get(pid, [])
    return out


class CpuSampler:
    """CPU seconds used by the process trees of ``roots`` while it runs (``exclude``d subtrees
    left out), sampled every ``interval`` s from a thread.

    Ray starts and ends worker processes during a run, and they are not always reaped by a process
    of the tree, so a before/after difference is not enough: every pid seen counts from its CPU at
    the start (or zero if it was born later) to the last sample it was seen in. A process that
    ends loses at most its last ``interval``.
    """

    def __init__(self, roots: list[int], exclude: frozenset[int] = frozenset(),
                 interval: float = 0.25) -> None:
        import threading

        self.roots, self.exclude, self.interval = roots, exclude, interval
        self.available = os.path.isdir("/proc")
        self.first: dict[int, float] = {}    # process key -> CPU seconds at the start
        self.last: dict[int, float] = {}     # process key -> CPU seconds when last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._tick = os.sysconf("SC_CLK_TCK") if self.available else 100

    def _sample(self, initial: bool = False) -> None:
        for root in self.roots:
            for pid in _tree(root, self.exclude):
                try:
                    f = _proc_stat(pid)
                    cpu = (int(f[11]) + int(f[12])) / self._tick     # utime + stime
                    start = int(f[19])                               # start time, ticks since boot
                except (OSError, IndexError):
                    continue
                key = pid * 10**12 + start     # a pid reused by a new process is another process
                self.first.setdefault(key, cpu if initial else 0.0)
                self.last[key] = cpu

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> CpuSampler:
        if self.available:
            self._sample(initial=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()
            self._sample()

    @property
    def seconds(self) -> float:
        if not self.available:
            return float("nan")
        return sum(self.last[k] - self.first[k] for k in self.last)


# ---------------------------------------------------------------------------------------------
# Ray.


@dataclass
class RayConfig:
    actors: int = ACTORS
    actor_cpus: float = ACTOR_CPUS
    read_cpus: float = READ_CPUS
    image_batch: int = IMAGE_BATCH
    table_batch: int = TABLE_BATCH
    image_reader: str = IMAGE_READER


@contextmanager
def ray_session(num_cpus: int = NUM_CPUS) -> Iterator[float]:
    """Start Ray quietly on this machine; yields the seconds ``ray.init()`` took; always shuts down."""
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import ray
    from ray import cloudpickle

    # Ship this module's scorer classes by value: workers need not find the bench package on their
    # path, and it works whether this module runs as ``python -m bench.raydata`` or is imported.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False, configure_logging=True)
    init_s = time.perf_counter() - started
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.verbose_stats_logs = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        yield init_s
    finally:
        ray.shutdown()


def _dataset(workload: str, source: Source, cfg: RayConfig) -> Any:
    """The lazy pipeline: read -> map_batches on the actor pool."""
    import ray

    path, fs = source.path(workload), source.filesystem()
    pool = {"concurrency": cfg.actors, "num_cpus": cfg.actor_cpus, "batch_format": "numpy"}
    if workload == "images":
        if cfg.image_reader == "binary":    # PNG bytes; the actors decode them
            ds = ray.data.read_binary_files(path, include_paths=True, filesystem=fs,
                                            num_cpus=cfg.read_cpus)
        else:                               # the read tasks decode (8 threads each), to "L"
            ds = ray.data.read_images(path, include_paths=True, filesystem=fs, mode="L",
                                      num_cpus=cfg.read_cpus)
        return ds.map_batches(DigitScorer, fn_constructor_args=(str(workloads.MNIST_MODEL),),
                              batch_size=cfg.image_batch, **pool)
    reader = ray.data.read_csv if workload == "csv" else ray.data.read_parquet
    ds = reader(path, filesystem=fs, num_cpus=cfg.read_cpus)
    return ds.map_batches(TableScorer,
                          fn_constructor_args=(str(workloads.TABLE_MODEL), workloads.FEATURE_COLUMNS),
                          batch_size=cfg.table_batch, **pool)


@dataclass
class RunResult:
    seconds: float
    items: int
    correct: int
    first_result_s: float           # from the start to the first result batch on the driver
    ray_cpu_s: float                # CPU of the driver and Ray's processes (Azurite excluded)
    azurite_cpu_s: float | None     # CPU of the Azurite process, when its pid is known
    stats: str                      # Ray Data's per-operator statistics


def run_once(workload: str, source: Source, cfg: RayConfig,
             azurite_pid: int | None = None) -> RunResult:
    """One timed pass: build the dataset, stream every result batch to the driver and check it."""
    excluded = frozenset([azurite_pid]) if azurite_pid else frozenset()
    with CpuSampler([os.getpid()], excluded) as ray_cpu, \
            CpuSampler([azurite_pid] if azurite_pid else []) as azurite_cpu:
        started = time.perf_counter()
        first = 0.0
        items = correct = 0
        ds = _dataset(workload, source, cfg)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            first = first or time.perf_counter() - started
            predictions = batch["prediction"]
            if workload == "images":
                truth = np.fromiter((digits.label_from_filename(p) for p in batch["path"]),
                                    dtype=np.int64, count=len(predictions))
            else:
                truth = batch["label"]
            items += len(predictions)
            correct += int(np.count_nonzero(predictions == truth))
        seconds = time.perf_counter() - started
    return RunResult(seconds, items, correct, first, ray_cpu.seconds,
                     azurite_cpu.seconds if azurite_pid else None, ds.stats())


@dataclass
class Measurement:
    workload: str
    source: str
    items: int
    seconds: float                  # median over runs
    items_per_s: float              # median over runs
    runs: list[float]
    accuracy: float
    first_result_s: float           # median over runs
    ray_cpu_s: float                # median over runs
    azurite_cpu_s: float | None     # median over runs (standalone only)
    ray_init_s: float
    load_avg_1m: float              # of the machine when the measurement started
    config: dict[str, Any]
    notes: str
    name: str = NAME
    stats: str = field(default="", repr=False)   # of the last run; not in the JSON

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "stats"})


def _notes(workload: str, source: Source, cfg: RayConfig) -> str:
    if workload == "images":
        reader = ("read_binary_files(include_paths=True), PNGs decoded in the actors"
                  if cfg.image_reader == "binary" else
                  "read_images(mode='L', include_paths=True), PNGs decoded in the read tasks")
        batch = f"batch_size={cfg.image_batch} images"
    else:
        reader = "read_csv" if workload == "csv" else "read_parquet"
        batch = f"batch_size={cfg.table_batch} rows"
    text = (f"{reader} through {source.describe()}; map_batches on {cfg.actors} actors "
            f"(num_cpus={cfg.actor_cpus} each, one 1-thread ONNX session each), {batch}, read "
            f"tasks num_cpus={cfg.read_cpus}; Ray started once with num_cpus={NUM_CPUS}; each run "
            f"builds a new dataset and actor pool (actor start-up is inside the timing); results "
            f"streamed to the driver with iter_batches and checked there")
    return f"{text}; {source.note}" if source.note else text


def measure(workload: str, source: Source, runs: int, ray_init_s: float,
            cfg: RayConfig | None = None, azurite_pid: int | None = None) -> Measurement:
    """``runs`` timed passes of ``workload`` (Ray must be running: see :func:`ray_session`)."""
    cfg = cfg or RayConfig()
    load = os.getloadavg()[0]
    results = [run_once(workload, source, cfg, azurite_pid) for _ in range(runs)]
    counts = {r.items for r in results}
    if len(counts) != 1:
        raise RuntimeError(f"{workload}: runs saw different item counts {sorted(counts)}")
    n = counts.pop()
    seconds = [r.seconds for r in results]
    median = statistics.median
    return Measurement(
        workload=workload, source=source.kind, items=n,
        seconds=round(median(seconds), 3),
        items_per_s=round(median(n / s for s in seconds), 1),
        runs=[round(s, 3) for s in seconds],
        accuracy=round(results[-1].correct / n, 4) if n else 0.0,
        first_result_s=round(median(r.first_result_s for r in results), 3),
        ray_cpu_s=round(median(r.ray_cpu_s for r in results), 2),
        azurite_cpu_s=(round(median(r.azurite_cpu_s for r in results if r.azurite_cpu_s is not None), 2)
                       if azurite_pid else None),
        ray_init_s=round(ray_init_s, 3), load_avg_1m=round(load, 2),
        config=asdict(cfg) | ({"fs": source.fs} if source.kind == "azurite" else {}),
        notes=_notes(workload, source, cfg), stats=results[-1].stats)


def run_measurements(workload_list: list[str], connection_string: str, source: str, fs_list: list[str],
                     local_dir: Path | None, runs: int, cfg: RayConfig,
                     azurite_pid: int | None = None, stats: bool = False,
                     out: TextIO | None = None) -> list[Measurement]:
    """Start Ray once, measure every workload from every source, print each result as it comes
    (one JSON line to ``out``, by default stdout).

    Local copies (``source`` "local" or "both") are made first, untimed, before Ray starts.
    """
    with tempfile.TemporaryDirectory(prefix="raydata-") as tmp:
        sources: list[Source] = []
        if source in ("azurite", "both"):
            sources += [Source("azurite", connection_string=connection_string, fs=fs) for fs in fs_list]
        if source in ("local", "both"):
            root = local_dir or Path(tmp)
            for w in workload_list:
                copy_to_local(connection_string, w, root)
            sources.append(Source("local files", root=root,
                                  note="local copies of the same blobs (downloaded once, untimed)"))
        results: list[Measurement] = []
        with ray_session() as init_s:
            for src in sources:
                for w in workload_list:
                    m = measure(w, src, runs, init_s, cfg, azurite_pid)
                    print(m.to_json(), file=out or sys.stdout, flush=True)
                    if stats:
                        print(f"--- Ray Data stats, {w} from {src.kind} ---\n{m.stats}",
                              file=sys.stderr, flush=True)
                    results.append(m)
        return results


def standalone(args: argparse.Namespace, cfg: RayConfig, out: TextIO) -> list[Measurement]:
    """Own Azurite, upload the workloads (untimed), then measure images, csv and parquet."""
    from shared.local.azurite import Azurite
    from shared.settings import Settings
    from shared.storage import Storage

    wanted = args.workloads or list(WORKLOADS)
    with tempfile.TemporaryDirectory(prefix="raydata-standalone-") as tmp, Azurite() as az:
        storage = Storage(Settings(connection_string=az.connection_string))
        started = time.perf_counter()
        if "images" in wanted:
            workloads.upload_images(storage, args.images)
        if {"csv", "parquet"} & set(wanted):
            workloads.upload_tables(storage, Path(tmp) / "tables", rows=args.rows, parts=args.parts)
        print(f"raydata: uploaded the workloads in {time.perf_counter() - started:.1f}s",
              file=sys.stderr, flush=True)
        assert az.process is not None
        return run_measurements(wanted, az.connection_string, args.source, args.fs,
                                args.local_dir or Path(tmp) / "local", args.runs, cfg,
                                azurite_pid=az.process.pid, stats=args.stats, out=out)


@contextmanager
def json_only_stdout() -> Iterator[TextIO]:
    """Point file descriptor 1 at stderr for the duration (Ray's processes, which inherit it, and
    its C++ core print there) and yield a stream on the original stdout, for the JSON lines."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    out = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield out
    finally:
        sys.stdout.flush()
        out.close()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                        help=f"any of {', '.join(WORKLOADS)} (--standalone: default all)")
    parser.add_argument("--connection-string", help="of the Azurite that holds the workloads")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--source", choices=("azurite", "local", "both"), default="azurite")
    parser.add_argument("--local-dir", type=Path, help="for the local copies (default: a temp folder)")
    parser.add_argument("--fs", nargs="+", choices=FILESYSTEMS, default=[FS],
                        help=f"how Ray reads Azurite (several: one measurement each; default {FS}); "
                             "name the workloads before this option")
    parser.add_argument("--standalone", action="store_true",
                        help="start an Azurite, upload --images / --rows, measure the workloads")
    parser.add_argument("--images", type=int, default=2000, help="with --standalone")
    parser.add_argument("--rows", type=int, default=100_000, help="with --standalone")
    parser.add_argument("--parts", type=int, default=8, help="with --standalone")
    parser.add_argument("--actors", type=int, default=ACTORS)
    parser.add_argument("--actor-cpus", type=float, default=ACTOR_CPUS)
    parser.add_argument("--read-cpus", type=float, default=READ_CPUS)
    parser.add_argument("--image-batch", type=int, default=IMAGE_BATCH)
    parser.add_argument("--table-batch", type=int, default=TABLE_BATCH)
    parser.add_argument("--image-reader", choices=IMAGE_READERS, default=IMAGE_READER)
    parser.add_argument("--azurite-pid", type=int,
                        help="pid of the Azurite process, to report its CPU (known with --standalone)")
    parser.add_argument("--stats", action="store_true",
                        help="print Ray Data's statistics of each measurement's last run to stderr")
    args = parser.parse_args(argv)
    unknown = [w for w in args.workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    cfg = RayConfig(args.actors, args.actor_cpus, args.read_cpus, args.image_batch,
                    args.table_batch, args.image_reader)
    if not args.standalone:
        if not args.workloads:
            parser.error("name at least one workload (or use --standalone)")
        if not args.connection_string:
            parser.error("--connection-string is required (the blobs live in Azurite)")
    with json_only_stdout() as out:
        if args.standalone:
            standalone(args, cfg, out)
        else:
            run_measurements(args.workloads, args.connection_string, args.source, args.fs,
                             args.local_dir, args.runs, cfg, azurite_pid=args.azurite_pid,
                             stats=args.stats, out=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
