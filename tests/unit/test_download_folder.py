"""Where a mini-batch's blobs are written: beneath its download folder, whatever a script planted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.errors import SubmitterError
from shared.service.planning.fileinputs import DownloadFolder


def write(folder: DownloadFolder, name: str, data: bytes = b"x") -> Path:
    path, fh = folder.open("images", name)
    with fh:
        fh.write(data)
    return path


def test_files_go_beneath_the_folder_with_their_blob_path(tmp_path: Path) -> None:
    folder = DownloadFolder(tmp_path / "batch")
    flat = write(folder, "a.png", b"1")
    nested = write(folder, "2024/01/b.png", b"2")
    assert flat == tmp_path / "batch" / "images" / "a.png" and flat.read_bytes() == b"1"
    assert nested == tmp_path / "batch" / "images" / "2024" / "01" / "b.png" and nested.read_bytes() == b"2"
    assert write(folder, "a.png", b"again").read_bytes() == b"again"   # a retried GET starts over


@pytest.mark.parametrize("name", ["../x.png", "a/../../x.png", "/etc/x", ""])
def test_a_name_that_leaves_the_folder_is_refused_by_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(SubmitterError, match="cannot be used as a file path"):
        DownloadFolder(tmp_path / "batch").open("images", name)


def test_a_planted_folder_link_is_refused_and_nothing_is_made_through_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "batch" / "images").mkdir(parents=True)
    (tmp_path / "batch" / "images" / "sub").symlink_to(outside)
    folder = DownloadFolder(tmp_path / "batch")
    with pytest.raises(SubmitterError, match="escapes the download folder"):
        folder.open("images", "sub/deeper/x.png")
    assert list(outside.iterdir()) == []       # not even the folder "deeper"


def test_a_link_planted_as_the_file_is_refused_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep")
    (tmp_path / "batch" / "images").mkdir(parents=True)
    folder = DownloadFolder(tmp_path / "batch")
    write(folder, "first.png")                          # the folder is checked once
    os.symlink(victim, tmp_path / "batch" / "images" / "x.png")   # then a link appears
    with pytest.raises(SubmitterError, match="escapes the download folder"):
        folder.open("images", "x.png")
    assert victim.read_bytes() == b"keep"
