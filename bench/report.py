"""The harness's figures as Markdown (for the terminal and docs/performance.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _best(items: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    found = [r for r in items if all(r.get(k) == v for k, v in match.items())]
    return max(found, key=lambda r: r.get("items_per_s", 0), default=None)


def _rate(r: dict[str, Any] | None, unit: str = "") -> str:
    return f"{r['items_per_s']:,.0f}{unit}" if r else "n/a"


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    if not a or not b or not b.get("items_per_s"):
        return None
    return a["items_per_s"] / b["items_per_s"]


def _pct(x: float | None) -> str:
    return f"{x:.0%}" if x is not None else "n/a"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def images_section(res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    io = [r for r in res.get("io_sdk", []) + res.get("io_http", []) if r.get("workload") == "images"]
    io_limit = max(io, key=lambda r: r["items_per_s"], default=None)
    compute = [r for r in res.get("compute_images", [])]
    compute_best = max(compute, key=lambda r: r["items_per_s"], default=None)
    naive = _best(res.get("naive", []), workload="images")
    ray = [r for r in res.get("ray", []) if r.get("workload") == "images"]
    ray_azurite = _best(ray, source="azurite")
    ray_any = ray_azurite or max(ray, key=lambda r: r["items_per_s"], default=None)
    grid = res.get("grid", [])
    best = max(grid, key=lambda r: r["items_per_s"], default=None)
    tutorial = _best(grid, batch=5)
    rows = []
    for r in io:
        rows.append([f"I/O limit: {r['name']}", _rate(r), _pct(_ratio(r, io_limit)), r.get("notes", "")])
    if compute_best:
        rows.append(["compute limit: decode + score in memory (best batch)", _rate(compute_best),
                     _pct(_ratio(compute_best, io_limit)), compute_best.get("notes", "")])
    if naive:
        rows.append(["naive baseline: one process, one file at a time", _rate(naive),
                     _pct(_ratio(naive, io_limit)), naive.get("notes", "")])
    for r in ray:
        rows.append([f"Ray Data map_batches ({r.get('source')})", _rate(r), _pct(_ratio(r, io_limit)),
                     r.get("notes", "")])
    if best:
        rows.append([f"**ParallelRun**, best: mini_batch_size {best['batch']}, {best['processes']} "
                     f"processes x {best['nodes']} node(s)", f"**{_rate(best)}**",
                     f"**{_pct(_ratio(best, io_limit))}**", f"accuracy {best.get('accuracy', 0):.3f}"])
    if tutorial:
        rows.append([f"**ParallelRun**, tutorial's mini_batch_size 5 ({tutorial['processes']} x "
                     f"{tutorial['nodes']})", f"**{_rate(tutorial)}**",
                     f"**{_pct(_ratio(tutorial, io_limit))}**", ""])
    text = _table([f"images ({res.get('images', 10_000):,} PNGs in Azurite)", "images/s", "of I/O limit", "notes"],
                  rows)
    figures = {"io_limit": io_limit, "best": best, "tutorial": tutorial, "ray": ray_any,
               "ray_azurite": ray_azurite, "compute": compute_best}
    if grid:
        batches = sorted({r["batch"] for r in grid})
        grid_rows = []
        for n in sorted({r["nodes"] for r in grid}):
            for p in sorted({r["processes"] for r in grid}):
                cells = []
                for b in batches:
                    r = _best(grid, batch=b, processes=p, nodes=n)
                    cells.append(_rate(r) + ("" if not r or r["rows_ok"] else " (rows WRONG)"))
                grid_rows.append([f"{n} node(s) x {p} processes", *cells])
        text += "\n\nParallelRun end to end, images/s (submit to last row committed), by mini_batch_size:\n\n"
        text += _table(["", *[str(b) for b in batches]], grid_rows)
        text += "\n\n" + stages_table([r for r in (best, tutorial) if r])
    return text, figures


def stages_table(configs: list[dict[str, Any]]) -> str:
    """Per-try time by stage, from the job's own metrics (the status API's ``stages``)."""
    rows = []
    for r in configs:
        per = r["stages"]["per_try_ms"]
        rows.append([f"mini_batch_size {r['batch']}, {r['processes']} x {r['nodes']}",
                     *[f"{per.get(k, 0):,.1f}" for k in ("queue", "download", "wait", "run", "write")],
                     f"{r['stages'].get('storage_calls_per_try', 0):.1f}"])
    return ("Where a try's time goes (ms per try, from the job's status `stages`; queue = enqueued "
            "to started, wait = for a free scoring process, run = decode + score in `run()`, "
            "write = stage rows + ship outputs):\n\n"
            + _table(["job", "queue", "download", "wait", "run", "write", "calls/try (worker)"], rows))


def tables_section(res: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    rows, figures = [], {}
    for fmt in ("csv", "parquet"):
        compute = _best(res.get("compute_tables", []), workload=f"tables-{fmt}")
        io = max([r for r in res.get("io_sdk", []) + res.get("io_http", [])
                  if r.get("workload") == f"tables-{fmt}"], key=lambda r: r["items_per_s"], default=None)
        naive = _best(res.get("naive", []), workload=f"tables-{fmt}")
        ray = _best(res.get("ray", []), workload=fmt)
        ours = _best(res.get("tables", []), format=fmt)
        figures[fmt] = {"compute": compute, "ours": ours, "ray": ray}
        for label, r in (("compute limit: parse + score in memory", compute), ("I/O limit: read the files", io),
                         ("naive baseline", naive), (f"Ray Data ({ray.get('source') if ray else ''})", ray),
                         ("**ParallelRun** (best)", ours)):
            if r:
                extra = (f"mini_batch_size {r['batch']}, {r['processes']} processes x {r['nodes']} node(s)"
                         if r is ours else r.get("notes", ""))
                rows.append([fmt, label, _rate(r), _pct(_ratio(r, compute)), extra])
    text = _table(["format", f"tables ({res.get('rows', 1_000_000):,} rows)", "rows/s", "of compute limit", "notes"],
                  rows)
    return text + timeline_section(res.get("tables", []), figures), figures


def timeline_section(jobs: list[dict[str, Any]], figures: dict[str, Any]) -> str:
    """Where a table job's seconds go: its fixed costs and its rate once running."""
    rows = []
    for r in jobs:
        t = r.get("timeline") or {}
        if not t.get("last_settled"):
            continue
        compute = (figures.get(r["format"]) or {}).get("compute")
        steady = t.get("steady_items_per_s")
        rows.append([f"{r['format']}, {r['batch']}, {r['processes']} x {r['nodes']}",
                     f"{r['seconds']:.2f}", f"{t['first_try_started']:.2f}",
                     f"{t['first_settled'] - t['first_try_started']:.2f}",
                     f"{t['last_settled'] - t['first_settled']:.2f}",
                     f"{(t['done'] or r['seconds']) - t['last_settled']:.2f}",
                     f"{steady:,.0f}" if steady else "n/a",
                     _pct(steady / compute["items_per_s"]) if steady and compute else "n/a"])
    if not rows:
        return ""
    return ("\n\nWhere a table job's seconds go (s from submit; first try = scoring processes started, "
            "init() and the first mini-batch; steady = rows settled after the first mini-batch / "
            "time from the first to the last settle):\n\n"
            + _table(["job", "total s", "to first try", "first try", "first to last settle",
                      "last settle to done", "steady rows/s", "steady, of compute limit"], rows))


