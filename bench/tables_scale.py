"""Tables at scale: a table job of millions of rows end to end beside the compute limit taken at
the same piece size, and the fixed cost of a small table job.

    .venv/bin/python -m bench.tables_scale --rows 10000000 --batch 10MB      # CSV and Parquet
    .venv/bin/python -m bench.tables_scale --rows 2000000 --formats csv --runs 1   # a quick try

For each format the table (:func:`bench.workloads.write_scale_tables`: the breast-cancer rows,
generated vectorised with pyarrow, in files of ``--file-rows`` rows) is uploaded once into an
Azurite persisted to ``/dev/shm``; each job then runs on a fresh Azurite started on a copy of that
folder (as the harness's parts do), one format at a time so that ``/dev/shm`` holds at most two
copies of one format. Per format it measures:

* **ParallelRun, large job**: every file, ``mini_batch_size --batch``, submit -> done (the last row
  committed), every output row counted; its timeline (to the first try, the first try, first to
  last settle, last settle to done) and its steady rate (rows settled after the first mini-batch /
  time from the first to the last settle); CPU by process kind (:mod:`bench.hostcpu`) and the
  share of the machine other processes used meanwhile;
* **the small job**: the first file only (``--file-rows`` rows), same piece size, on its own fresh
  cluster; its *fixed cost* is submit -> done minus its steady work (its rows at its own steady
  rate): what a job costs beyond scoring its rows;
* **the compute limit at the same piece size**: the same files read from memory in the pieces the
  planner makes at ``--batch`` (:func:`shared.scoring.tabular.read_piece`) and scored by the entry
  script's ``run()``, in 2 processes x 1 thread and 1 process x 2 threads, the faster kept
  (:mod:`bench.limits.compute_tables`, the harness's compute limit with one piece size).

One JSON object per format goes to stdout (and all of them to ``--json``), a table to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import e2e, workloads
from bench.limits.compute import compute_variants, fastest, median_run, rate
from bench.limits.results import MIN_ACCURACY
from bench.limits.timing import Timed, Workers, split

ROOT = Path(__file__).resolve().parents[1]
console = Console(stderr=True, width=200)
SHM = Path("/dev/shm")


def size_bytes(text: str) -> int:
    """``"10MB"`` -> 10 MiB, as the job spec reads ``mini_batch_size`` (1KB = 1024 bytes)."""
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}
    upper = text.strip().upper()
    for unit, factor in units.items():
        if upper.endswith(unit):
            return int(float(upper[:-2]) * factor)
    return int(upper)


def check_space(folder: Path, needed: int) -> None:
    """Stop before filling ``folder``'s file system (``/dev/shm`` is memory)."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise SystemExit(f"{folder} has {free / 1e9:.1f} GB free, {needed / 1e9:.1f} GB needed "
                         "(the seeded Azurite and one fresh copy of it): use fewer --rows")


def fixed_cost(result: dict[str, Any], rows: int) -> dict[str, float | None]:
    """A job's fixed cost from its timeline: submit -> done minus its steady work (``rows`` at its
    own steady rate), and the parts of it the timeline names."""
    t = result.get("timeline") or {}
    steady = t.get("steady_items_per_s")
    done = t.get("done") or result["seconds"]
    parts: dict[str, float | None] = {
        "to_first_try_s": t.get("first_try_started"),
        "first_try_s": (t["first_settled"] - t["first_try_started"]) if "first_settled" in t else None,
        "last_settle_to_done_s": (done - t["last_settled"]) if "last_settled" in t else None,
        "steady_work_s": rows / steady if steady else None,
    }
    parts["fixed_s"] = round(done - parts["steady_work_s"], 3) if parts["steady_work_s"] else None
    return parts


# -- the compute limit at the piece size --------------------------------------------------------

def _local_scorer(paths: dict[str, str], pieces: list[dict[str, Any]], schema: dict[str, Any],
                  threads: int) -> Any:
    """A :class:`bench.limits.compute_tables.TableScorer` over files it reads itself (blob name ->
    local path), so gigabytes are not pickled to the worker process."""
    from bench.limits.compute_tables import TableScorer

    files = {name: Path(path).read_bytes() for name, path in paths.items()}
    return TableScorer(files, pieces, schema, threads)


