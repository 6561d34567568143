"""Loading the examples' modules by path, and their entry scripts with a stand-in ``azureml.core``."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest


def load_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_entry_script(monkeypatch: pytest.MonkeyPatch, name: str, path: Path, model_name: str,
                      model_path: Path) -> types.ModuleType:
    """Import an entry script whose ``Model.get_model_path(model_name)`` returns ``model_path``;
    the names it asked for are in ``module.requested_models``."""
    requested: list[str] = []

    class Model:
        @staticmethod
        def get_model_path(name: str, *args: object, **kwargs: object) -> str:
            requested.append(name)
            if name != model_name:
                raise KeyError(name)
            return str(model_path)

    azureml = types.ModuleType("azureml")
    core = types.ModuleType("azureml.core")
    core.Model = Model  # type: ignore[attr-defined]
    azureml.core = core  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azureml", azureml)
    monkeypatch.setitem(sys.modules, "azureml.core", core)
    module = load_module(name, path)
    module.requested_models = requested  # type: ignore[attr-defined]
    return module
