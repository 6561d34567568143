"""The examples' entry scripts, loaded as a scoring process loads them, for the limits to score with.

:func:`load` imports an entry script by path with ``azureml.core`` resolving to the project's
compatibility layer (``shared/scoring/compat``, what a scoring process gives the script), whose
``Model.get_model_path`` returns the committed model, and calls the script's ``init()``. The limits
then score with the script's own code: the tabular script's ``run()`` on each DataFrame; the MNIST
script's ``preprocess()`` and the session its ``init()`` made, since its ``run()`` takes file paths
and the limits hold the PNGs in memory (files would add file-system work the limits are not about).

What a script prints goes to /dev/null, as a scoring process sends it to its log file: stdout
carries the measurements' JSON.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import TextIO

from bench import workloads
from shared.scoring import protocol

MNIST_SCRIPT = workloads.MNIST_CODE / "digit_identification.py"
TABLE_SCRIPT = workloads.TABLE_CODE / "score_table.py"
MNIST_MODEL_NAME = "mnist"              # the names the scripts' init() ask for
TABLE_MODEL_NAME = "breast-cancer"


@functools.cache
def _devnull() -> TextIO:
    return open(os.devnull, "w")


def load(script: Path, model_name: str, model: Path, *, default_session: bool = False) -> ModuleType:
    """``script`` imported and ``init()`` called, ``Model.get_model_path(model_name)`` giving ``model``.

    ``default_session``: then replace the session ``init()`` made (one intra-op thread, as the
    examples make it for several scoring processes per node) by one with onnxruntime's default
    options, which is what a plain script gets (the naive baseline)."""
    import shared.scoring.compat.azureml as azureml
    import shared.scoring.compat.azureml.core as azureml_core

    spec = importlib.util.spec_from_file_location(f"entry_script_{script.stem}", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load entry script {script}")
    module = importlib.util.module_from_spec(spec)
    env = {protocol.ENV_MODEL_PINS: f"{model_name}:1",
           protocol.ENV_MODEL_PATHS: json.dumps({model_name: str(model)})}
    saved_env = {name: os.environ.get(name) for name in env}
    saved_modules = {name: sys.modules.get(name) for name in ("azureml", "azureml.core")}
    os.environ.update(env)
    sys.modules.update({"azureml": azureml, "azureml.core": azureml_core})
    try:
        spec.loader.exec_module(module)
        module.print = functools.partial(print, file=_devnull())   # the script's own print()
        module.init()
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name, mod in saved_modules.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod
    if default_session:
        import onnxruntime

        module.g_session = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        module.g_input_name = module.g_session.get_inputs()[0].name
    return module


def mnist(*, default_session: bool = False) -> ModuleType:
    """examples/mnist/code/digit_identification.py, loaded (see :func:`load`)."""
    return load(MNIST_SCRIPT, MNIST_MODEL_NAME, workloads.MNIST_MODEL, default_session=default_session)


def tabular(*, default_session: bool = False) -> ModuleType:
    """examples/tabular/code/score_table.py, loaded (see :func:`load`)."""
    return load(TABLE_SCRIPT, TABLE_MODEL_NAME, workloads.TABLE_MODEL, default_session=default_session)
