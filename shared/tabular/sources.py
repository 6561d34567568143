"""Where a tabular file's bytes come from: anything that can read a byte range (:class:`RangeSource`).

:class:`LocalFileSource` serves tests and benches; :class:`BlobSource` reads a blob with ranged
downloads through a read-ahead buffer, so a sequential scan in small steps costs one request per
few MiB, while a one-off read (a header line, a piece) downloads about what it asks for.
:class:`SourceFile` wraps any source as a read-only binary file for pyarrow's Parquet reader.
"""

from __future__ import annotations

import io
import os
import threading
from typing import Any, Protocol, runtime_checkable

READAHEAD_BYTES = 4 * 1024 * 1024   # the most a sequential miss fetches beyond what was asked
FIRST_READ_BYTES = 64 * 1024        # what a non-sequential miss fetches at least


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
    """A blob read through azure-storage-blob's ``BlobClient`` with ranged downloads.

    A read that continues where the buffer ends (a sequential scan) fetches ahead, doubling from
    :data:`FIRST_READ_BYTES` up to ``readahead`` bytes; any other miss fetches at least
    :data:`FIRST_READ_BYTES`. One buffer is kept (at most ``max(length, readahead)`` bytes).
    """

    def __init__(self, blob_client: Any, name: str | None = None,
                 readahead: int = READAHEAD_BYTES, size: int | None = None) -> None:
        self._client = blob_client
        self.name = name if name is not None else str(getattr(blob_client, "blob_name", "blob"))
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
            self._size = int(self._client.get_blob_properties().size)
        return self._size

    def read(self, offset: int, length: int) -> bytes:
        end = min(self.size, offset + max(0, length))
        if offset < 0:
            raise ValueError(f"{self.name}: negative offset {offset}")
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
            fetch_to = min(self.size, max(end, offset + self._window))
            self._buf = keep + self._download(fetch_from, fetch_to - fetch_from)
            self._buf_start = offset
            return self._buf[:end - offset]

    def _download(self, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        self.requests += 1
        data: bytes = self._client.download_blob(offset=offset, length=length).readall()
        return data

    def __repr__(self) -> str:
        return f"BlobSource({self.name!r})"


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
