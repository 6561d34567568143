"""The ``parallelrun`` command: parse, call ``shared``, render.

Storage comes from ``AzureWebJobsStorage`` (or the identity-based settings), else from
``local.settings.json``'s Values, else the local Azurite that ``parallelrun up`` starts. The local
key (``PARALLELRUN_LOCAL_KEY``) comes from the environment, else from ``local.settings.json``.
A spec file's relative ``source_directory`` must stay inside the spec file's folder (a folder
elsewhere is given with ``--source-dir``); the spec is validated before anything is uploaded.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from azure.core.exceptions import AzureError

from shared import environment
from shared.cli import logs as joblog_cli
from shared.cli import uploads
from shared.cli.console import (
    console,
    err_console,
    files_table,
    jobs_table,
    models_table,
    rows_table,
    show_status,
    upload_line,
    upload_progress,
    watch,
)
from shared.cli.outputs import download_results, list_script_files
from shared.cli.reach import probe
from shared.cli.specfiles import load_spec_file, size_text, upload_source
from shared.errors import ParallelRunError, SpecError, SubmitterError
from shared.limits import Limits, load_text
from shared.service.jobs import joblogs
from shared.service.jobs import lifecycle as jobs
from shared.service.jobs.status import output_of
from shared.service.ledger import decisions
from shared.service.ledger.store import Ledger
from shared.service.results import read_head
from shared.service.working import environments, models
from shared.settings import LOCAL_KEY_SETTING, Settings
from shared.spec import ContainerName
from shared.states import JobState
from shared.storage import Storage

app = typer.Typer(help="ParallelRunStep-style batch inference on Azure Functions and Azure Storage.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
model_app = typer.Typer(help="Register and list models.", no_args_is_help=True)
app.add_typer(model_app, name="model")
env_app = typer.Typer(help="Build job environments ahead of time.", no_args_is_help=True)
app.add_typer(env_app, name="env")

JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
NoReuseOpt = Annotated[bool, typer.Option(
    "--no-reuse", help="run afresh: allow_reuse false (an unchanged succeeded job is reused by default)")]


def load_settings() -> Settings:
    env = dict(os.environ)
    local = Path("local.settings.json")
    if local.exists():
        try:
            values = json.loads(local.read_text()).get("Values", {})
        except (ValueError, AttributeError):
            raise SubmitterError(f"{local.resolve()} must be JSON with a Values object") from None
        if not any(k.startswith("AzureWebJobsStorage") for k in env):
            env = {**values, **env}
        elif values.get(LOCAL_KEY_SETTING):
            env.setdefault(LOCAL_KEY_SETTING, values[LOCAL_KEY_SETTING])
    if not any(k.startswith("AzureWebJobsStorage") for k in env):
        # no storage named at all: the local Azurite (an identity-based account, e.g.
        # AzureWebJobsStorage__accountName with your az/azd login, is used as it is)
        env["AzureWebJobsStorage"] = "UseDevelopmentStorage=true"
    return Settings.from_env(env)


def _connect() -> tuple[Storage, Ledger]:
    storage = Storage(load_settings())
    probe(storage)     # an answer in seconds, not after the SDK's minutes of retries
    storage.ensure()
    return storage, Ledger(storage.ledger)


def _print(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        console.print(data)


def _overrides(sets: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set takes FIELD=VALUE, got {item!r}")
        try:
            out[key.strip()] = load_text(value, Limits()) if value else ""
        except SpecError as exc:
            raise SpecError([{"field": key.strip(), "message": f"--set {item[:80]!r}: {e['message']}"}
                             for e in exc.errors]) from None
    return out


def upload_path(storage: Storage, local: Path, target: str) -> int:
    """Upload a file or a folder to ``CONTAINER[/PREFIX]``; returns the number of files."""
    return _upload(storage, local, target).files


def _upload(storage: Storage, local: Path, target: str, progress: bool = True) -> uploads.UploadReport:
    """Upload a file or folder (``shared.cli.uploads``), saying how many files and bytes first
    and showing a progress bar unless told not to."""
    container, _, prefix = target.partition("/")
    _check_container(container)
    if not local.exists():
        raise SubmitterError(f"{local} does not exist")
    files = uploads.files_to_upload(local, prefix)
    total = sum(f.size for f in files)
    err_console.print(f"uploading {local}: {len(files)} file(s), {size_text(total)} to {target}", soft_wrap=True)
    storage.ensure_container(container)
    with upload_progress(len(files), total, enabled=progress) as show:
        return uploads.upload(storage, container, files, on_progress=show,
                              notify=lambda note: err_console.print(note, soft_wrap=True))


def _check_container(name: str) -> str:
    from pydantic import TypeAdapter, ValidationError
    try:
        return TypeAdapter(ContainerName).validate_python(name)
    except ValidationError as exc:
        raise SubmitterError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None


def _with_local_key(settings: Settings) -> Settings:
    """``settings`` with the local key: the configured one, or one saved in local.settings.json."""
    from dataclasses import replace

    from shared.local.keys import ensure_key
    if settings.local_key:
        err_console.print(f"local key required (from {LOCAL_KEY_SETTING})")
        return settings
    key, generated = ensure_key(Path("local.settings.json"))
    err_console.print(f"local key required: {'generated ' + key + ' and saved' if generated else 'read'}"
                      f" as {LOCAL_KEY_SETTING} in local.settings.json; send it as the "
                      "x-functions-key header or ?code=", soft_wrap=True)
    return replace(settings, local_key=key)


def parse_ports(text: str) -> tuple[int, int, int]:
    """``B,Q,T``: Azurite's blob, queue and table ports."""
    try:
        ports = tuple(int(p) for p in text.split(","))
    except ValueError:
        ports = ()
    if len(ports) != 3 or not all(0 < p < 65536 for p in ports):
        raise typer.BadParameter(f"--azurite-ports takes BLOB,QUEUE,TABLE ports, got {text!r}")
    return ports