def compute_limit(names: list[str], paths: list[Path], rows: int, piece_bytes: int,
                  runs: int) -> dict[str, Any]:
    """Rows/s of reading the files from memory in ``piece_bytes`` pieces and scoring them, the
    fastest way of using the cores (each a median of ``runs``)."""
    from shared.scoring.tables import file_format
    from shared.scoring.tabular import LocalFileSource, infer_schema, plan_pieces

    sources = [LocalFileSource(p, name=n) for n, p in zip(names, paths)]
    schema = infer_schema(sources[0], file_format({}, names[0])).to_dict()
    pieces = [pc.to_dict() for s in sources for pc in plan_pieces(s, file_format({}, s.name), piece_bytes)]
    by_name = dict(zip(names, (str(p) for p in paths)))
    timings: dict[str, list[Timed]] = {}
    accuracy = 0.0
    for variant in compute_variants(os.cpu_count() or 1):
        args = [({n: by_name[n] for n in {p["file"] for p in share}}, share, schema, variant.threads)
                for share in split(pieces, variant.processes)]
        with Workers(_local_scorer, args) as pool:
            def check(timed: Timed) -> None:
                nonlocal accuracy
                got = sum(r[0] for r in timed.results)
                if got != rows:
                    raise RuntimeError(f"compute limit read {got} rows, expected {rows}")
                accuracy = sum(r[1] for r in timed.results) / rows
                if accuracy < MIN_ACCURACY:
                    raise RuntimeError(f"accuracy {accuracy:.3f} < {MIN_ACCURACY}: the model did not score")
            timings[variant.label] = median_run(pool, "parse_score", (), runs, check)
        console.log(f"  compute limit, {variant.label}: {rate(timings[variant.label], rows):,.0f} rows/s")
    best = fastest(timings)
    runs_s = [t.seconds for t in timings[best]]
    return {"items_per_s": rate(timings[best], rows), "variant": best, "pieces": len(pieces),
            "piece_bytes": piece_bytes, "runs": [round(s, 2) for s in runs_s],
            "accuracy": round(accuracy, 4),
            "other_cpu_share": round(statistics.median(t.other_cpu_s for t in timings[best])
                                     / (statistics.median(runs_s) * (os.cpu_count() or 1)), 3),
            "by_variant": {v: rate(t, rows) for v, t in timings.items()}}


# -- ParallelRun ----------------------------------------------------------------------------------

def seed_format(tmp: Path, fmt: str, paths: list[Path], rows: int) -> e2e.Seeded:
    """One format's files uploaded once into an Azurite persisted to ``/dev/shm`` (then stopped)."""
    from shared.local.azurite import Azurite
    from shared.settings import Settings
    from shared.storage import Storage

    root = Path(tempfile.mkdtemp(prefix=f"parallelrun-scale-{fmt}-", dir=SHM if SHM.is_dir() else tmp))
    folder = root / "seed"
    with Azurite(location=folder) as az:
        storage = Storage(Settings(connection_string=az.connection_string,
                                   scratch_dir=str(tmp / "scratch-seed")))
        container = storage.ensure_container(workloads.TABLES_CONTAINER)
        names = []
        for path in paths:
            name = f"{fmt}/{path.name}"
            with open(path, "rb") as fh:
                container.upload_blob(name, fh, overwrite=True, max_concurrency=4)
            names.append(name)
    size = sum(p.stat().st_size for p in paths)
    tables = workloads.Tables(workloads.TABLES_CONTAINER, rows, {fmt: names},
                              {fmt: [str(p) for p in paths]}, {fmt: size})
    return e2e.Seeded(folder, tmp, None, tables)


def parallelrun(seeded: e2e.Seeded, fmt: str, batch: str, processes: int, nodes: int, runs: int,
                files: list[str] | None, rows: int, part: str) -> dict[str, Any]:
    """``runs`` jobs over the format's files (or only ``files``) on a fresh Azurite and cluster."""
    def spec(bench: e2e.Bench) -> dict[str, Any]:
        s = bench.table_spec(fmt, batch, processes, nodes)
        if files is not None:
            s["inputs"] = [{"container": workloads.TABLES_CONTAINER, "files": files, "type": "tabular"}]
        return s

    with e2e.fresh_env(seeded, part) as env:
        r = e2e.run_configuration(env, spec, rows, nodes, runs)
    r["rows"] = rows
    r["fixed"] = fixed_cost(r, rows)
    return r


def measure_format(tmp: Path, fmt: str, paths: list[Path], rows: int, args: argparse.Namespace) -> dict[str, Any]:
    size = sum(p.stat().st_size for p in paths)
    check_space(SHM if SHM.is_dir() else tmp, int(2.2 * size))
    t = time.monotonic()
    seeded = seed_format(tmp, fmt, paths, rows)
    seed_s = time.monotonic() - t
    console.log(f"{fmt}: {rows:,} rows in {len(paths)} files ({size / 1e9:.2f} GB) seeded in {seed_s:.0f} s")
    try:
        names = seeded.tables.files[fmt] if seeded.tables else []
        small_rows = workloads_rows(paths[0], fmt)
        console.log(f"{fmt}: the small job ({small_rows:,} rows, one file)")
        small = parallelrun(seeded, fmt, args.batch, args.processes, args.nodes, args.runs,
                            names[:1], small_rows, f"{fmt}-small")
        console.log(f"  {small['seconds']:.2f} s, fixed cost {small['fixed']['fixed_s']} s")
        console.log(f"{fmt}: the large job ({rows:,} rows)")
        large = parallelrun(seeded, fmt, args.batch, args.processes, args.nodes, args.runs,
                            None, rows, f"{fmt}-large")
        console.log(f"  {large['items_per_s']:,.0f} rows/s ({large['seconds']:.1f} s), rows ok: {large['rows_ok']}")
    finally:
        e2e.remove_seed(seeded)
    console.log(f"{fmt}: the compute limit at {args.batch} pieces")
    compute = compute_limit(names, paths, rows, size_bytes(args.batch), args.runs)
    return {"format": fmt, "rows": rows, "files": len(paths), "bytes": size, "batch": args.batch,
            "processes": args.processes, "nodes": args.nodes, "seed_s": round(seed_s, 1),
            "ours": large, "small": small, "compute": compute,
            "of_compute_limit": round(large["items_per_s"] / compute["items_per_s"], 3),
            "steady_of_compute_limit": round((large["timeline"].get("steady_items_per_s") or 0)
                                             / compute["items_per_s"], 3)}


