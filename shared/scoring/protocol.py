"""The channel between the worker and its scoring processes: data only, bounded in size and time.

Both sides import this module (stdlib only: the scoring processes load neither the storage SDKs nor
pydantic). A message is one frame::

    b"PRF1" | control length (u32) | body length (u32) | control: UTF-8 JSON object | body: bytes

The control part names the message type (``"t"``) and carries its fields; the body carries bulk
bytes as they are (a mini-batch's rows) instead of escaping them into JSON. JSON cannot run code
when it is read, so a script that writes its own frames to the result pipe can at worst send an
answer for its own mini-batch, which the worker checks like any other answer: a malformed,
out-of-sequence or oversized one fails that try, and nothing the child writes is ever executed.

Every read by the worker has a deadline, for the header and for the body alike: a child that sends
a header and nothing else, or stops answering, is given up on (:class:`ChannelTimeout`), never
waited for. Sizes are checked before anything is read: the control part may not exceed
``Limits.max_control_bytes``, the body ``Limits.max_body_bytes`` (the worker's
``PARALLELRUN_MAX_RESULT_BYTES``, 256 MiB by default).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import select
import struct
import time
import types
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

MAGIC = b"PRF1"
HEADER = struct.Struct(">4sII")
MAX_CONTROL_BYTES = 1 << 20            # child -> worker: tracebacks are cut to fit well below
MAX_REQUEST_BYTES = 256 << 20          # worker -> child: a request's paths / piece descriptions
DEFAULT_MAX_RESULT_BYTES = 256 << 20   # a mini-batch's rows (PARALLELRUN_MAX_RESULT_BYTES)
BODY_TIMEOUT_S = 30.0                  # from a frame's header to its last byte
WRITE_TIMEOUT_S = 30.0                 # a request the child does not take in by then: it is stuck
PIPE_SIZE = 1 << 20                    # F_SETPIPE_SZ where allowed: fewer wake-ups for large rows
TEXT_LIMIT = 64 << 10                  # error messages and tracebacks are cut to this many chars

# Environment variables of a scoring process (read by shared.scoring.child and the compat layer).
ENV_JOB_ID = "PARALLELRUN_JOB_ID"
ENV_NODE_ID = "PARALLELRUN_NODE_ID"
ENV_PROCESS_NAME = "PARALLELRUN_PROCESS_NAME"
ENV_LOG_DIR = "PARALLELRUN_LOG_DIR"
ENV_WORK_DIR = "PARALLELRUN_WORK_DIR"
ENV_MODEL_PINS = "PARALLELRUN_MODEL_PINS"
ENV_MODEL_PATHS = "PARALLELRUN_MODEL_PATHS"
ENV_PROCESS_TOKEN = "PARALLELRUN_PROCESS_TOKEN"   # marks a process and everything it starts
ENV_PARENT_PID = "PARALLELRUN_PARENT_PID"         # the worker: its scoring process ends without it


class ProtocolError(Exception):
    """The other side sent something that is not a valid message."""


class ChannelClosed(Exception):
    """The other side closed its end (it exited or was killed)."""


class ChannelTimeout(Exception):
    """Nothing (or only part of a frame) arrived before the deadline."""


@dataclass(frozen=True)
class Limits:
    max_control_bytes: int = MAX_CONTROL_BYTES
    max_body_bytes: int = DEFAULT_MAX_RESULT_BYTES
    body_timeout_s: float = BODY_TIMEOUT_S


# -- what the two sides exchange about a job and a try ---------------------------------------

@dataclass(frozen=True)
class ScoringConfig:
    """What a scoring process needs to run a job's entry script (sent in :class:`Assign`)."""

    job_id: str
    entry_script: str                 # absolute path
    source_dir: str                   # absolute path, put on sys.path
    work_dir: str                     # cwd and home of output/ and logs/
    arguments: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    logging_level: str = "INFO"
    node_id: str = "node0"
    process_name: str = "process000"
    model_pins: dict[str, int] = field(default_factory=dict)
    models_root: str = ""             # the job's azureml-models folder on this node (read-only)
    model_paths: dict[str, str] = field(default_factory=dict)   # pinned model -> get_model_path's answer
    bindings: dict[str, str] = field(default_factory=dict)      # ${{inputs.X}} -> model:/side:NAME | output
    side_input_paths: dict[str, str] = field(default_factory=dict)  # side input -> its folder or file
    python_path: tuple[str, ...] = ()   # the job environment's packages, before the app's
    output_format: str = "text"       # text (PRS's append_row rows) | csv | jsonl
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES   # a larger run() result fails the try
    sandbox: bool = True              # write only beneath work_dir (Landlock; shared.scoring.sandbox)
    sandbox_writable: tuple[str, ...] = ()   # and in these folders

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringConfig:
        return cls(**{**data, "arguments": tuple(data.get("arguments") or ()),
                      "sandbox_writable": tuple(data.get("sandbox_writable") or ()),
                      "python_path": tuple(data.get("python_path") or ())})

    @property
    def output_dir(self) -> str:
        return os.path.join(self.work_dir, "output")

    @property
    def log_dir(self) -> str:
        return os.path.join(self.work_dir, "logs")

    @property
    def model_dir(self) -> str:
        """``AZUREML_MODEL_DIR``, by Azure ML's rule: the model's own version folder
        (``azureml-models/<name>/<version>``) when the job has one model, else the folder over
        all of them."""
        root = self.models_root or os.path.join(self.work_dir, "azureml-models")
        if len(self.model_pins) == 1:
            [(name, version)] = self.model_pins.items()
            return os.path.join(root, name, str(version))
        return root


