"""Where a tabular file's bytes come from: anything that can read a byte range (:class:`RangeSource`).

:class:`LocalFileSource` serves tests and benches; :class:`BlobSource` reads a blob with ranged
downloads through a read-ahead buffer, so a sequential scan in small steps costs one request per
few MiB, while a one-off read (a header line, a piece) downloads about what it asks for.
:class:`PrefetchedSource` holds byte ranges fetched ahead in one request each (a Parquet piece's
column chunks) and serves the reads inside them from memory.
:class:`HeldSource` serves the byte ranges a worker read ahead into a local file (at their own
offsets) and sends any other read to the blob.
:class:`SourceFile` wraps any source as a read-only binary file for pyarrow's Parquet reader.
"""

from __future__ import annotations

import bisect
import io
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

READAHEAD_BYTES = 4 * 1024 * 1024   # the most a sequential miss fetches beyond what was asked
FIRST_READ_BYTES = 64 * 1024        # what a non-sequential miss fetches at least

Fetch = Callable[[int, int], tuple[bytes, int]]
"""``fetch(offset, length) -> (data, size)``: bytes ``[offset, offset + length)`` of a blob (cut
short at its end, empty past it; ``length >= 1``) and the blob's size, in one request
(:meth:`shared.scoring.blobreader.BlobReader.read_range`)."""


@runtime_checkable
class RangeSource(Protocol):
    """A file of known size whose byte ranges can be read."""

    @property
    def size(self) -> int: ...

    @property
    def name(self) -> str: ...

    def read(self, offset: int, length: int) -> bytes:
        """Bytes ``[offset, offset + length)``, cut short at the end of the file."""
        ...


class LocalFileSource:
    """A local file. Each read opens the file, so the object holds no handle and is thread-safe."""

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self.path = os.fspath(path)
        self.name = name if name is not None else self.path
        self.size = os.path.getsize(self.path)

    def read(self, offset: int, length: int) -> bytes:
        if length <= 0 or offset >= self.size:
            return b""
        with open(self.path, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)

    def __repr__(self) -> str:
        return f"LocalFileSource({self.path!r}, size={self.size})"


