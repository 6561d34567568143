"""The ``parallelrun`` command: parse, call ``shared``, render.

Storage comes from ``AzureWebJobsStorage`` (or the identity-based settings), else from
``local.settings.json``'s Values, else the local Azurite that ``parallelrun up`` starts.
"""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from . import jobs, models, output, snapshots
from .console import console, err_console, rows_table, status_table, watch
from .errors import ParallelRunError, SpecError
from .ledger import Ledger
from .settings import Settings
from .storage import Storage

app = typer.Typer(help="ParallelRunStep-style batch inference on Azure Functions and Azure Storage.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
model_app = typer.Typer(help="Register and list models.", no_args_is_help=True)
app.add_typer(model_app, name="model")

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def load_settings() -> Settings:
    env = dict(os.environ)
    local = Path("local.settings.json")
    if not any(k.startswith("AzureWebJobsStorage") for k in env) and local.exists():
        env = {**json.loads(local.read_text()).get("Values", {}), **env}
    env.setdefault("AzureWebJobsStorage", "UseDevelopmentStorage=true")
    return Settings.from_env(env)


def _connect() -> tuple[Storage, Ledger]:
    storage = Storage(load_settings())
    storage.ensure()
    return storage, Ledger(storage.ledger)


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        console.print(data)


def _overrides(sets: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set takes FIELD=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value) if value else ""
    return out


def upload_path(storage: Storage, local: Path, target: str) -> int:
    """Upload a file or a folder to ``CONTAINER[/PREFIX]``; returns the number of files."""
    container, _, prefix = target.partition("/")
    client = storage.ensure_container(container)
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    base = local.parent if local.is_file() else local

    def put(path: Path) -> None:
        name = output.join(prefix, path.relative_to(base).as_posix())
        with open(path, "rb") as fh:
            client.upload_blob(name, fh, overwrite=True)

    from rich.progress import track
    with ThreadPoolExecutor(16) as pool:
        for _ in track(pool.map(put, files), total=len(files), console=err_console,
                       description=f"uploading to {target}"):
            pass
    return len(files)


@app.command()
def up(nodes: Annotated[int, typer.Option(help="host processes (stand-ins for instances)")] = 1,
       port: Annotated[int, typer.Option(help="HTTP port on 127.0.0.1")] = 7071,
       data: Annotated[Path, typer.Option(help="Azurite data folder")] = Path(".parallelrun/azurite"),
       in_memory: Annotated[bool, typer.Option(help="keep Azurite's data in memory")] = False) -> None:
    """Azurite plus the local host, in the foreground (Ctrl-C stops both)."""
    from .local.azurite import Azurite, port_open
    from .local.cluster import LocalCluster

    settings = load_settings()
    signal.signal(signal.SIGTERM, signal.default_int_handler)   # stop cleanly on SIGTERM too
    signal.signal(signal.SIGINT, signal.default_int_handler)
    azurite = None
    if not port_open(10000):
        azurite = Azurite(10000, 10001, 10002, location=None if in_memory else data).start()
        err_console.print(f"Azurite on 127.0.0.1:10000-10002 ({'memory' if in_memory else data})")
    Storage(settings).ensure()
    try:
        with LocalCluster(settings, nodes=nodes, http_port=port) as cluster:
            err_console.print(f"local host: {nodes} node(s), API on {cluster.http_url}/api — Ctrl-C to stop")
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if azurite:
            azurite.stop()


@app.command()
def upload(local_path: Path, target: Annotated[str, typer.Argument(metavar="CONTAINER[/PREFIX]")]) -> None:
    """Upload a file or folder to blob storage."""
    storage, _ = _connect()
    n = upload_path(storage, local_path, target)
    console.print(f"uploaded {n} file(s) to {target}")


@model_app.command("register")
def model_register(name: str, path: Path) -> None:
    """Register a file or folder as the next version of model NAME."""
    storage, _ = _connect()
    m = models.register(storage, name, path)
    console.print(f"model {m.name} version {m.version} ({len(m.files)} file(s))")


@model_app.command("list")
def model_list(as_json: JsonOpt = False) -> None:
    storage, _ = _connect()
    rows = [{"name": m.name, "version": m.version, "files": list(m.files)} for m in models.list_models(storage)]
    _print(rows, as_json)


def load_spec_file(path: Path, source_dir: Path | None) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise SpecError([{"field": "(spec)", "message": f"{path} does not hold a mapping"}])
    folder = source_dir or (path.parent / data["source_directory"] if data.get("source_directory")
                            and not str(data["source_directory"]).startswith(snapshots.PREFIX) else None)
    if folder is not None:
        data["source_directory"] = str(folder)
    return data


def _wait_or_print(storage: Storage, ledger: Ledger, job_id: str, wait: bool, as_json: bool) -> None:
    if not wait:
        _print({"job_id": job_id} if as_json else f"submitted {job_id}", as_json)
        return
    st = watch(lambda: jobs.status(storage, ledger, job_id))
    _print(st if as_json else status_table(st), as_json)
    if st["state"] != "succeeded":
        raise typer.Exit(1)


@app.command()
def submit(spec: Path,
           source_dir: Annotated[Optional[Path], typer.Option(help="overrides source_directory")] = None,
           set_: Annotated[list[str], typer.Option("--set", help="FIELD=VALUE override")] = [],
           wait: Annotated[bool, typer.Option(help="show progress until the job ends")] = False,
           as_json: JsonOpt = False) -> None:
    """Submit SPEC.json|SPEC.yaml; uploads source_directory as a content-addressed snapshot."""
    storage, ledger = _connect()
    data = {**load_spec_file(spec, source_dir), **_overrides(set_)}
    src = data.get("source_directory")
    if src and not str(src).startswith(snapshots.PREFIX):
        data["source_directory"] = snapshots.upload(storage, src)
    job = jobs.submit(storage, ledger, data)
    _wait_or_print(storage, ledger, job.job_id, wait, as_json)


@app.command()
def resubmit(job_id: str,
             set_: Annotated[list[str], typer.Option("--set", help="FIELD=VALUE override")] = [],
             wait: Annotated[bool, typer.Option(help="show progress until the job ends")] = False,
             as_json: JsonOpt = False) -> None:
    """Submit JOB again with some fields replaced (e.g. --set mini_batch_size=1)."""
    storage, ledger = _connect()
    job = jobs.resubmit(storage, ledger, job_id, _overrides(set_))
    _wait_or_print(storage, ledger, job.job_id, wait, as_json)


@app.command()
def status(job_id: str, watch_: Annotated[bool, typer.Option("--watch")] = False,
           as_json: JsonOpt = False) -> None:
    """State, counts, timings, throughput, output and first errors of a job."""
    storage, ledger = _connect()
    st = watch(lambda: jobs.status(storage, ledger, job_id)) if watch_ else jobs.status(storage, ledger, job_id)
    _print(st if as_json else status_table(st), as_json)


@app.command("jobs")
def list_jobs(limit: int = 20, as_json: JsonOpt = False) -> None:
    """Recent jobs, newest first."""
    storage, _ = _connect()
    _print(jobs.list_jobs(storage, limit), as_json)


@app.command()
def cancel(job_id: str) -> None:
    """Stop a job: unrun mini-batches are dropped, finished output is kept."""
    storage, ledger = _connect()
    job = jobs.cancel(storage, ledger, job_id)
    console.print(f"{job.job_id}: {job.state} {job.error}")


@app.command()
def results(job_id: str, head: int = 10,
            download: Annotated[Optional[Path], typer.Option(help="save the output file here")] = None) -> None:
    """Show the first rows of a job's output, or download it."""
    storage, ledger = _connect()
    out = jobs.status(storage, ledger, job_id, error_limit=0)["output"]
    if out["replaced_by"]:
        raise ParallelRunError(f"job {job_id}: output replaced by job {out['replaced_by']}")
    if out["blob"] is None:
        raise ParallelRunError(f"job {job_id} writes no rows (output_action summary_only)")
    if download:
        path = output.download_to(storage, out["container"], out["blob"], download / Path(out["blob"]).name)
        console.print(f"saved {path}")
    else:
        console.print(rows_table(output.read_head(storage, out["container"], out["blob"], head),
                                 f"first {head} rows"))
        console.print(out["url"], soft_wrap=True)


@app.command()
def demo(nodes: Annotated[int, typer.Option(help="host processes")] = 2,
         port: Annotated[int, typer.Option(help="HTTP port (a free one if taken)")] = 7071) -> None:
    """Replay the PRS MNIST tutorial end to end on a private Azurite."""
    from .demo import run_demo
    run_demo(nodes=nodes, port=port)


def main() -> None:
    try:
        app()
    except SpecError as exc:
        err_console.print("[red]invalid job spec:[/red]")
        for e in exc.errors:
            err_console.print(f"  {e['field']}: {e['message']}")
        raise SystemExit(2) from None
    except ParallelRunError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(1) from None