class OutcomeKind(StrEnum):
    """How one ``run()`` try ended, as the worker saw it."""

    OK = "ok"              # run() returned; its rows arrived
    ERROR = "error"        # run() raised
    TIMEOUT = "timeout"    # run() exceeded run_invocation_timeout: the process was killed
    CRASH = "crash"        # the process died during run(), or broke the protocol
    INIT = "init"          # init() failed: the mini-batch never ran
    LOST = "lost"          # the process was dead before it took the request: not the try's fault


@dataclass(frozen=True)
class RunOutcome:
    """The result of one ``run()`` try."""

    kind: OutcomeKind
    text: str | bytes = ""    # the rows (kind ok)
    rows: int = 0
    loaded: int = -1          # rows of a tabular mini-batch, once read (-1: not a table, or unknown)
    header: str = ""          # output_format csv: the header line of a DataFrame result
    message: str = ""
    traceback: str = ""
    seconds: float = 0.0
    pid: int = 0
    process: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", OutcomeKind(self.kind))   # "ok" and OutcomeKind.OK alike

    @property
    def ok(self) -> bool:
        return self.kind is OutcomeKind.OK


# -- messages ----------------------------------------------------------------------------------
# Each type's fields are its JSON fields, checked against their annotations when a frame is read;
# ``body`` (bytes) travels as the frame's body, an Assign's config as an object.

@dataclass(frozen=True)
class Assign:
    """worker -> child: the job."""
    config: ScoringConfig


@dataclass(frozen=True)
class RunRequest:
    """worker -> child: run() on file paths (a list) or a table to read (a dict)."""
    seq: int
    payload: list[str] | dict[str, Any]
    context: dict[str, Any]


@dataclass(frozen=True)
class Shutdown:
    """worker -> child: call shutdown() and exit."""


@dataclass(frozen=True)
class Warm:
    """child -> worker: a spare's imports are done (``ok``: back at normal priority)."""
    ok: bool


@dataclass(frozen=True)
class Ready:
    """child -> worker: init() succeeded."""
    pid: int


@dataclass(frozen=True)
class InitFailed:
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class Begin:
    """child -> worker: request ``seq`` received; from here on a death is the mini-batch's try."""
    seq: int


@dataclass(frozen=True)
class Loaded:
    """child -> worker: the table of request ``seq`` is read (``rows`` rows); run() starts."""
    seq: int
    rows: int


@dataclass(frozen=True)
class Result:
    """child -> worker: run() returned ``rows`` rows, formatted in ``body``."""
    seq: int
    rows: int
    seconds: float
    header: str = ""
    body: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class RunFailed:
    seq: int
    message: str
    traceback: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Bye:
    """child -> worker: shutdown() ran; the process exits."""


Message = (Assign | RunRequest | Shutdown | Warm | Ready | InitFailed | Begin | Loaded | Result
           | RunFailed | Bye)
MESSAGES: dict[str, type] = {cls.__name__: cls for cls in (
    Assign, RunRequest, Shutdown, Warm, Ready, InitFailed, Begin, Loaded, Result, RunFailed, Bye)}


