"""``azureml.core.Model``: the models the job pins, from the node's copies.

A scoring process holds no storage credentials, so it never fetches a model itself: the worker
downloads the versions a job pins in ``models`` once per node and lays them out as Azure ML does,
``azureml-models/<name>/<version>/<file or folder>``, in real read-only files. Any other model or
version is an error that names it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from shared.scoring.protocol import ENV_JOB_ID, ENV_MODEL_PATHS, ENV_MODEL_PINS


def _pins() -> dict[str, int]:
    pins = {}
    for item in filter(None, os.environ.get(ENV_MODEL_PINS, "").split(",")):
        name, _, version = item.rpartition(":")
        pins[name] = int(version)
    return pins


def _local_paths() -> dict[str, str]:
    """The job's pinned versions, already on this node: name -> the path to return."""
    return json.loads(os.environ.get(ENV_MODEL_PATHS) or "{}")


class Model:
    """Only the class methods PRS scripts call are provided."""

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None, _workspace: Any = None) -> str:
        """Local path of the model, as Azure ML gives it: the one entry of its version folder,
        ``.../azureml-models/<name>/<version>/<entry>`` (the file of a model registered from a
        file, the folder of one registered from a folder, which keeps that folder's name).

        Only the versions the job pins in ``models`` are available (``version`` may name the
        pinned one, or be left out: then it is the pinned one)."""
        pins = _pins()
        job = os.environ.get(ENV_JOB_ID, "?")
        pinned = pins.get(model_name)
        if pinned is None:
            raise LookupError(
                f"job {job}: model {model_name!r} is not in the job's models "
                f"({', '.join(f'{k}:{v}' for k, v in pins.items()) or 'none'}); add it to `models` "
                "in the job spec (scoring processes cannot fetch models themselves)")
        if version is not None and int(version) != pinned:
            raise LookupError(
                f"job {job}: model {model_name!r} version {version} is not the version the job "
                f"pins ({model_name}:{pinned}); pin it in `models` as {model_name}:{version}")
        local = _local_paths().get(model_name)
        if local is None:
            raise LookupError(f"job {job}: model {model_name}:{pinned} could not be copied to this "
                              "node (the worker's log says why)")
        return local
