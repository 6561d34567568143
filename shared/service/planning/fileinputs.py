"""File inputs (PRS's FileDataset): listing blobs page by page, and downloading a mini-batch.

An input is a container plus a prefix and an optional glob, or an explicit list of blob names.
Listing is incremental (one page per planner step), so a million-blob input never has to fit in
memory; the order is the listing order (lexicographic), or the list's own order.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from azure.core.exceptions import ResourceNotFoundError

from shared.errors import SubmitterError
from shared.scoring.blobreader import BlobNotFound
from shared.spec import InputSpec
from shared.storage import Storage

log = logging.getLogger("parallelrun.datasets")

PAGE_SIZE = 5000


Props = tuple[str, int]   # a listed blob's ETag and size: what makes its content this content


def list_page(storage: Storage, item: InputSpec, token: str | None, page_size: int = PAGE_SIZE
              ) -> tuple[list[str], str | None, list[Props] | None]:
    """One page of the input's blob names, the token of the next page (None at the end), and
    the blobs' ETags and sizes (None for an explicit list of names, which is not listed)."""
    if item.files is not None:
        start = int(token or 0)
        names = list(item.files[start:start + page_size])
        end = start + len(names)
        return names, (str(end) if end < len(item.files) else None), None
    container = storage.container(item.container)
    try:
        # Names only: the same List Blobs call, but the SDK skips building a BlobProperties per
        # blob (~0.2 ms of client CPU each, 5x the rest of the page's cost). Continuation tokens
        # are the service's NextMarker either way, so cursors written by list_blobs still work.
        pages: Any = container.list_blob_names(name_starts_with=item.prefix or None,
                                          results_per_page=page_size).by_page(continuation_token=token)
        page = next(pages)
        listed = list(page)
        props = _page_props(pages, len(listed))
        keep = [i for i, name in enumerate(listed) if item.matches(name)]
    except ResourceNotFoundError:
        raise SubmitterError(f"input {item.name}: container {item.container!r} does not exist") from None
    except StopIteration:
        return [], None, []
    return [listed[i] for i in keep], pages.continuation_token, [props[i] for i in keep]


PROBE_PAGE = 1000   # names a glob input's submit-time probe reads at most: one List Blobs call
_GLOB_START = re.compile(r"[*?\[]")


def probe(storage: Storage, item: InputSpec) -> bool | None:
    """Whether an input lists a blob, from one bounded List Blobs call (at submission): True
    (one is listed), False (none is), None (not known: the first page held none of a glob's
    matches, or the input is an explicit list, whose files are not listed). Raises
    ResourceNotFoundError for a container that does not exist.

    A plain prefix needs one name; a glob lists from its literal start (``img_*.png`` under
    ``a/``: names from ``a/img_``), at most :data:`PROBE_PAGE` of them."""
    container = storage.container(item.container)
    if item.files is not None:
        container.get_container_properties()
        return None
    start = item.prefix + (_GLOB_START.split(item.glob, 1)[0] if item.glob else "")
    pages: Any = container.list_blob_names(name_starts_with=start or None,
                                           results_per_page=PROBE_PAGE if item.glob else 1).by_page()
    try:
        listed = list(next(pages))
    except StopIteration:
        return False
    if any(item.matches(name) for name in listed):
        return True
    return None if pages.continuation_token else False


def _page_props(pages: Any, count: int) -> list[Props]:
    """The ETag and size of each blob of the page just read, from the service's own answer (the
    XML the SDK parsed for the names: no second request, no per-blob objects)."""
    raw = getattr(pages, "_response", None)
    blobs = raw.find("Blobs") if raw is not None and hasattr(raw, "find") else None
    found = [] if blobs is None else blobs.findall("Blob")
    if len(found) != count:   # the SDK changed how it keeps the page: fail loudly, never guess
        raise RuntimeError(f"listing: {len(found)} blob properties for {count} names")
    out = []
    for blob in found:
        props = blob.find("Properties")
        etag = props.findtext("Etag", "") if props is not None else ""
        size = props.findtext("Content-Length", "0") if props is not None else "0"
        out.append((etag.strip('"'), int(size or 0)))
    return out


def local_path(root: Path, input_name: str, blob_name: str) -> Path:
    """Where a blob is downloaded for ``run()``, checked lexically: never outside ``root`` by its
    name (:class:`DownloadFolder` also checks the folders on disk)."""
    parts = PurePosixPath(blob_name).parts
    if not parts or any(p in ("..", "") for p in parts) or blob_name.startswith("/"):
        raise SubmitterError(f"blob name {blob_name!r} cannot be used as a file path")
    return root.joinpath(input_name, *parts)


class DownloadFolder:
    """A mini-batch's download folder: files are created only beneath it, whatever is on disk.

    A scoring process may run as the same user (where Landlock is missing) and plant a symbolic
    link under the folder to make the worker write elsewhere. So each folder a file goes into is
    created and resolved once per mini-batch (``Path.resolve`` walks the path: ~10 ``lstat`` a
    time, per image this was a third of the download's CPU at large sizes), and the file itself is
    opened with ``O_NOFOLLOW``, so a link planted as the file is refused, not followed.
    """

    FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_root = root.resolve()
        self._checked: set[Path] = set()     # folders made and found beneath the root

    def open(self, input_name: str, blob_name: str) -> tuple[Path, BinaryIO]:
        """The blob's local path and a new file there, open for writing."""
        path = local_path(self.root, input_name, blob_name)
        folder = path.parent
        if folder not in self._checked:     # a race of two threads only checks twice
            if not folder.resolve().is_relative_to(self._real_root):   # before making any of it
                raise SubmitterError(f"blob name {blob_name!r} escapes the download folder")
            folder.mkdir(parents=True, exist_ok=True)
            self._checked.add(folder)
        try:
            fd = os.open(path, self.FLAGS, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:    # a link where the file goes
                raise SubmitterError(f"blob name {blob_name!r} escapes the download folder") from exc
            raise
        return path, os.fdopen(fd, "wb")


@dataclass(frozen=True)
class Downloaded:
    paths: list[str]                        # in mini-batch order, present files only
    missing: list[tuple[str, str]]          # (blob name, reason) of items that could not be fetched
    names: dict[str, str] = field(default_factory=dict)   # local path -> blob name


def download_batch(storage: Storage, inputs: Sequence[InputSpec], items: list[list[Any]],
                   root: Path, pool: Executor) -> Downloaded:
    """Download a mini-batch's blobs concurrently on ``pool`` (plain HTTP GETs, see
    :mod:`shared.scoring.blobreader`); a missing blob is reported, not raised."""
    reader = storage.blob_reader
    folder = DownloadFolder(root)

    def fetch(item: list[Any]) -> tuple[str | None, tuple[str, str] | None, str]:
        input_index, blob_name = item
        source = inputs[input_index]
        try:
            path, fh = folder.open(source.name, blob_name)
        except SubmitterError as exc:
            return None, (blob_name, str(exc)), blob_name
        try:
            with fh:
                reader.read_into(source.container, blob_name, fh)
        except BlobNotFound:
            path.unlink(missing_ok=True)
            return None, (blob_name, f"blob {source.container}/{blob_name} does not exist"), blob_name
        return str(path), None, blob_name

    results = list(pool.map(fetch, items))
    paths = [p for p, _, _ in results if p is not None]
    missing = [m for _, m, _ in results if m is not None]
    return Downloaded(paths, missing, {p: b for p, _, b in results if p is not None})