@app.command()
def up(nodes: Annotated[int, typer.Option(help="host processes (stand-ins for instances)")] = 1,
       port: Annotated[int, typer.Option(help="HTTP port on 127.0.0.1")] = 7071,
       data: Annotated[Path, typer.Option(help="Azurite data folder")] = Path(".parallelrun/azurite"),
       in_memory: Annotated[bool, typer.Option(help="keep Azurite's data in memory")] = False,
       azurite_ports: Annotated[str | None, typer.Option(
           help="BLOB,QUEUE,TABLE ports of the local Azurite [default: 10000,10001,10002]; "
                "given, it is the storage even if AzureWebJobsStorage names another")] = None,
       log_dir: Annotated[Path | None, typer.Option(
           help="the nodes' log files [default: a new temporary folder]")] = None,
       require_key: Annotated[bool, typer.Option(
           "--require-key", help="answer 401 without the local key (PARALLELRUN_LOCAL_KEY)")] = False
       ) -> None:
    """Azurite plus the local host, in the foreground. Ctrl-C, SIGTERM or closing the terminal
    stops both; a node that dies is restarted; nothing outlives this process, even killed."""
    import dataclasses
    import logging
    import sys

    from shared.local.azurite import Azurite, port_open
    from shared.local.cluster import LocalCluster
    from shared.settings import azurite_connection_string

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    ports = parse_ports(azurite_ports or "10000,10001,10002")
    local = azurite_connection_string(*ports)
    settings = load_settings()
    if azurite_ports is not None:
        settings = dataclasses.replace(settings, connection_string=local)
    if require_key:
        settings = _with_local_key(settings)
    stop_signals = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

    def on_signal(signum: int, frame: Any) -> None:   # all stop cleanly, like Ctrl-C, once
        for sig in stop_signals:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in stop_signals:
        signal.signal(sig, on_signal)
    azurite = None
    try:
        if settings.connection_string == local and not port_open(ports[0]):
            azurite = Azurite(*ports, location=None if in_memory else data,
                              die_with_parent=True).start()
            err_console.print(f"Azurite on 127.0.0.1:{','.join(map(str, ports))} "
                              f"({'memory' if in_memory else data})")
        Storage(settings).ensure()
        with LocalCluster(settings, nodes=nodes, http_port=port, log_dir=log_dir,
                          supervise=True) as cluster:
            err_console.print(f"local host: {nodes} node(s), API on {cluster.http_url}/api, "
                              f"logs in {cluster.log_dir} — Ctrl-C to stop", soft_wrap=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if azurite:
            azurite.stop()


@env_app.command("build")
def env_build(file: Annotated[Path, typer.Argument(help="a conda YAML or pip requirements file")],
              into: Annotated[Path, typer.Option(help="the folder of pre-built environments "
                                                      "(PARALLELRUN_ENV_PREBUILT_DIR)")] = Path("environments"),
              ) -> None:
    """Build a job environment ahead of time, into a folder deployed with the app: jobs with the
    same requirements then install nothing (and PARALLELRUN_ENV_PREBUILT_ONLY runs only these)."""
    try:
        resolved = environment.resolve(file.name, lambda name: (file.parent / name).read_text())
    except environment.BadEnvironment as exc:
        raise SubmitterError(str(exc)) from None
    if resolved is None:
        raise SubmitterError(f"{file}: no environment")
    started = time.monotonic()
    built = environments.Environments(into.resolve()).ensure(resolved, lambda line: console.print(line))
    what = "built" if built.built_now else "already built"
    console.print(f"environment {built.key} {what} in {time.monotonic() - started:.1f} s: {built.path}",
                  soft_wrap=True)


@app.command()
def upload(local_path: Path, target: Annotated[str, typer.Argument(metavar="CONTAINER[/PREFIX]")],
           as_json: JsonOpt = False) -> None:
    """Upload a file or folder to blob storage (many at once, with a progress bar)."""
    storage, _ = _connect()
    report = _upload(storage, local_path, target, progress=not as_json)
    if as_json:
        _print({"target": target, **report.summary()}, True)
    else:
        console.print(upload_line(report, target), soft_wrap=True)


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
    _print(rows if as_json else models_table(rows), as_json)


def _wait_or_print(storage: Storage, ledger: Ledger, job_id: str, wait: bool, as_json: bool) -> None:
    """The job id and how to watch it first; then (``wait``) its progress until it ends."""
    if not wait:
        if as_json:
            _print({"job_id": job_id}, as_json)
        else:
            console.print(f"submitted {job_id}", soft_wrap=True)
        err_console.print(f"watch it with `parallelrun status {job_id} --watch`, its logs with "
                          f"`parallelrun logs {job_id} --follow`", soft_wrap=True, markup=False,
                          highlight=False)
        return
    st = _watch_job(storage, ledger, job_id, announce=True)
    _show(st, as_json)
    if st["state"] != "succeeded":
        raise typer.Exit(1)


def _watch_job(storage: Storage, ledger: Ledger, job_id: str, announce: bool = False) -> dict[str, Any]:
    """The live progress until the job ends (``announce``: after the job id and how to watch it,
    inside the same guard, so that a Ctrl-C right after the id is shown is answered too); Ctrl-C
    leaves the job running and says how to go on."""
    try:
        if announce:
            err_console.print(f"submitted {job_id}: watch it with `parallelrun status {job_id} "
                              f"--watch`, its logs with `parallelrun logs {job_id} --follow`",
                              soft_wrap=True, markup=False, highlight=False)
        return watch(lambda: jobs.status(storage, ledger, job_id))
    except KeyboardInterrupt:
        err_console.print(f"\njob {job_id} keeps running: watch it with `parallelrun status "
                          f"{job_id} --watch`, or cancel it with `parallelrun cancel {job_id}`",
                          soft_wrap=True, markup=False, highlight=False)
        raise typer.Exit(130) from None


def _show(st: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print(st, as_json)
    else:
        show_status(console, st)


@app.command()
def submit(spec: Path,
           source_dir: Annotated[Path | None, typer.Option(help="overrides source_directory")] = None,
           set_: Annotated[list[str] | None, typer.Option("--set", help="FIELD=VALUE override")] = None,
           wait: Annotated[bool, typer.Option(help="show progress until the job ends")] = False,
           no_reuse: NoReuseOpt = False, as_json: JsonOpt = False) -> None:
    """Submit SPEC.json|SPEC.yaml; uploads source_directory as a content-addressed snapshot."""
    storage, ledger = _connect()
    data = {**load_spec_file(spec, source_dir, storage.settings.limits), **_overrides(set_)}
    if no_reuse:
        data["allow_reuse"] = False
    job = jobs.submit(storage, ledger, upload_source(storage, data))
    _wait_or_print(storage, ledger, job.job_id, wait, as_json)


@app.command()
def resubmit(job_id: str,
             set_: Annotated[list[str] | None, typer.Option("--set", help="FIELD=VALUE override")] = None,
             wait: Annotated[bool, typer.Option(help="show progress until the job ends")] = False,
             no_reuse: NoReuseOpt = False, as_json: JsonOpt = False) -> None:
    """Submit JOB again with some fields replaced (e.g. --set mini_batch_size=1). It keeps the
    original's allow_reuse: a job that succeeded is reused unless --no-reuse."""
    storage, ledger = _connect()
    job = jobs.resubmit(storage, ledger, job_id, {**_overrides(set_), **({"allow_reuse": False} if no_reuse else {})})
    _wait_or_print(storage, ledger, job.job_id, wait, as_json)


@app.command()
def status(job_id: str, watch_: Annotated[bool, typer.Option("--watch")] = False,
           as_json: JsonOpt = False) -> None:
    """State, counts, timings, throughput, output and first errors of a job."""
    storage, ledger = _connect()
    st = _watch_job(storage, ledger, job_id) if watch_ else jobs.status(storage, ledger, job_id)
    _show(st, as_json)


@app.command("jobs")
def list_jobs(limit: int = 20, as_json: JsonOpt = False) -> None:
    """Recent jobs, newest first."""
    storage, ledger = _connect()
    rows = jobs.list_jobs(storage, limit, ledger)
    _print(rows if as_json else jobs_table(rows), as_json)


@app.command()
def cancel(job_id: str) -> None:
    """Stop a job: unrun mini-batches are dropped, finished output is kept."""
    storage, ledger = _connect()
    job = jobs.cancel(storage, ledger, job_id)
    if job.stop_reason == decisions.CANCELLED and not JobState(job.state).terminal:
        console.print(f"{job.job_id}: {job.stop_reason}; running mini-batches finish, then what "
                      f"finished is written. Follow it with `parallelrun status {job.job_id} --watch`",
                      soft_wrap=True, markup=False, highlight=False)
    else:
        console.print(f"{job.job_id}: {job.state}{' — ' + job.error if job.error else ''} "
                      "(not cancelled: it had already stopped or finished)", soft_wrap=True,
                      markup=False, highlight=False)


@app.command()
def results(job_id: str, head: int = 10,
            download: Annotated[Path | None, typer.Option(
                help="save the output here (a summary_only job: the files its script wrote)")] = None,
            with_logs: Annotated[bool, typer.Option("--logs", help="with --download: the logs/ "
                                                                    "folder too, into DIR/logs/")] = False
            ) -> None:
    """Show the first rows of a job's output (a summary_only job: the files its script wrote),
    or download it."""
    storage, ledger = _connect()
    job = ledger.get_job(jobs.check_job_id(job_id))
    out = output_of(storage, job)
    if out.replaced_by:
        raise ParallelRunError(f"job {job_id}: output replaced by job {out.replaced_by}")
    if with_logs and not download:
        raise typer.BadParameter("--logs needs --download DIR")
    if download:
        download_results(storage, job_id, out, download, with_logs)
    elif out.blob is None:
        list_script_files(storage, job_id, out, head)
    else:
        console.print(rows_table(read_head(storage, out.container, out.blob, head), f"first {head} rows"))
        # where the rows are, and the command that fetches them (the URL needs credentials)
        console.print(f"output: {out.container}/{out.blob}; all of it: parallelrun results {job_id} "
                      "--download DIR", soft_wrap=True, markup=False, highlight=False)


LogKind = Annotated[str | None, typer.Option(
    "--kind", help="stdout|stderr|entry|error|sys|job (entry: EntryScript().logger)")]


@app.command()
def logs(job_id: str,
         path: Annotated[str | None, typer.Argument(help="one file, relative to logs/ "
                                                          "(as --list prints it)")] = None,
         follow: Annotated[bool, typer.Option("--follow", "-f",
                                              help="print what is appended until the job ends")] = False,
         node: Annotated[str | None, typer.Option(help="only this node's files")] = None,
         process: Annotated[str | None, typer.Option(help="only this process's files")] = None,
         kind: LogKind = None,
         list_: Annotated[bool, typer.Option("--list", help="list the files, not their contents")] = False,
         as_json: JsonOpt = False) -> None:
    """A job's log files (what the script printed and logged, its tracebacks, the job's result),
    each under a header; --follow keeps printing what is appended until the job has ended."""
    storage, ledger = _connect()
    job = ledger.get_job(jobs.check_job_id(job_id))
    filters = joblog_cli.Filters(node or "", process or "", kind or "", path or "")
    if list_:
        listing = joblogs.list_files(storage, job, node=filters.node, process=filters.process,
                                     kind=filters.kind)
        _list_logs(listing, filters, as_json)
        return
    try:
        if follow:
            joblog_cli.follow(storage, ledger, job.job_id, filters, sys.stdout)
        elif not joblog_cli.print_files(storage, job, filters, sys.stdout):
            err_console.print(f"job {job_id} has no log files{' matching' if node or process or kind or path else ''} "
                              f"in {joblogs.location(job)} yet", soft_wrap=True, markup=False,
                              highlight=False)
            if path:
                raise typer.Exit(1)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _list_logs(listing: joblogs.Listing, filters: joblog_cli.Filters, as_json: bool) -> None:
    files = filters.select(listing.files)
    if as_json:
        _print({**listing.to_dict(), "files": [f.__dict__ for f in files]}, True)
        return
    console.print(f"log files in {listing.location}", soft_wrap=True, markup=False, highlight=False)
    console.print(files_table([(f.path, f.size) for f in files], ""))
    if listing.truncated:
        err_console.print(listing.note)
    console.print(f"parallelrun logs {listing.job_id} PATH", soft_wrap=True, markup=False, highlight=False)


@app.command()
def demo(nodes: Annotated[int, typer.Option(help="host processes")] = 2,
         port: Annotated[int, typer.Option(help="HTTP port (a free one if taken)")] = 7071,
         out: Annotated[Path, typer.Option(help="where the output and logs are saved")] = Path("parallelrun-demo"),
         ) -> None:
    """Replay the PRS MNIST tutorial end to end on a private Azurite; saves its output and logs
    in a local folder (the private Azurite stops with the demo)."""
    from shared.cli.demo import run_demo
    run_demo(nodes=nodes, port=port, out_dir=out)


def main() -> None:
    # the service code the CLI calls logs what its operators need (e.g. "job stopped"); the CLI
    # says it in its own words, so only errors of those logs are shown (`up` shows its own)
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr, format="%(levelname)s %(message)s")
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
    except AzureError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        err_console.print(f"[red]storage error:[/red] {message}")
        raise SystemExit(1) from None
