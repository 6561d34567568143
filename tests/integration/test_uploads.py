"""``parallelrun upload`` over plain HTTP (shared/cli/uploads.py) against a real Azurite: names,
bytes and content types as a user would check them, storage faults retried without loss, a body
damaged on the way refused and sent again, clear errors, the progress and the SDK fallback."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
from pathlib import Path

import pytest
from azure.core.exceptions import ClientAuthenticationError

from shared.cli import blobwriter, uploads
from shared.errors import OperatorError, SubmitterError
from shared.local.azurite import Azurite, free_port
from shared.local.faultproxy import FaultyProxy
from shared.settings import azurite_connection_string
from shared.storage import Storage

from .test_cli import entry_point, env  # noqa: F401 - env is a fixture

FAST = blobwriter.Retry(delay_s=lambda attempt: 0.01)   # the schedule's length is not under test here


def make_folder(root: Path) -> dict[str, bytes]:
    """A folder like a user's: a few hundred small files in nested folders, a hidden file, an
    empty file, odd names and one file above the large-file threshold. Returns name -> bytes."""
    files: dict[str, bytes] = {}
    for i in range(300):
        files[f"images/{i % 7}/deeper/{i:04d}.png"] = os.urandom(200 + i)
    files[".hidden"] = b"dot file"
    files["empty.txt"] = b""
    files["with space/ü ñ é #1%.csv"] = b"a,b\n1,2\n"
    files["notes.json"] = b'{"a": 1}'
    files["big/model.onnx"] = os.urandom(uploads.LARGE_FILE_BYTES * 2 + 17)   # three blocks
    for name, body in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(body)
    return files


def stored(storage: Storage, container: str) -> dict[str, bytes]:
    client = storage.container(container)
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


def test_a_folder_arrives_with_its_names_bytes_and_content_types(
        env: None, storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "data"
    files = make_folder(folder)
    code, out, err = entry_point(monkeypatch, capsys, "upload", str(folder), "up-folder/pre/fix")
    assert code in (0, None), err
    assert f"uploaded {len(files)} file(s) to up-folder/pre/fix" in out and "files/s" in out
    assert "files/s" in err and f"{len(files)}/{len(files)}" in err      # the progress bar's end
    assert stored(storage, "up-folder") == {f"pre/fix/{name}": body for name, body in files.items()}
    props = {b.name: b.content_settings for b in storage.container("up-folder").list_blobs()}
    assert props["pre/fix/images/0/deeper/0000.png"].content_type == "image/png"
    assert props["pre/fix/with space/ü ñ é #1%.csv"].content_type == "text/csv"
    assert props["pre/fix/notes.json"].content_type == "application/json"
    assert props["pre/fix/.hidden"].content_type == "application/octet-stream"
    small = props["pre/fix/images/3/deeper/0003.png"]
    assert bytes(small.content_md5) == hashlib.md5(files["images/3/deeper/0003.png"]).digest()


def test_a_single_file_goes_under_the_prefix_by_its_name_and_is_overwritten(
        env: None, storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nested" / "rows.csv.gz"
    path.parent.mkdir()
    path.write_bytes(b"first")
    assert entry_point(monkeypatch, capsys, "upload", str(path), "up-single")[0] in (0, None)
    path.write_bytes(b"second, longer")
    code, out, _ = entry_point(monkeypatch, capsys, "upload", str(path), "up-single/a/", "--json")
    assert code in (0, None)
    report = json.loads(out)
    assert (report["files"], report["bytes"], report["via"], report["auth"]) == (1, 14, "http", "key")
    assert stored(storage, "up-single") == {"rows.csv.gz": b"first", "a/rows.csv.gz": b"second, longer"}
    assert entry_point(monkeypatch, capsys, "upload", str(path), "up-single")[0] in (0, None)
    assert stored(storage, "up-single")["rows.csv.gz"] == b"second, longer"
    blob = storage.container("up-single").get_blob_client("rows.csv.gz").get_blob_properties()
    assert blob.content_settings.content_type == "application/gzip"
    assert not blob.content_settings.content_encoding


@pytest.mark.parametrize("sign_with_key", [True, False], ids=["shared-key", "sas"])
def test_throttling_lost_answers_stalls_and_damaged_bodies_lose_and_duplicate_nothing(
        storage: Storage, azurite: Azurite, tmp_path: Path, sign_with_key: bool) -> None:
    files = make_folder(tmp_path / "data")
    container = f"up-faults-{'key' if sign_with_key else 'sas'}"
    storage.ensure_container(container)
    with FaultyProxy(azurite.blob_port, busy_rate=0.1, drop_rate=0.1, stall_rate=0.03, stall_s=3.0,
                     corrupt_rate=0.1, seed=11) as proxy:
        conn = azurite_connection_string(proxy.port, azurite.queue_port, azurite.table_port)
        faulty = Storage(dataclasses.replace(storage.settings, connection_string=conn,
                                             storage_timeout_s=2.0))   # a loaded machine is slow
        report = uploads.upload(faulty, container, uploads.files_to_upload(tmp_path / "data", ""),
                                retry=FAST, sign_with_key=sign_with_key)
    assert proxy.counts["busy"] and proxy.counts["dropped"] and proxy.counts["stalled"]
    assert proxy.counts["corrupted"]                    # refused by their Content-MD5, sent again
    assert report.retries >= proxy.counts["busy"] + proxy.counts["corrupted"]
    assert (report.files, report.bytes) == (len(files), sum(map(len, files.values())))
    assert report.auth == ("key" if sign_with_key else "sas")
    assert stored(storage, container) == files          # every name once, every byte right


def test_a_large_file_whose_commit_was_answered_but_lost_is_stored_once(
        storage: Storage, azurite: Azurite, tmp_path: Path) -> None:
    """Put Block List applied, its answer lost: its retry commits the same blocks again; the blob
    holds the file once, in two blocks."""
    body = os.urandom(uploads.BLOCK_BYTES + 5)
    (tmp_path / "big.bin").write_bytes(body)
    storage.ensure_container("up-commit")
    with FaultyProxy(azurite.blob_port) as proxy:
        proxy.lose_answers(lambda method, path: "comp=blocklist" in path)
        conn = azurite_connection_string(proxy.port, azurite.queue_port, azurite.table_port)
        faulty = Storage(dataclasses.replace(storage.settings, connection_string=conn))
        report = uploads.upload(faulty, "up-commit", uploads.files_to_upload(tmp_path / "big.bin", ""),
                                retry=FAST)
    assert proxy.counts["answer lost"] == 1 and report.retries >= 1
    assert stored(storage, "up-commit") == {"big.bin": body}
    blocks = storage.container("up-commit").get_blob_client("big.bin").get_block_list("all")
    assert [b.size for b in blocks[0]] == [uploads.BLOCK_BYTES, 5] and not blocks[1]


def test_a_damaged_block_list_is_staged_and_committed_again(storage: Storage, azurite: Azurite,
                                                           tmp_path: Path) -> None:
    """Azurite does not check a block list's MD5: one damaged in a block id names a block it does
    not hold (InvalidBlockList); the blocks are staged again and the file arrives whole."""
    body = os.urandom(uploads.BLOCK_BYTES + 5)
    (tmp_path / "big.bin").write_bytes(body)
    storage.ensure_container("up-blocklist")
    with FaultyProxy(azurite.blob_port) as proxy:
        proxy.damage_bodies(lambda method, path: "comp=blocklist" in path)
        conn = azurite_connection_string(proxy.port, azurite.queue_port, azurite.table_port)
        faulty = Storage(dataclasses.replace(storage.settings, connection_string=conn))
        uploads.upload(faulty, "up-blocklist", uploads.files_to_upload(tmp_path / "big.bin", ""),
                       retry=FAST)
    assert proxy.counts["corrupted"] == 1
    assert sum("comp=block&" in path for _, path in proxy.seen) == 4     # two blocks, twice
    assert stored(storage, "up-blocklist") == {"big.bin": body}


def test_a_body_damaged_on_the_way_is_refused_by_storage(storage: Storage, azurite: Azurite,
                                                         tmp_path: Path) -> None:
    """What the Content-MD5 buys: with every body damaged, storage stores nothing and the error
    says why (without the header the damaged bytes would have been stored)."""
    (tmp_path / "a.bin").write_bytes(b"x" * 1000)
    storage.ensure_container("up-damaged")
    with FaultyProxy(azurite.blob_port, corrupt_rate=1.0) as proxy:
        conn = azurite_connection_string(proxy.port, azurite.queue_port, azurite.table_port)
        faulty = Storage(dataclasses.replace(storage.settings, connection_string=conn))
        with pytest.raises(OperatorError, match=r"a\.bin to up-damaged/a\.bin: HTTP 400"):
            uploads.upload(faulty, "up-damaged", uploads.files_to_upload(tmp_path / "a.bin", ""),
                           retry=blobwriter.Retry(attempts=2, delay_s=lambda attempt: 0.01))
    assert proxy.counts["corrupted"] == 3
    assert stored(storage, "up-damaged") == {}


def test_unreachable_storage_is_an_error_naming_the_endpoint_and_the_file(
        storage: Storage, azurite: Azurite, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.txt").write_text(str(i))
    port = free_port()     # nothing listens there
    conn = azurite_connection_string(port, azurite.queue_port, azurite.table_port)
    gone = Storage(dataclasses.replace(storage.settings, connection_string=conn))
    with pytest.raises(OperatorError) as raised:
        uploads.upload(gone, "up-gone", uploads.files_to_upload(folder, "p"),
                       retry=blobwriter.Retry(attempts=2, delay_s=lambda attempt: 0.01))
    message = str(raised.value)
    assert f"no answer from storage at http://127.0.0.1:{port} after 3 tries" in message
    assert f"{folder}/" in message and "to up-gone/p/" in message
    assert "0 of 5 files uploaded before it stopped" in message


def test_a_file_that_vanished_is_an_error_naming_it(storage: Storage, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text(str(i))
    files = uploads.files_to_upload(folder, "")
    (folder / "1.txt").unlink()
    storage.ensure_container("up-vanished")
    with pytest.raises(SubmitterError, match=f"cannot read {folder}/1.txt: No such file"):
        uploads.upload(storage, "up-vanished", files, in_flight=1)


def test_without_an_upload_sas_the_sdk_uploads_and_says_so(
        storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An identity that may not ask for a user delegation key (no account key to sign with, and
    no SAS): the SDK path, the same result."""
    files = {"a.txt": b"A", "sub/b.png": b"B" * 10, "empty.json": b""}
    for name, body in files.items():
        (tmp_path / "data" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / name).write_bytes(body)

    def refused(container: str) -> str:
        raise ClientAuthenticationError("This request is not authorized to perform this operation")
    monkeypatch.setattr(storage, "upload_sas", refused)
    notes: list[str] = []
    storage.ensure_container("up-sdk")
    report = uploads.upload(storage, "up-sdk", uploads.files_to_upload(tmp_path / "data", "x"),
                            notify=notes.append, sign_with_key=False)
    assert report.via == "sdk" and report.files == 3
    assert notes and "not authorized" in notes[0] and "through the storage SDK" in notes[0]
    assert stored(storage, "up-sdk") == {f"x/{name}": body for name, body in files.items()}
    types = {b.name: b.content_settings.content_type for b in storage.container("up-sdk").list_blobs()}
    assert types["x/sub/b.png"] == "image/png"


def test_a_sas_in_the_connection_string_is_used_for_uploads(storage: Storage, tmp_path: Path) -> None:
    storage.ensure_container("up-sas")
    token = storage.upload_sas("up-sas")
    conn = f"BlobEndpoint={storage.blob_service.url.rstrip('/')};SharedAccessSignature={token}"
    sas_storage = Storage(dataclasses.replace(storage.settings, connection_string=conn))
    (tmp_path / "f.txt").write_bytes(b"via sas")
    report = uploads.upload(sas_storage, "up-sas", uploads.files_to_upload(tmp_path / "f.txt", ""))
    assert report.via == "http"
    assert stored(storage, "up-sas") == {"f.txt": b"via sas"}
    md5 = storage.container("up-sas").get_blob_client("f.txt").get_blob_properties().content_settings
    assert base64.b64encode(bytes(md5.content_md5)).decode() == blobwriter.content_md5(b"via sas")