class BlobSource:
    """A blob read with ranged downloads (``fetch``, one request each) through a read-ahead buffer.

    A read that continues where the buffer ends (a sequential scan) fetches ahead, doubling from
    :data:`FIRST_READ_BYTES` up to ``readahead`` bytes; any other miss fetches at least
    :data:`FIRST_READ_BYTES`. One buffer is kept (at most ``max(length, readahead)`` bytes).

    The size is not asked for separately: every fetch's answer carries it, so reading a piece costs
    only the reads of its bytes. Only ``size`` before any read (the Parquet reader's first question)
    costs a request, which fetches the file's first :data:`FIRST_READ_BYTES` into the buffer so that
    a small file is then read whole from memory.
    """

    def __init__(self, fetch: Fetch, name: str, readahead: int = READAHEAD_BYTES,
                 size: int | None = None) -> None:
        self._fetch = fetch
        self.name = name
        self.readahead = max(1, readahead)
        self._size = size
        self._lock = threading.Lock()
        self._buf = b""
        self._buf_start = 0
        self._window = FIRST_READ_BYTES
        self.requests = 0     # ranged downloads made (for tests and benches)

    @property
    def size(self) -> int:
        if self._size is None:
            self.read(0, 1)
        assert self._size is not None
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0:
            raise ValueError(f"{self.name}: negative offset {offset}")
        end = offset + max(0, length)
        if self._size is not None:
            end = min(end, self._size)
        if offset >= end:
            return b""
        with self._lock:
            lo, hi = self._buf_start, self._buf_start + len(self._buf)
            if lo <= offset and end <= hi:
                return self._buf[offset - lo:end - lo]
            sequential = bool(self._buf) and lo <= offset <= hi
            self._window = min(self._window * 2, self.readahead) if sequential else FIRST_READ_BYTES
            keep = self._buf[offset - lo:] if sequential else b""
            fetch_from = offset + len(keep)
            fetch_to = max(end, offset + self._window)
            if self._size is not None:
                fetch_to = min(fetch_to, self._size)
            self._buf = keep + self._download(fetch_from, fetch_to - fetch_from)
            self._buf_start = offset
            return self._buf[:end - offset]

    def _download(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        self.requests += 1
        data, self._size = self._fetch(offset, length)
        return data

    def __repr__(self) -> str:
        return f"BlobSource({self.name!r})"


class PrefetchedSource:
    """A source with some byte ranges held in memory, each fetched in one read of the source.

    Parquet reads a piece's column chunks one at a time, in steps, and through
    :class:`BlobSource`'s single buffer each chunk would be a request of its own. Fetching the span
    of all of them first (:meth:`prefetch`) makes the piece one request; a read that is not inside
    a prefetched range still goes to the source, so a wrong guess costs requests, never data.
    Memory is what was prefetched, until the object is dropped.
    """

    def __init__(self, source: RangeSource) -> None:
        self._source = source
        self._starts: list[int] = []     # sorted, the ranges do not overlap
        self._data: list[bytes] = []

    @property
    def name(self) -> str:
        return self._source.name

    @property
    def size(self) -> int:
        return self._source.size

    def prefetch(self, offset: int, length: int) -> None:
        """Hold bytes ``[offset, offset + length)`` (cut at the end of the file) in memory from now
        on. The range must not overlap one already held."""
        end = min(offset + length, self.size)
        if offset < 0 or offset >= end:
            return
        i = bisect.bisect_right(self._starts, offset)
        if (i and offset < self._starts[i - 1] + len(self._data[i - 1])) \
                or (i < len(self._starts) and end > self._starts[i]):
            raise ValueError(f"{self.name}: bytes {offset}-{end} overlap a range already held")
        self._starts.insert(i, offset)
        self._data.insert(i, self._source.read(offset, end - offset))

    def read(self, offset: int, length: int) -> bytes:
        i = bisect.bisect_right(self._starts, offset) - 1
        if i >= 0:
            start, data = self._starts[i], self._data[i]
            if offset + length <= start + len(data) or start + len(data) >= self.size:
                return data[offset - start:offset - start + max(0, length)]
        return self._source.read(offset, length)

    def __repr__(self) -> str:
        return f"PrefetchedSource({self._source!r}, {len(self._starts)} ranges)"


class RangesInMemory:
    """A file of ``size`` bytes of which only ``held`` (offset -> bytes) is known: enough to open a
    Parquet file's footer without its data. A read outside what is held raises ``ValueError``."""

    def __init__(self, name: str, size: int, held: dict[int, bytes]) -> None:
        self.name = name
        self.size = size
        self._held = sorted(held.items())

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + max(0, length), self.size)
        if offset >= end:
            return b""
        for start, data in self._held:
            if start <= offset and end <= start + len(data):
                return data[offset - start:end - start]
        raise ValueError(f"{self.name}: bytes {offset}-{end} are not held")


class HeldSource:
    """A blob's byte ranges read ahead into a local file (each at its own offset in a sparse file of
    the blob's size), served from there; a read outside them goes to ``fallback`` (the blob), so a
    range missed costs a request, never data. ``fallback_reads`` counts those (tests, benches).

    The worker reads a table mini-batch's ranges while the mini-batch waits for a scoring process
    (:func:`shared.scoring.tables.read_ahead`), so the process finds the bytes on the node when it
    takes it: reading the next piece overlaps with scoring the current one."""

    def __init__(self, path: str | os.PathLike[str], ranges: list[tuple[int, int]], size: int,
                 fallback: RangeSource) -> None:
        self.path = os.fspath(path)
        self.ranges = sorted((int(o), int(n)) for o, n in ranges)
        self._size = int(size)
        self._fallback = fallback
        self.fallback_reads = 0

    @property
    def name(self) -> str:
        return self._fallback.name

    @property
    def size(self) -> int:
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        end = min(offset + max(0, length), self._size)
        if offset >= end:
            return b""
        i = bisect.bisect_right(self.ranges, (offset, float("inf"))) - 1
        if i >= 0 and end <= self.ranges[i][0] + self.ranges[i][1]:
            with open(self.path, "rb") as fh:
                data = os.pread(fh.fileno(), end - offset, offset)
            if len(data) == end - offset:
                return data
        self.fallback_reads += 1
        return self._fallback.read(offset, length)

    def __repr__(self) -> str:
        return f"HeldSource({self.name!r}, {len(self.ranges)} ranges in {self.path!r})"


class SourceFile(io.RawIOBase):
    """A :class:`RangeSource` as a seekable, read-only binary file (for ``pyarrow.parquet``)."""

    def __init__(self, source: RangeSource) -> None:
        super().__init__()
        self._source = source
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._source.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._source.size - self._pos
        data = self._source.read(self._pos, size)
        self._pos += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def size(self) -> int:
        return self._source.size
