"""Terminal rendering for the CLI and the demo: live job and upload progress, status and row tables
(rich)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from shared.cli.uploads import Tally, UploadReport
from shared.states import JobState

console = Console()
err_console = Console(stderr=True)

TERMINAL = {s.value for s in JobState if s.terminal}


def progress_counts(st: dict[str, Any]) -> tuple[int, int | None]:
    """(done, total) of what the bar counts: items, or mini-batches while a table's rows are
    unknown; total is None until planning is done (pure)."""
    items, mb = st["items"], st["mini_batches"]
    if items["total"]:
        done, total = items["succeeded"] + items["failed"], items["total"]
    else:   # a table's rows are known only once read: count mini-batches
        done, total = mb["succeeded"] + mb["failed"], mb["total"]
    return done, total if mb["planning_done"] else None


def eta_s(done: int, total: int | None, elapsed_s: float) -> float | None:
    """Seconds left at the rate so far (done per second since the job started); None while
    nothing is done or the total is unknown (pure)."""
    if total is None or done <= 0 or elapsed_s <= 0:
        return None
    return max(0, total - done) * elapsed_s / done


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss`` (pure)."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def timing_text(st: dict[str, Any]) -> str:
    """"1:05 elapsed, ETA 0:40": counted from the job's start, not from when the watch began."""
    elapsed = float(st["timings"]["elapsed_s"])
    if st["state"] in TERMINAL:
        return f"{clock(elapsed)} elapsed"
    if not st["timings"]["started_at"]:
        return "not started"
    done, total = progress_counts(st)
    left = eta_s(done, total, elapsed)
    return f"{clock(elapsed)} elapsed, ETA {'?' if left is None else clock(left)}"


def watch(fetch: Callable[[], dict[str, Any]], interval_s: float = 0.5,
          timeout_s: float | None = None) -> dict[str, Any]:
    """Show a live progress bar of a job's items until it finishes; returns its last status."""
    columns = (BarColumn(bar_width=30), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[detail]}"), TextColumn("{task.fields[timing]}"))
    deadline = time.monotonic() + timeout_s if timeout_s else None
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("job", total=None, detail="", timing="")
        while True:
            st = fetch()
            items, mb = st["items"], st["mini_batches"]
            done, total = progress_counts(st)
            detail = (f"{st['state']} · batches {mb['succeeded'] + mb['failed']}/{mb['total']}"
                      f" · failed items {items['failed']}{_building(st)}")
            progress.update(task, completed=done, total=total, detail=detail, timing=timing_text(st))
            if st["state"] in TERMINAL:
                return st
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"job {st['job_id']} still {st['state']} after {timeout_s:.0f} s")
            time.sleep(interval_s)


def status_table(st: dict[str, Any]) -> Table:
    table = Table(title=f"job {st['job_id']}", show_header=False, title_justify="left")
    mb, items = st["mini_batches"], st["items"]
    final = JobState(st["state"]).terminal
    table.add_row("state", _state_line(st))
    table.add_row("mini-batches", f"{mb['total']} planned{'' if mb['planning_done'] or final else ' so far'}: "
                  f"{mb['queued']} {'not run' if final else 'queued'}, "
                  f"{mb['running']} running, {mb['succeeded']} succeeded, "
                  f"{mb['failed']} failed ({mb['failed_tries']} failed tries)")
    counted = st.get("items_counted") or {}
    estimated = counted.get("total_estimated")
    table.add_row("items", f"{'~' if estimated else ''}{items['total']} total"
                  f"{' (estimate)' if estimated else ''}: {items['succeeded']} succeeded, "
                  f"{items['failed']} failed" + (f" ({counted['failed_bounded']} an upper bound)"
                                                 if counted.get("failed_bounded") else ""))
    table.add_row("rows", str(st["rows"]))
    table.add_row("elapsed", f"{st['timings']['elapsed_s']:.1f} s "
                  f"({st['throughput']['items_per_s']:.1f} items/s)")
    if st.get("stages", {}).get("tries"):
        table.add_row("stages", stages_text(st["stages"]))
    if (st.get("reuse") or {}).get("note"):
        table.add_row("reuse", st["reuse"]["note"])
    for env in st.get("environment", []):
        table.add_row(f"environment ({env['node']})", f"{env['state']} after {env['elapsed_s']:.0f} s: "
                      f"{env['last_line']}")
    for err in st.get("errors", [])[:5]:
        ex = err["example"]
        table.add_row(f"error x{err['count']}", Text(f"[{err['kind']}] {err['message']} "
                      f"(e.g. mini-batch {ex['mini_batch']}, file {ex['file']})"))
    return table


