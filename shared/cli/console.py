"""Terminal rendering for the CLI and the demo: live job and upload progress, status and row tables
(rich)."""

from __future__ import annotations

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


def watch(fetch: Callable[[], dict[str, Any]], interval_s: float = 0.5,
          timeout_s: float | None = None) -> dict[str, Any]:
    """Show a live progress bar of a job's items until it finishes; returns its last status."""
    columns = (BarColumn(bar_width=30), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[detail]}"), TimeElapsedColumn())
    deadline = time.monotonic() + timeout_s if timeout_s else None
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("job", total=None, detail="")
        while True:
            st = fetch()
            items, mb = st["items"], st["mini_batches"]
            if items["total"]:
                done, total = items["succeeded"] + items["failed"], items["total"]
            else:   # a table's rows are known only once read: count mini-batches
                done, total = mb["succeeded"] + mb["failed"], mb["total"]
            total = total if mb["planning_done"] else None
            detail = (f"{st['state']} · batches {mb['succeeded'] + mb['failed']}/{mb['total']}"
                      f" · failed items {items['failed']}{_building(st)}")
            progress.update(task, completed=done, total=total, detail=detail)
            if st["state"] in TERMINAL:
                return st
            if deadline and time.monotonic() > deadline:
                raise TimeoutError(f"job {st['job_id']} still {st['state']} after {timeout_s:.0f} s")
            time.sleep(interval_s)


def status_table(st: dict[str, Any]) -> Table:
    table = Table(title=f"job {st['job_id']}", show_header=False, title_justify="left")
    mb, items = st["mini_batches"], st["items"]
    table.add_row("state", _state_line(st))
    table.add_row("mini-batches", f"{mb['total']} planned{'' if mb['planning_done'] else ' so far'}: "
                  f"{mb['queued']} queued, {mb['running']} running, {mb['succeeded']} succeeded, "
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
    table.add_row("output", st["output"]["url"])
    if (st.get("reuse") or {}).get("note"):
        table.add_row("reuse", st["reuse"]["note"])
    for env in st.get("environment", []):
        table.add_row(f"environment ({env['node']})", f"{env['state']} after {env['elapsed_s']:.0f} s: "
                      f"{env['last_line']}")
    for err in st.get("errors", [])[:5]:
        ex = err["example"]
        table.add_row(f"error x{err['count']}", f"[{err['kind']}] {err['message']} "
                      f"(e.g. mini-batch {ex['mini_batch']}, file {ex['file']})")
    return table


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