def trips_section(res: dict[str, Any]) -> str:
    out = []
    for t in res.get("trips", []):
        rows = [[k, f"{v:.2f}"] for k, v in t["by_kind"].items()]
        out.append(f"mini_batch_size {t['batch']} ({t['mini_batches']} mini-batches): "
                   f"**{t['overhead_per_batch']:.2f}** requests per mini-batch beyond reading "
                   f"{t['input_reads']:,} inputs and {t['result_writes']:,} result writes, plus "
                   f"{t['idle_polling_per_batch']:.2f} of the host's idle polling "
                   f"({t['idle_polling_per_s']:.1f}/s, time-based)\n\n" + _table(["request", "per mini-batch"], rows))
    return "\n\n".join(out)


def cost_section(res: dict[str, Any], prices: dict[str, float], instance_gb: float,
                 best: dict[str, Any] | None) -> str:
    trips = next((t for t in res.get("trips", []) if best and t["batch"] == best["batch"]),
                 (res.get("trips") or [None])[-1])
    if not best or not trips:
        return "n/a"
    n_batches = 1e6 / best["batch"]
    per_node = best["items_per_s"] / best["nodes"]
    gb_s = 1e6 / per_node * instance_gb
    reads = 1e6
    writes = n_batches + 1
    table_tx = sum(v for k, v in trips["by_kind"].items() if k.startswith("table")) * n_batches
    queue_tx = sum(v for k, v in trips["by_kind"].items() if k.startswith("queue")) * n_batches
    costs = [
        ("execution time", f"{gb_s:,.0f} GB-s", gb_s * prices["flex_gb_s"]),
        ("executions", f"{n_batches:,.0f}", n_batches / 1e6 * prices["flex_executions_per_million"]),
        ("blob reads (inputs)", f"{reads:,.0f}", reads / 1e4 * prices["blob_read_per_10k"]),
        ("blob writes (results)", f"{writes:,.0f}", writes / 1e4 * prices["blob_write_per_10k"]),
        ("table transactions", f"{table_tx:,.0f}", table_tx / 1e4 * prices["table_per_10k"]),
        ("queue operations", f"{queue_tx:,.0f}", queue_tx / 1e4 * prices["queue_per_10k"]),
    ]
    rows = [[k, q, f"${c:.4f}"] for k, q, c in costs]
    rows.append(["**total**", "", f"**${sum(c for _, _, c in costs):.2f}**"])
    return (f"Per million images at the best configuration (mini_batch_size {best['batch']}; "
            f"{per_node:,.0f} images/s per node as measured here, one node taken as one "
            f"{instance_gb:g} GB instance; request counts from the wire count above; assumed list "
            f"prices in bench/run.py `PRICES`, free grants ignored):\n\n" + _table(["item", "quantity", "cost"], rows))


