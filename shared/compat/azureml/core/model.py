"""``azureml.core.Model``: resolves models registered with ``parallelrun model register``."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

_lock = threading.Lock()
_storage = None


def _pins() -> dict[str, int]:
    pins = {}
    for item in filter(None, os.environ.get("PARALLELRUN_MODEL_PINS", "").split(",")):
        name, _, version = item.rpartition(":")
        pins[name] = int(version)
    return pins


def _local_paths() -> dict[str, str]:
    """The job's pinned versions, already on this node (shared.scoring links them in)."""
    return json.loads(os.environ.get("PARALLELRUN_MODEL_PATHS") or "{}")


def _get_storage() -> Any:
    global _storage
    with _lock:
        if _storage is None:
            from shared.settings import Settings
            from shared.storage import Storage
            _storage = Storage(Settings.from_env())
        return _storage


class Model:
    """Only the class methods PRS scripts call are provided."""

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None, _workspace: Any = None) -> str:
        """Local path of the model: the file of a single-file model, else its folder.

        The version is, in order: the one given, the one the job pins in ``models``, the latest."""
        pins = _pins()
        chosen = version if version is not None else pins.get(model_name)
        local = _local_paths().get(model_name)     # only pinned models have one
        if local is not None and chosen == pins[model_name]:
            return local

        from shared import models

        storage = _get_storage()
        model = models.get_version(storage, model_name, chosen)
        root = os.environ.get("AZUREML_MODEL_DIR") or os.path.join(os.getcwd(), "azureml-models")
        return str(models.download(storage, model, root))