TRACEBACK_LINES = 25    # of the first error's traceback shown by `status` (its end)


def show_status(out: Console, st: dict[str, Any]) -> None:
    """The status table, then where the output and logs are and the first error's traceback.
    Paths and commands are printed whole on lines of their own, never folded or cut to the
    terminal's width, so that they can be copied as printed."""
    out.print(status_table(st))
    job_id, output = st["job_id"], st["output"]
    where = f"{output['container']}/{output['blob']}" if output.get("blob") else \
        f"{output['container']}/{output['prefix']}/".replace("//", "/")
    out.print(f"output: {where}{' (partial)' if output.get('partial') else ''}", soft_wrap=True,
              markup=False, highlight=False)
    # not the blob's URL: the container is private, so it would not open as printed (`--json` has it)
    out.print(f"  parallelrun results {job_id} --download DIR", soft_wrap=True, markup=False,
              highlight=False)
    out.print(f"logs: {output['logs']}", soft_wrap=True, markup=False, highlight=False)
    out.print(f"  parallelrun logs {job_id}", soft_wrap=True, markup=False, highlight=False)
    errors = st.get("errors") or []
    if errors and errors[0].get("traceback"):
        first = errors[0]
        ex = first["example"]
        lines = str(first["traceback"]).rstrip().splitlines()
        out.print(f"first error's traceback (mini-batch {ex['mini_batch']} try {ex['attempt']}, "
                  f"{ex['node']} {ex['process']}):", soft_wrap=True, markup=False, highlight=False)
        if len(lines) > TRACEBACK_LINES:
            out.print(f"  ... {len(lines) - TRACEBACK_LINES} line(s) above: parallelrun logs "
                      f"{job_id} --kind error", soft_wrap=True, markup=False, highlight=False)
        for line in lines[-TRACEBACK_LINES:]:
            out.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)


def stages_text(stages: dict[str, Any]) -> str:
    """"queue 1.2 s (40.0 ms/try), download ... over 30 tries": where the tries' time went (pure)."""
    per_try = stages.get("per_try_ms", {})
    parts = [f"{name} {seconds:.1f} s ({per_try.get(name, 0.0):.1f} ms/try)"
             for name, seconds in stages.get("total_s", {}).items()]
    return f"{', '.join(parts)} over {stages['tries']} tries"