def _json_types(hint: Any) -> tuple[type, ...]:
    """The JSON value types a field of type ``hint`` accepts (a float field takes an int too)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _json_types(arg))
    origin = typing.get_origin(hint) or hint
    if dataclasses.is_dataclass(origin):
        return (dict,)                    # a nested configuration travels as an object
    return (int, float) if origin is float else (origin,)


# every message type's JSON fields and the types each accepts, from its annotations
_FIELD_TYPES: dict[type, dict[str, tuple[type, ...]]] = {
    cls: {name: _json_types(hint) for name, hint in typing.get_type_hints(cls).items() if name != "body"}
    for cls in MESSAGES.values()}


def encode(message: Message) -> bytes:
    """One frame for ``message``."""
    head, body = _parts(message)
    return head + body


def _parts(message: Message) -> tuple[bytes, bytes]:
    """A frame as header + control, and body (kept apart: rows are not copied to be framed)."""
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    body = fields.pop("body", b"")
    if isinstance(message, Assign):
        fields["config"] = message.config.to_dict()
    control = json.dumps({"t": type(message).__name__, **fields}, separators=(",", ":"),
                         ensure_ascii=False).encode()
    return HEADER.pack(MAGIC, len(control), len(body)) + control, body


def decode(control: bytes, body: bytes) -> Message:
    """The message of a frame's two parts; :class:`ProtocolError` if it is not a valid one."""
    try:
        data = json.loads(control)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not a JSON object: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("t"), str):
        raise ProtocolError("no message type")
    cls = MESSAGES.get(data.pop("t"))
    if cls is None:
        raise ProtocolError("unknown message type")
    types = _FIELD_TYPES[cls]
    if set(data) != set(types):
        raise ProtocolError(f"{cls.__name__}: fields {sorted(data)} are not {sorted(types)}")
    for name, allowed in types.items():
        value = data[name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise ProtocolError(f"{cls.__name__}.{name} has the wrong type")
    if body and cls is not Result:
        raise ProtocolError(f"{cls.__name__} carries no body")
    if cls is Assign:
        try:
            return Assign(ScoringConfig.from_dict(data["config"]))
        except TypeError as exc:
            raise ProtocolError(f"Assign.config is not a scoring configuration: {exc}") from None
    return cls(**data, body=body) if cls is Result else cls(**data)


def cut(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` shortened to ``limit`` characters (the end kept: tracebacks end with the error)."""
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def widen(fd: int) -> None:
    """Ask for a larger pipe buffer (best effort)."""
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except OSError:
        pass


# -- reading and writing -----------------------------------------------------------------------

class Reader:
    """Reads frames from a pipe; with a deadline, never blocks past it."""

    def __init__(self, fd: int, limits: Limits) -> None:
        self.fd = fd
        self.limits = limits
        self._buffer = bytearray()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def ready(self) -> bool:
        """Whether something (a frame's start, or the end of the pipe) can be read now."""
        return bool(self._buffer) or _wait_readable(self.fd, 0.0)

    def read(self, deadline: float | None = None) -> Message:
        """The next message; ``deadline`` (``time.monotonic()``) bounds the wait for its header,
        and the body must follow within ``limits.body_timeout_s`` (None: wait, the child's way)."""
        head = self._take(HEADER.size, deadline)
        magic, control_len, body_len = HEADER.unpack(head)
        if magic != MAGIC:
            raise ProtocolError("not a frame (bad magic)")
        if control_len > self.limits.max_control_bytes:
            raise ProtocolError(f"a message of {control_len} bytes exceeds the limit of "
                                f"{self.limits.max_control_bytes}")
        if body_len > self.limits.max_body_bytes:
            raise ProtocolError(f"an answer of {body_len} bytes exceeds the limit of "
                                f"{self.limits.max_body_bytes} (PARALLELRUN_MAX_RESULT_BYTES)")
        body_deadline = None if deadline is None else time.monotonic() + self.limits.body_timeout_s
        try:
            control = self._take(control_len, body_deadline)
            body = self._take(body_len, body_deadline) if body_len else b""
        except ChannelTimeout as exc:
            raise ProtocolError(f"an incomplete answer: {exc}") from None
        return decode(control, body)

    def _take(self, n: int, deadline: float | None) -> bytes:
        while len(self._buffer) < n:
            if deadline is not None and not _wait_readable(self.fd, deadline - time.monotonic()):
                raise ChannelTimeout(f"{len(self._buffer)} of {n} bytes by the deadline")
            try:
                chunk = os.read(self.fd, max(n - len(self._buffer), 1 << 16))
            except InterruptedError:
                continue
            except OSError as exc:
                raise ChannelClosed(str(exc)) from None
            if not chunk:
                raise ChannelClosed("end of pipe")
            self._buffer += chunk
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


def write(fd: int, message: Message, timeout_s: float | None = None) -> None:
    """Write one frame; with ``timeout_s``, ``fd`` must be non-blocking and a reader that does not
    take it in time raises :class:`ChannelTimeout`. A closed reader raises :class:`ChannelClosed`."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    for part in _parts(message):
        _write_all(fd, memoryview(part), deadline)


def _write_all(fd: int, data: memoryview, deadline: float | None) -> None:
    while data:
        try:
            written = os.write(fd, data)
        except BlockingIOError:
            written = 0
        except InterruptedError:
            continue
        except OSError as exc:        # EPIPE: the reader is gone
            raise ChannelClosed(errno.errorcode.get(exc.errno or 0, str(exc))) from None
        data = data[written:]
        if data and deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not _wait(fd, select.POLLOUT, remaining):
                raise ChannelTimeout(f"{len(data)} bytes not taken in by the deadline")


def _wait_readable(fd: int, timeout_s: float) -> bool:
    return _wait(fd, select.POLLIN, timeout_s)


def _wait(fd: int, event: int, timeout_s: float) -> bool:
    poller = select.poll()
    poller.register(fd, event)
    end = time.monotonic() + max(0.0, timeout_s)
    while True:
        try:
            # POLLHUP / POLLERR count as ready: the read or write that follows reports them
            return bool(poller.poll(max(0.0, end - time.monotonic()) * 1000))
        except InterruptedError:
            continue