INSTANCE_CORES = 2      # assumed cores of one instance (the figure the performance issue used)


def cpu_cost_section(res: dict[str, Any], prices: dict[str, float], instance_gb: float,
                     cores: int = INSTANCE_CORES) -> str:
    """Execution time per million images when an instance is bound by our own CPU (on Azure,
    storage runs elsewhere): our CPU per image over the instance's cores, at each measured
    mini_batch_size. Requests cost the same as above."""
    cells = cpu_cells(res)
    if not cells:
        return ""
    rows = []
    for r in cells:
        per_image_s = ours_ms(r) / 1000 / cores
        gb_s = 1e6 * per_image_s * instance_gb
        rows.append([f"mini_batch_size {r['batch']}", f"{ours_ms(r):.2f} ms", f"{1 / per_image_s:,.0f}",
                     f"{gb_s:,.0f} GB-s", f"${gb_s * prices['flex_gb_s']:.4f}"])
    return ("\n\nBound by our own CPU instead (our code in the host + scoring, from \"Our CPU per item\"; "
            f"{cores} cores per {instance_gb:g} GB instance assumed, all busy):\n\n"
            + _table(["cell", "our CPU per image", "images/s per instance", "execution time per million",
                      "cost"], rows))


def targets_section(res: dict[str, Any], img: dict[str, Any], tab: dict[str, Any]) -> str:
    rows = []

    def add(target: str, value: float | None, goal: float, fmt: str, better: str = "high") -> None:
        if value is None:       # its part was skipped (or failed): no verdict either way
            rows.append([target, "n/a", "not measured"])
            return
        met = value >= goal if better == "high" else value <= goal
        rows.append([target, fmt.format(value), "met" if met else "**missed**"])

    add("images, best mini_batch_size: >= 70% of the I/O limit", _ratio(img.get("best"), img.get("io_limit")),
        0.7, "{:.0%}")
    ray = img.get("ray_azurite") or img.get("ray")
    add(f"images: >= 2x Ray Data ({ray.get('source') if ray else 'n/a'})", _ratio(img.get("best"), ray), 2.0, "{:.1f}x")
    add("images, mini_batch_size 5: >= 40% of the I/O limit", _ratio(img.get("tutorial"), img.get("io_limit")),
        0.4, "{:.0%}")
    for scale in res.get("tables_scale", []):
        add(f"tables at scale ({scale['format']}, {scale['rows']:,} rows): >= 70% of the compute limit",
            scale["of_compute_limit"], 0.7, "{:.0%}")
        add(f"small table job ({scale['format']}): fixed cost <= 1 s", scale["small"]["fixed"]["fixed_s"],
            1.0, "{:.2f} s", better="low")
    for fmt in ("csv", "parquet"):
        add(f"tables ({fmt}): >= 70% of the compute limit", _ratio(tab.get(fmt, {}).get("ours"),
                                                                   tab.get(fmt, {}).get("compute")), 0.7, "{:.0%}")
    trips = max((t["overhead_per_batch"] for t in res.get("trips", [])), default=None)
    add("<= 6 storage round trips per mini-batch of overhead", trips, 6.0, "{:.2f}", better="low")
    big = next((p for p in res.get("planner", []) if p.get("blobs") == 100_000), None)
    add("planner: 100,000 blobs in < 60 s", big["seconds"] if big else None, 60.0, "{:.0f} s", better="low")
    client = reference_client(res)
    cells = {r["batch"]: r for r in cpu_cells(res)}
    if 200 in cells and client:
        add("our CPU per image, mini_batch_size 200: <= 1.5x the minimal client's", ours_ms(cells[200]) / client,
            1.5, "{:.1f}x", better="low")
    if 5 in cells:
        add("our CPU per image, mini_batch_size 5: <= 3 ms", ours_ms(cells[5]), 3.0, "{:.2f} ms", better="low")
    cold = res.get("cold", {}).get("first_batch_s")
    add("cold start (submit to first mini-batch done) < 3 s", cold, 3.0, "{:.2f} s", better="low")
    return _table(["target", "measured", ""], rows)