def workloads_rows(path: Path, fmt: str) -> int:
    """Rows in one generated file (its rows are counted, not assumed)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq
        return int(pq.ParquetFile(path).metadata.num_rows)
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b"")) - 1


def render(results: list[dict[str, Any]]) -> Table:
    table = Table("format", "rows", "ParallelRun rows/s", "compute limit rows/s", "of limit",
                  "steady of limit", "small job s", "small job fixed s", "other load",
                  title="Tables at scale")
    for r in results:
        ours, small = r["ours"], r["small"]
        table.add_row(r["format"], f"{r['rows']:,}", f"{ours['items_per_s']:,.0f}",
                      f"{r['compute']['items_per_s']:,.0f}", f"{r['of_compute_limit']:.0%}",
                      f"{r['steady_of_compute_limit']:.0%}", f"{small['seconds']:.2f}",
                      f"{small['fixed']['fixed_s']}", f"{ours['other_cpu_share']:.0%}")
    return table


def markdown(results: list[dict[str, Any]]) -> str:
    """The figures as docs/performance.md's table: one row per format."""
    head = ["format", "rows", "ParallelRun rows/s (s)", "compute limit at the piece size, rows/s",
            "of the limit", "steady, of the limit", "small job: s", "fixed cost s (to first try, "
            "first try, last settle to done)", "other load"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        ours, small, f = r["ours"], r["small"], r["small"]["fixed"]
        parts = ", ".join(f"{f[k]:.2f}" if f[k] is not None else "n/a"
                          for k in ("to_first_try_s", "first_try_s", "last_settle_to_done_s"))
        lines.append("| " + " | ".join([
            r["format"], f"{r['rows']:,}", f"{ours['items_per_s']:,.0f} ({ours['seconds']:.1f})",
            f"{r['compute']['items_per_s']:,.0f}", f"{r['of_compute_limit']:.0%}",
            f"{r['steady_of_compute_limit']:.0%}", f"{small['seconds']:.2f}",
            f"{f['fixed_s']} ({parts})", f"{ours['other_cpu_share']:.0%}"]) + " |")
    return "\n".join(lines)


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # unwind: Azurite and hosts stop
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--file-rows", type=int, default=1_000_000,
                        help="rows per file; the small job is the first file")
    parser.add_argument("--batch", default="10MB", help="mini_batch_size, and the compute limit's pieces")
    parser.add_argument("--formats", default="csv,parquet")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="runs per figure (the median is kept)")
    parser.add_argument("--json", type=Path, default=ROOT / ".parallelrun" / "tables-scale.json")
    e2e.add_submit_option(parser)
    args = parser.parse_args()
    e2e.use_submit(args)
    formats = tuple(f for f in args.formats.split(",") if f)
    started = time.monotonic()
    out: dict[str, Any] = {"command": "python -m bench.tables_scale " + " ".join(sys.argv[1:]),
                           "date": time.strftime("%Y-%m-%d"), "results": []}
    with tempfile.TemporaryDirectory(prefix="parallelrun-scale-") as tmp_name:
        tmp = Path(tmp_name)
        t = time.monotonic()
        written = workloads.write_scale_tables(tmp / "tables", args.rows, args.file_rows, formats)
        out["generate_s"] = round(time.monotonic() - t, 1)
        console.log(f"generated {args.rows:,} rows as {', '.join(formats)} in {out['generate_s']:.0f} s")
        for fmt in formats:
            r = measure_format(tmp, fmt, written[fmt], args.rows, args)
            out["results"].append(r)
            print(json.dumps(r), flush=True)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(out, indent=1))
    out["seconds"] = round(time.monotonic() - started, 1)
    args.json.write_text(json.dumps(out, indent=1))
    console.print(render(out["results"]))
    print(markdown(out["results"]))
    ok = all(r["ours"]["rows_ok"] and r["small"]["rows_ok"] for r in out["results"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