def jobs_table(rows: list[dict[str, Any]]) -> Table:
    """Job ids are never folded or cut: they are what every other command takes."""
    table = Table(title="recent jobs", title_justify="left")
    table.add_column("job", no_wrap=True, min_width=max((len(r["job_id"]) for r in rows), default=3))
    for name in ("name", "state", "mini-batches", "created (UTC)"):
        table.add_column(name)
    for row in rows:
        created = (dt.datetime.fromtimestamp(row["created_at"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
                   if row.get("created_at") else "-")
        shown = "stopping" if row.get("stopping") else row.get("state", "")   # reason: `status`
        state = Text(shown, style=_STATE_STYLES.get(row.get("state", ""), ""))
        table.add_row(row["job_id"], row.get("name", ""), state, _progress(row.get("progress")), created)
    return table


def _progress(progress: dict[str, Any] | None) -> str:
    """Settled of planned mini-batches of an unfinished job ("" for a finished one)."""
    if not progress:
        return ""
    planned = f"{progress['planned']}{'' if progress['planning_done'] else '+'}"
    failed = f", {progress['failed']} failed" if progress["failed"] else ""
    return f"{progress['settled']}/{planned}{failed}"


def files_table(files: list[tuple[str, int]], title: str) -> Table:
    """Paths relative to a folder (what `logs PATH` takes), never folded or cut."""
    table = Table(title=title, title_justify="left")
    table.add_column("file", no_wrap=True, min_width=max((len(f) for f, _ in files), default=4))
    table.add_column("bytes", justify="right")
    for name, size in files:
        table.add_row(name, f"{size:,}")
    return table


def models_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("model", "version", "files", title="registered models", title_justify="left")
    for row in rows:
        files = row["files"]
        shown = ", ".join(files[:3]) + (f" (+{len(files) - 3} more)" if len(files) > 3 else "")
        table.add_row(row["name"], str(row["version"]), Text(shown, overflow="fold"))
    return table


_STATE_STYLES = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan",
                 "finalizing": "cyan"}


def _building(st: dict[str, Any]) -> str:
    """" · building environment on node-0 for 12 s: <the installer's last line>" while one builds."""
    building = [e for e in st.get("environment", []) if e["state"] in ("building", "stalled")]
    if not building:
        return ""
    env = building[0]
    return (f" · {'building' if env['state'] == 'building' else 'stalled'} environment on "
            f"{env['node']} for {env['elapsed_s']:.0f} s: {env['last_line'][:80]}")


def _state_line(st: dict[str, Any]) -> Text:
    """The state and its reason; a job that succeeded although items failed, in bold colour
    (red when no item succeeded): "succeeded with 0 of 300 items" must not pass unseen."""
    line = Text(st["state"])
    if st.get("reason"):
        items = st["items"]
        style = ("" if st["state"] != "succeeded" or not items["failed"]
                 else "bold red" if not items["succeeded"] else "bold yellow")
        line.append(" — ")
        line.append(str(st["reason"]), style=style)
    return line


def rows_table(rows: list[str], title: str) -> Table:
    table = Table("#", "row", title=title, title_justify="left")
    for i, row in enumerate(rows, 1):
        table.add_row(str(i), row)
    return table


class _UploadRate(ProgressColumn):
    """Files/s and bytes/s since the upload began."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0:
            return Text("")
        return Text(f"{task.completed / elapsed:,.0f} files/s · {_bytes(task.fields['bytes'] / elapsed)}/s")


def _bytes(n: float) -> str:
    """``n`` bytes for people: "950 bytes", "12.3 KB", "4.5 MB", "1.2 GB" (powers of 1024)."""
    if n < 1024:
        return f"{n:,.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            break
    return f"{n:,.1f} {unit}"


@contextmanager
def upload_progress(files: int, nbytes: int, enabled: bool = True) -> Iterator[Callable[[Tally], None]]:
    """A progress bar of an upload: files done/total, bytes done, files/s, bytes/s, requests
    retried; yields the callback that moves it, given the uploader's tally."""
    if not enabled:
        yield lambda tally: None
        return
    columns = (BarColumn(bar_width=20), MofNCompleteColumn(), TextColumn("files · {task.fields[done]} ·"),
               _UploadRate(), TextColumn("{task.fields[retried]}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("upload", total=files, bytes=0, done=_bytes(0), retried="·")

        def show(tally: Tally) -> None:
            progress.update(task, completed=tally.files, bytes=tally.bytes, done=_bytes(tally.bytes),
                            retried=f"· {tally.retries:,} retried ·" if tally.retries else "·")
        yield show


def upload_line(report: UploadReport, target: str) -> str:
    """The line after an upload: how many files and bytes, how long, how fast."""
    return (f"uploaded {report.files:,} file(s) to {target}: {_bytes(report.bytes)} in "
            f"{report.seconds:.1f} s ({report.files_per_s:,.0f} files/s, {_bytes(report.bytes_per_s)}/s"
            + (f", {report.retries:,} request(s) retried)" if report.retries else ")"))
