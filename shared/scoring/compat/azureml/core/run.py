"""``azureml.core.Run``: an offline run context whose metrics go to the process's log folder."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from shared.scoring.protocol import ENV_JOB_ID, ENV_LOG_DIR, ENV_PROCESS_NAME


class Run:
    _context: "Run | None" = None

    def __init__(self) -> None:
        self.id = os.environ.get(ENV_JOB_ID, "OfflineRun")
        self.tags: dict[str, Any] = {}
        self.properties: dict[str, Any] = {}
        self.parent = None
        self.experiment = None

    @classmethod
    def get_context(cls, allow_offline: bool = True, **_: Any) -> "Run":
        if cls._context is None:
            cls._context = cls()
        return cls._context

    def _write(self, record: dict[str, Any]) -> None:
        log_dir = os.environ.get(ENV_LOG_DIR, os.getcwd())
        name = os.environ.get(ENV_PROCESS_NAME, "process")
        os.makedirs(log_dir, exist_ok=True)
        with open(os.path.join(log_dir, f"metrics.{name}.jsonl"), "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"at": time.time(), **record}, default=str) + "\n")

    def log(self, name: str, value: Any, description: str = "") -> None:
        self._write({"metric": name, "value": value})

    def log_list(self, name: str, value: list[Any], description: str = "") -> None:
        self._write({"metric": name, "value": list(value)})

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        self._write({"metric": name, "row": kwargs})

    def tag(self, key: str, value: Any = None) -> None:
        self.tags[key] = value

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.tags.update(tags)

    def get_tags(self) -> dict[str, Any]:
        return dict(self.tags)

    def add_properties(self, properties: dict[str, Any]) -> None:
        self.properties.update(properties)

    def complete(self, **_: Any) -> None:
        pass
