"""The pure parts of ``parallelrun upload`` (shared/cli/uploads.py, blobwriter.py): blob names,
content types, block ids, Shared Key signatures, what is retried, the backoff, stopping at the
first failure, and the progress text."""

from __future__ import annotations

import base64
import threading
import urllib.parse
from pathlib import Path

import pytest
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
from rich.progress import Progress

from shared import backoff
from shared.cli import blobwriter, console, uploads
from shared.errors import OperatorError


def test_a_folder_gives_every_file_under_it_hidden_ones_too_in_name_order(tmp_path: Path) -> None:
    for name in ("b.txt", "a/.hidden", "a/z/deep.bin", ".top"):
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_bytes(b"12345")
    (tmp_path / "data" / "empty-folder").mkdir()
    files = uploads.files_to_upload(tmp_path / "data", "/pre/fix/")
    assert [f.name for f in files] == ["pre/fix/.top", "pre/fix/a/.hidden", "pre/fix/a/z/deep.bin",
                                       "pre/fix/b.txt"]
    assert {f.size for f in files} == {5}
    assert files[2].path == tmp_path / "data" / "a" / "z" / "deep.bin"


def test_a_single_file_is_named_by_its_own_name(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f g.csv").write_bytes(b"")
    assert [(f.name, f.size) for f in uploads.files_to_upload(tmp_path / "x" / "f g.csv", "")] == \
        [("f g.csv", 0)]
    assert uploads.files_to_upload(tmp_path / "x" / "f g.csv", "in")[0].name == "in/f g.csv"


@pytest.mark.parametrize(("name", "expected"), [
    ("a/b.png", "image/png"), ("x.JPG", "image/jpeg"), ("rows.csv", "text/csv"),
    ("t.json", "application/json"), ("notes.txt", "text/plain"), ("model.onnx", "application/octet-stream"),
    (".hidden", "application/octet-stream"), ("noext", "application/octet-stream"),
    ("rows.csv.gz", "application/gzip"), ("a.tar.xz", "application/x-xz")])
def test_the_content_type_comes_from_the_name(name: str, expected: str) -> None:
    assert uploads.content_type(name) == expected


def test_content_md5_is_the_base64_digest() -> None:
    assert blobwriter.content_md5(b"") == "1B2M2Y8AsgTpgAmY7PhCfg=="


def test_block_ids_have_one_length_and_the_list_commits_them_in_order() -> None:
    ids = [blobwriter.block_id(i) for i in (0, 1, 999, 12345678)]
    assert len({len(i) for i in ids}) == 1 and len(set(ids)) == 4
    assert base64.b64decode(ids[2]) == b"00000999"
    xml = blobwriter.block_list_xml(3).decode()
    assert xml.index(blobwriter.block_id(0)) < xml.index(blobwriter.block_id(1)) < xml.index(blobwriter.block_id(2))
    assert xml.count("<Latest>") == 3 and xml.endswith("</BlockList>")


@pytest.mark.parametrize(("name", "params", "headers", "body"), [
    ("in/ü ñ/é #1%.png", (), {"x-ms-blob-type": "BlockBlob", "Content-Type": "image/png"}, b"png"),
    ("empty.txt", (), {"x-ms-blob-type": "BlockBlob", "Content-Type": "text/plain"}, b""),
    ("big.bin", (("comp", "block"), ("blockid", blobwriter.block_id(7))), {}, b"x" * 100),
    ("big.bin", (("comp", "blocklist"),), {"x-ms-blob-content-type": "application/octet-stream"},
     blobwriter.block_list_xml(2))])
def test_shared_key_signatures_are_the_sdks(name: str, params: tuple[tuple[str, str], ...],
                                            headers: dict[str, str], body: bytes) -> None:
    """The signature of every kind of request the uploads send, against the storage SDK's own
    Shared Key policy on the same request."""
    account, key = "devstoreaccount1", base64.b64encode(b"k" * 64).decode()
    path = f"/{account}/box/{urllib.parse.quote(name, safe='/~')}"
    sent = {"x-ms-version": "2025-11-05", "Content-MD5": blobwriter.content_md5(body), **headers}
    target = blobwriter.KeyAuth(account, key).target(path, params, sent, len(body))
    ours = sent.pop("Authorization")
    request = PipelineRequest(HttpRequest("PUT", f"http://127.0.0.1:10000{target}",
                                          headers={**sent, "Content-Length": str(len(body))}),
                              PipelineContext(None))
    SharedKeyCredentialPolicy(account, key).on_request(request)
    assert ours == request.http_request.headers["Authorization"]


@pytest.mark.parametrize(("status", "code", "body", "again"), [
    (0, "", b"Connection refused", True), (503, "ServerBusy", b"", True), (500, "", b"", True),
    (408, "", b"", True), (429, "", b"", True),
    (400, "Md5Mismatch", b"", True), (400, "InvalidOperation", b"Provided contentMD5 doesn't match.", True),
    (400, "", b"", True), (400, "InvalidOperation", b"other", False),
    (400, "InvalidHeaderValue", b"", False), (403, "AuthorizationFailure", b"", False),
    (404, "ContainerNotFound", b"", False), (409, "LeaseIdMissing", b"", False)])
def test_what_is_tried_again(status: int, code: str, body: bytes, again: bool) -> None:
    assert blobwriter.retryable(status, code, body) is again


def test_the_backoff_is_the_sdk_clients_schedule() -> None:
    assert blobwriter.Retry().attempts == backoff.BACKOFF["retry_total"]
    for attempt, centre in ((0, 0.5), (1, 2.5), (3, 8.5)):
        waits = [backoff.delay_s(attempt) for _ in range(200)]
        assert all(max(0.0, centre - 1) <= w <= centre + 1 for w in waits), attempt


def _files(n: int) -> list[uploads.LocalFile]:
    return [uploads.LocalFile(Path(f"/data/{i}.bin"), f"{i}.bin", 10) for i in range(n)]


def test_the_first_failure_stops_the_run_and_says_how_far_it_got() -> None:
    tried: list[str] = []

    def one(f: uploads.LocalFile, tally: uploads.Tally) -> None:
        tried.append(f.name)
        if f.name == "2.bin":
            raise OperatorError(f"cannot upload {f.path}")
        tally.add(1, f.size)

    with pytest.raises(OperatorError) as raised:
        uploads._run(_files(10), one, 1, None, "http")
    assert tried == ["0.bin", "1.bin", "2.bin"]
    assert str(raised.value) == "cannot upload /data/2.bin (2 of 10 files uploaded before it stopped)"


def test_every_file_is_taken_once_by_many_workers_and_progress_ends_at_the_total() -> None:
    seen: list[str] = []
    lock = threading.Lock()
    ticks: list[int] = []

    def one(f: uploads.LocalFile, tally: uploads.Tally) -> None:
        with lock:
            seen.append(f.name)
        tally.add(1, f.size)

    report = uploads._run(_files(500), one, 8, lambda tally: ticks.append(tally.files), "http")
    assert sorted(seen) == sorted(f.name for f in _files(500))
    assert (report.files, report.bytes, report.via) == (500, 5000, "http")
    assert ticks[-1] == 500


def test_sizes_and_the_summary_line_read_like_the_cli() -> None:
    assert console._bytes(999) == "999 bytes"
    assert console._bytes(5 * 1024 * 1024 + 1) == "5.0 MB"
    report = uploads.UploadReport(files=5000, bytes=5_000_000, seconds=4.0, retries=3, via="http")
    assert console.upload_line(report, "c/p") == ("uploaded 5,000 file(s) to c/p: 4.8 MB in 4.0 s "
                                                 "(1,250 files/s, 1.2 MB/s, 3 request(s) retried)")
    assert report.summary()["files_per_s"] == 1250.0


def test_the_rate_column_shows_files_and_bytes_per_second() -> None:
    now = [100.0]
    progress = Progress(get_time=lambda: now[0], auto_refresh=False, disable=True)
    task_id = progress.add_task("upload", total=10, bytes=0)
    column = console._UploadRate()
    assert column.render(progress.tasks[0]).plain == ""          # not a rate before any time passed
    now[0] += 2.0
    progress.update(task_id, completed=10, bytes=20 * 1024)
    assert column.render(progress.tasks[0]).plain == "5 files/s · 10.0 KB/s"
