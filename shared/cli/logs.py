"""``parallelrun logs``: a job's log files printed with a header per file, or followed as they grow.

Following polls the files' sizes and reads only each file's new byte range (at most
``joblogs.MAX_READ_BYTES`` per read), until the job has finished and a pass finds nothing new.
A file that became shorter was rewritten (the finalizer's files): it is printed again.
"""

from __future__ import annotations

import codecs
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from shared.service.jobs import joblogs
from shared.service.ledger.rows import JobRow
from shared.service.ledger.store import Ledger
from shared.states import JobState
from shared.storage import Storage

PRINT_BYTES = joblogs.MAX_READ_BYTES    # of each file `logs` prints without --follow (its end)


@dataclass(frozen=True)
class Filters:
    node: str = ""
    process: str = ""
    kind: str = ""
    path: str = ""      # one file, relative to logs/

    def select(self, files: list[joblogs.LogFile]) -> list[joblogs.LogFile]:
        return [f for f in files if not self.path or f.path == self.path]


def header(path: str) -> str:
    return f"==> {path} <=="


def files(storage: Storage, job: JobRow, filters: Filters) -> list[joblogs.LogFile]:
    if filters.path:
        joblogs.check_path(filters.path)
    listing = joblogs.list_files(storage, job, node=filters.node, process=filters.process,
                                 kind=filters.kind)
    if listing.truncated:
        print(f"({listing.note})", file=sys.stderr)
    return filters.select(listing.files)


def print_files(storage: Storage, job: JobRow, filters: Filters, out: TextIO) -> int:
    """Each matching file's last ``PRINT_BYTES`` under a header; returns how many files."""
    found = files(storage, job, filters)
    for n, f in enumerate(found):
        chunk = joblogs.read(storage, job, f.path, tail=PRINT_BYTES)
        out.write(("\n" if n else "") + header(f.path) + "\n")
        if chunk.offset:
            out.write(f"(the first {chunk.offset:,} of {chunk.size:,} bytes are not shown: "
                      f"parallelrun results {job.job_id} --logs --download DIR)\n")
        text = chunk.data.decode("utf-8", errors="replace")
        out.write(text if text.endswith("\n") or not text else text + "\n")
    out.flush()
    return len(found)


@dataclass
class Follower:
    """What has been printed of each file so far, and of which file the last bytes were."""

    storage: Storage
    job_id: str
    filters: Filters
    out: TextIO
    offsets: dict[str, int] = field(default_factory=dict)
    decoders: dict[str, codecs.IncrementalDecoder] = field(default_factory=dict)
    last: str = ""

    def step(self, job: JobRow) -> bool:
        """Print what is new in every matching file; returns whether anything was."""
        grew = False
        for f in files(self.storage, job, self.filters):
            start = self.offsets.get(f.path, 0)
            if f.size < start:       # rewritten shorter: print it again from its start
                start = 0
                self.decoders.pop(f.path, None)
                self.last = ""
            while start < f.size:
                chunk = joblogs.read(self.storage, job, f.path, offset=start)
                if not chunk.data:
                    break
                self._write(f.path, chunk.data)
                start = chunk.offset + len(chunk.data)
                grew = True
            self.offsets[f.path] = start
        self.out.flush()
        return grew

    def _write(self, path: str, data: bytes) -> None:
        if path != self.last:
            self.out.write(("\n" if self.last else "") + header(path) + "\n")
            self.last = path
        decoder = self.decoders.setdefault(path, codecs.getincrementaldecoder("utf-8")("replace"))
        self.out.write(decoder.decode(data))


def follow(storage: Storage, ledger: Ledger, job_id: str, filters: Filters, out: TextIO,
           interval_s: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> None:
    """Print what the job's matching logs gain until it has finished and nothing more arrives."""
    follower = Follower(storage, job_id, filters, out)
    while True:
        job = ledger.get_job(job_id)
        grew = follower.step(job)
        if JobState(job.state).terminal and not grew:
            return
        sleep(interval_s)