CPU_ROWS = (("worker", "host process: our code (worker, planner, finalizer)"),
            ("emulation", "host process: the Functions host's job (local emulation; the .NET host's on Azure)"),
            ("scoring", "scoring processes (decode + score, pipes; exited ones included)"),
            ("azurite", "Azurite (storage; elsewhere on Azure)"))


def cpu_cells(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One grid cell per mini_batch_size with CPU figures: 2 processes x 1 node where measured."""
    grid = [r for r in res.get("grid", []) if r.get("cpu")]
    cells = []
    for b in sorted({r["batch"] for r in grid}):
        same = [r for r in grid if r["batch"] == b]
        cells.append(next((r for r in same if (r["processes"], r["nodes"]) == (2, 1)), same[0]))
    return cells


def reference_client(res: dict[str, Any]) -> float | None:
    """The minimal client the targets compare with (``aiohttp``, as an ordinary async reader;
    ``streams`` where aiohttp was not installed), ms of its CPU per image."""
    clients = res.get("client") or []
    found = next((c for kind in ("aiohttp", "streams") for c in clients if c.get("client") == kind),
                 clients[0] if clients else None)
    return found["cpu_ms_per_item"] if found else None


def ours_ms(r: dict[str, Any]) -> float:
    """What an instance on Azure spends of its own CPU per item: our code in the host process and
    the scoring processes (the Functions host's job and storage run elsewhere there)."""
    return r["cpu"]["worker"]["ms_per_item"] + r["cpu"]["scoring"]["ms_per_item"]


def cpu_section(res: dict[str, Any]) -> str:
    """Our CPU per item and per mini-batch by process kind, with the minimal client beside."""
    cells = cpu_cells(res)
    if not cells:
        return ""
    clients = res.get("client") or []
    header = ["process kind", *[f"size {r['batch']}: ms/image, ms/mini-batch" for r in cells]]
    rows = []
    for kind, label in CPU_ROWS:
        rows.append([label, *[f"{r['cpu'][kind]['ms_per_item']:.2f}, {r['cpu'][kind]['ms_per_batch']:.1f}"
                              for r in cells]])
    rows.append(["**ours: host's our code + scoring** (what bounds an instance on Azure)",
                 *[f"**{ours_ms(r):.2f}**, {ours_ms(r) * r['batch']:.1f}" for r in cells]])
    for client in clients:
        rows.append([f"{client['name']}: {client['notes']}",
                     *[f"{client['cpu_ms_per_item']:.3f} (ours: {ours_ms(r) / client['cpu_ms_per_item']:.1f}x)"
                       if client["cpu_ms_per_item"] else "n/a" for r in cells]])
        if client.get("azurite_ms_per_item") is not None:
            rows.append([f"Azurite, serving the {client['name']}",
                         *[f"{client['azurite_ms_per_item']:.2f}" for _ in cells]])
    rows.append(["other processes on the machine meanwhile (share of all its cores)",
                 *[f"{r.get('other_cpu_share', 0):.0%}" for r in cells]])
    where = ", ".join(f"size {r['batch']}: {r['processes']} x {r['nodes']}, {r['mini_batches']} mini-batches"
                      for r in cells)
    create = res.get("scratch_create_us")
    scratch = (f" A file create in the hosts' scratch folder cost {create:.0f} us of CPU in this run "
               f"(`--work-dir`; each downloaded image is one): part of our code's figure, and it "
               f"depends on the folder's file system." if create is not None else "")
    text = (f"CPU seconds of each process kind per image and per mini-batch, over the jobs of the grid "
            f"({where}; bench/hostcpu.py says how each is counted). CPU per item is far less sensitive "
            f"to other load on the machine than wall time, but not immune (caches, frequency, the "
            f"contention inside a process).{scratch}\n\n" + _table(header, rows))
    stage_rows = []
    for r in cells:
        emulation = (r.get("cpu_breakdown") or {}).get("emulation", {})
        if emulation:
            stage_rows.append([f"size {r['batch']}", ", ".join(
                f"{k} {1000 * v / max(1, r['mini_batches']):.2f}" for k, v in
                sorted(emulation.items(), key=lambda kv: -kv[1]))])
    if stage_rows:
        text += ("\n\nThe emulation's stages, ms per mini-batch (its own `time.thread_time()` counters):\n\n"
                 + _table(["job", "stages"], stage_rows))
    return text


def render(res: dict[str, Any], prices: dict[str, float], instance_gb: float) -> str:
    images, img = images_section(res)
    tables, tab = tables_section(res)
    grid_runs = res.get("grid_runs", 1)
    grid_note = ("" if grid_runs == res["runs"] else
                 f"; the other cells of the ParallelRun grid: {grid_runs} run(s) each")
    parts = [f"Measured {res['date']} with `{res['command'].strip()}` (median of {res['runs']} runs "
             f"each{grid_note}; the whole harness took {res.get('seconds', 0) / 60:.0f} min).\n\n"
             f"Machine: {res['machine']}.",
             "### Targets\n\n" + targets_section(res, img, tab),
             "### Images\n\n" + images]
    cpu = cpu_section(res)
    if cpu:
        parts.append("### Our CPU per item\n\n" + cpu)
    parts.append("### Tables\n\n" + tables)
    if res.get("tables_scale"):
        from bench.tables_scale import markdown
        parts.append("### Tables at scale\n\n`python -m bench.tables_scale` (`--table-rows`): one job "
                     "over every row, the compute limit at the same piece size, and the small job "
                     "(the first file) whose fixed cost is submit to done less its rows at its "
                     "steady rate:\n\n" + markdown(res["tables_scale"]))
    if res.get("trips"):
        parts.append("### Storage round trips per mini-batch (counted on the wire)\n\n" + trips_section(res))
    if res.get("cold"):
        c = res["cold"]
        parts.append(f"### Cold start\n\nSubmit to first mini-batch settled, on a host that is up but has "
                     f"never run the job (scoring processes started and the model loaded on demand): "
                     f"**{c['first_batch_s']:.2f} s** (runs: {', '.join(f'{x:.2f}' for x in c['runs'])}).")
    grid = res.get("grid", []) + res.get("tables", [])
    if grid:
        host = max(r.get("host_mb", 0) for r in grid)
        scoring = max(r.get("scoring_mb", 0) for r in grid)
        plan = res.get("planner", [])
        plan_txt = "; ".join(f"{p['blobs']:,} blobs: {p['seconds']:.1f} s, peak {p['peak_mb']:.0f} MB"
                             for p in plan)
        parts.append(f"### Memory and the planner\n\nPeak RSS over every job above: host process "
                     f"(worker, planner, finalizer) {host:,.0f} MB; scoring process {scoring:,.0f} MB.\n\n"
                     f"Planner: {plan_txt or 'n/a'} (see the Planner section for where the time goes).")
    parts.append("### Cost estimate (Flex Consumption)\n\n" + cost_section(res, prices, instance_gb, img.get("best"))
                 + cpu_cost_section(res, prices, instance_gb))
    return "\n\n".join(parts) + "\n"


def write(doc: Path, text: str, start: str, end: str) -> None:
    """Replace the text between the harness's markers in ``doc`` (appending them if missing)."""
    current = doc.read_text()
    block = f"{start}\n{text}{end}"
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1]
        doc.write_text(before + block + after)
    else:
        doc.write_text(current.rstrip() + "\n\n## Throughput (the harness)\n\n" + block + "\n")
