"""The parts of ``host.json`` the local host honours, parsed into frozen objects.

Defaults are the Azure Functions host's own (queues extension 5.x): ``batchSize`` 16,
``newBatchThreshold`` ``batchSize // 2``, ``maxPollingInterval`` 1 minute, ``visibilityTimeout`` 0
(a failed message reappears at once), ``maxDequeueCount`` 5, ``messageEncoding`` base64, and the
HTTP ``routePrefix`` "api". Keys are matched case-insensitively, as the host's configuration does.
TimeSpans are written ``[d.]hh:mm:ss[.fff]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TIMESPAN = re.compile(r"^\s*(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)\s*$")
MAX_BATCH_SIZE = 32  # a Storage queue hands out at most 32 messages per receive call
ENCODINGS = ("base64", "none")


def parse_timespan(text: str) -> float:
    """Seconds in a .NET TimeSpan string such as ``"00:00:02"`` or ``"1.00:00:00"``."""
    match = _TIMESPAN.match(str(text))
    if not match:
        raise ValueError(f"not a TimeSpan ([d.]hh:mm:ss[.fff]): {text!r}")
    days, hours, minutes, seconds = match.groups()
    if int(minutes) >= 60 or float(seconds) >= 60:
        raise ValueError(f"TimeSpan out of range: {text!r}")
    return ((int(days or 0) * 24 + int(hours)) * 60 + int(minutes)) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueHostConfig:
    """``extensions.queues`` of host.json: how queue triggers poll, batch, retry and poison."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    max_polling_interval_s: float = 60.0
    visibility_timeout_s: float = 0.0   # delay before a failed message is visible again
    max_dequeue_count: int = 5
    message_encoding: str = "base64"

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"queues.batchSize must be 1..{MAX_BATCH_SIZE}, not {self.batch_size}")
        if self.new_batch_threshold < 0:
            raise ValueError("queues.newBatchThreshold must be >= 0, "
                             f"not {self.new_batch_threshold}")
        if self.max_polling_interval_s < 0.1:
            raise ValueError("queues.maxPollingInterval must be at least 00:00:00.1")
        if self.visibility_timeout_s < 0:
            raise ValueError("queues.visibilityTimeout must not be negative")
        if self.max_dequeue_count < 1:
            raise ValueError(f"queues.maxDequeueCount must be >= 1, not {self.max_dequeue_count}")
        if self.message_encoding not in ENCODINGS:
            raise ValueError(f"queues.messageEncoding must be one of {ENCODINGS}, "
                             f"not {self.message_encoding!r}")

    @property
    def max_concurrency(self) -> int:
        """Invocations one queue function may run at once on one instance (as in Azure)."""
        return self.batch_size + self.new_batch_threshold


@dataclass(frozen=True)
class HostConfig:
    """What the local host reads from host.json."""

    queues: QueueHostConfig = field(default_factory=QueueHostConfig)
    route_prefix: str = "api"
    function_timeout_s: float | None = None  # informational; the local host does not enforce it


def _get(section: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    """Case-insensitive lookup, as the Functions host's configuration binder does."""
    if not section:
        return default
    lowered = {str(k).lower(): v for k, v in section.items()}
    return lowered.get(key.lower(), default)


def parse_queue_config(section: Mapping[str, Any] | None) -> QueueHostConfig:
    batch_size = int(_get(section, "batchSize", 16))
    threshold = _get(section, "newBatchThreshold")
    polling = _get(section, "maxPollingInterval")
    visibility = _get(section, "visibilityTimeout")
    return QueueHostConfig(
        batch_size=batch_size,
        new_batch_threshold=batch_size // 2 if threshold is None else int(threshold),
        max_polling_interval_s=60.0 if polling is None else parse_timespan(polling),
        visibility_timeout_s=0.0 if visibility is None else parse_timespan(visibility),
        max_dequeue_count=int(_get(section, "maxDequeueCount", 5)),
        message_encoding=str(_get(section, "messageEncoding", "base64")).lower())


def parse_host_config(document: Mapping[str, Any]) -> HostConfig:
    """A :class:`HostConfig` from a parsed host.json document."""
    extensions = _get(document, "extensions", {}) or {}
    prefix = _get(_get(extensions, "http"), "routePrefix", "api")
    timeout = _get(document, "functionTimeout")
    return HostConfig(
        queues=parse_queue_config(_get(extensions, "queues")),
        route_prefix=str(prefix).strip("/"),
        function_timeout_s=None if timeout in (None, "-1") else parse_timespan(timeout))


def load_host_config(path: str | Path) -> HostConfig:
    """Read and parse a host.json file."""
    text = Path(path).read_text(encoding="utf-8-sig")
    try:
        return parse_host_config(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
