"""The scoring channel's frames: data only, checked field by field, bounded in size and time."""

from __future__ import annotations

import os
import pickle
import struct
import time

import pytest

from shared.scoring import protocol
from shared.scoring.protocol import ChannelClosed, ChannelTimeout, Limits, ProtocolError, Reader


def pipe_reader(limits: Limits = Limits()) -> tuple[Reader, int]:
    r, w = os.pipe()
    return Reader(r, limits), w


@pytest.mark.parametrize("message", [
    protocol.Assign(protocol.ScoringConfig("j", "/s/score.py", "/s", "/w", arguments=("--a", "1"),
                                           model_pins={"m": 2}, sandbox_writable=("/x",))),
    protocol.RunRequest(3, ["/x/a.png"], {"minibatch_index": 0}),
    protocol.RunRequest(4, {"items": [[0, "a.csv", {"start": 0}]]}, {"minibatch_index": 1}),
    protocol.Shutdown(), protocol.Warm(True), protocol.Ready(123),
    protocol.InitFailed("ValueError: x", "Traceback ..."), protocol.Begin(3), protocol.Loaded(3, 10),
    protocol.Result(3, 2, 0.25, "a,b\n", "é\n".encode() * 2), protocol.RunFailed(3, "E", "T", 1.0),
    protocol.Bye(),
])
def test_every_message_survives_a_round_trip(message: protocol.Message) -> None:
    reader, w = pipe_reader()
    protocol.write(w, message)
    assert reader.read(time.monotonic() + 5) == message


def test_rows_travel_as_the_body_not_inside_the_json() -> None:
    frame = protocol.encode(protocol.Result(1, 1, 0.0, "", b"\x00raw\n"))
    _, control_len, body_len = protocol.HEADER.unpack(frame[:protocol.HEADER.size])
    assert body_len == 5 and frame.endswith(b"\x00raw\n")
    assert b"raw" not in frame[protocol.HEADER.size:protocol.HEADER.size + control_len]


def frame(control: bytes, body: bytes = b"") -> bytes:
    return protocol.HEADER.pack(protocol.MAGIC, len(control), len(body)) + control + body


@pytest.mark.parametrize("data,error", [
    (struct.pack("!i", 20) + pickle.dumps(("ok", "rows")), "bad magic"),
    (frame(b"not json"), "not a JSON object"),
    (frame(b'["Result"]'), "no message type"),
    (frame(b'{"t": "Popen"}'), "unknown message type"),
    (frame(b'{"t": "Result", "seq": 1, "rows": "2", "seconds": 0, "header": ""}'), "wrong type"),
    (frame(b'{"t": "Result", "seq": 1, "rows": true, "seconds": 0, "header": ""}'), "wrong type"),
    (frame(b'{"t": "Begin", "seq": 1, "extra": 1}'), "fields"),
    (frame(b'{"t": "Begin", "seq": 1}', b"body"), "carries no body"),
    (frame(b'{"t": "Begin"}'), "fields"),
    (frame(b'{"t": "Loaded", "seq": 1, "rows": 2.5}'), "wrong type"),
    (frame(b'{"t": "Warm", "ok": 1}'), "wrong type"),
    (frame(b'{"t": "RunRequest", "seq": 1, "payload": "a.png", "context": {}}'), "wrong type"),
    (frame(b'{"t": "Assign", "config": []}'), "wrong type"),
    (frame(b'{"t": "Assign", "config": {"job_id": "j", "shell": "rm -rf /"}}'), "not a scoring configuration"),
    (protocol.HEADER.pack(protocol.MAGIC, 10, 1 << 30), "exceeds the limit"),
    (protocol.HEADER.pack(protocol.MAGIC, 1 << 30, 0), "exceeds the limit"),
])
def test_anything_but_a_valid_message_is_refused(data: bytes, error: str) -> None:
    reader, w = pipe_reader(Limits(max_body_bytes=1 << 20))
    os.write(w, data)
    with pytest.raises(ProtocolError, match=error):
        reader.read(time.monotonic() + 5)


def test_a_header_without_its_body_does_not_block_past_the_deadline() -> None:
    reader, w = pipe_reader(Limits(body_timeout_s=0.2))
    os.write(w, protocol.HEADER.pack(protocol.MAGIC, 100, 0))
    with pytest.raises(ProtocolError, match="incomplete answer"):
        reader.read(time.monotonic())


def test_nothing_by_the_deadline_and_a_closed_pipe_are_told_apart() -> None:
    reader, w = pipe_reader()
    with pytest.raises(ChannelTimeout):
        reader.read(time.monotonic() + 0.05)
    os.close(w)
    with pytest.raises(ChannelClosed):
        reader.read(time.monotonic() + 5)


def test_a_writer_whose_reader_takes_nothing_gives_up() -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    with pytest.raises(ChannelTimeout):
        protocol.write(w, protocol.RunRequest(1, ["x" * 100] * 20_000, {}), timeout_s=0.2)
    os.close(r)
    with pytest.raises(ChannelClosed):
        protocol.write(w, protocol.Begin(1), timeout_s=0.2)


@pytest.mark.parametrize("sas,ok", [
    ("sv=2023-11-03&sr=c&sp=r&se=2026-12-03T07%3A00%3A00Z&sig=abc", True),
    ("sv=2023-11-03&ss=b&srt=sco&sp=rl&sig=abc", True),
    ("sv=2023-11-03&ss=b&srt=sco&sp=rwdlacup&sig=abc", False),
    ("sv=2023-11-03&sr=c&sp=rw&sig=abc", False),
    ("", True),                                  # a public container: no token at all
])
def test_only_read_only_tokens_go_to_scoring_processes(sas: str, ok: bool) -> None:
    from shared.service.working.worker import read_only
    assert read_only(sas) is ok


def test_a_float_field_takes_an_int_and_every_field_type_comes_from_the_dataclass() -> None:
    reader, w = pipe_reader()
    os.write(w, frame(b'{"t": "RunFailed", "seq": 1, "message": "E", "traceback": "", "seconds": 2}'))
    assert reader.read(time.monotonic() + 5) == protocol.RunFailed(1, "E", "", 2)
    assert protocol._FIELD_TYPES[protocol.Result] == {
        "seq": (int,), "rows": (int,), "seconds": (int, float), "header": (str,)}
    assert protocol._FIELD_TYPES[protocol.RunRequest]["payload"] == (list, dict)


def test_the_scoring_environment_names_are_the_protocol_s() -> None:
    """The child sets, and the compat layer reads, the variables the protocol names (one place)."""
    import inspect

    from shared.scoring import child
    from shared.scoring.compat.azureml.core import model, run
    from shared.service.working import pool, process

    names = [v for k, v in vars(protocol).items() if k.startswith("ENV_")]
    assert all(n.startswith("PARALLELRUN_") for n in names) and len(set(names)) == len(names)
    for module in (child, pool, process, model, run):
        assert '"PARALLELRUN_' not in inspect.getsource(module), module.__name__
