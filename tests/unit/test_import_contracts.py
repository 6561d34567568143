"""What may import what: the contracts in pyproject.toml (``lint-imports``), kept by the code and
broken by a violating import; and ``functions/`` holds adapters only."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=120)


def test_the_code_keeps_every_import_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("shared/scoring/textrows.py", "import azure.storage.blob", "scoring processes import neither"),
    ("shared/scoring/tables.py", "from shared.spec import JobSpec", "scoring processes import neither"),
    ("shared/service/api.py", "import rich", "the service does not import the developer tools"),
    ("functions/worker.py", "from shared.local import host", "the service does not import the developer tools"),
], ids=["scoring-sdk", "scoring-pydantic-spec", "service-rich", "functions-local"])
def test_a_violating_import_breaks_its_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    for part in ("shared", "functions"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # injected\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    text = " ".join(result.stdout.split())       # lint-imports wraps long contract names
    assert re.search(re.escape(contract) + r"[^.]*? BROKEN", text), result.stdout
    assert "injected" in text or module.replace("/", ".").removesuffix(".py") in text, result.stdout


def test_functions_hold_adapters_only() -> None:
    """Each module of functions/ binds triggers to the service: no classes, short functions, and
    imports only of the Functions library and shared's entry points."""
    for path in sorted((ROOT / "functions").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            assert not isinstance(node, ast.ClassDef), f"{path.name}: class {node.name}"
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= 25, f"{path.name}: {node.name} is {length} lines: logic belongs in shared/service"
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert node.module.split(".")[0] in {"azure", "shared", "__future__", "logging", "typing"}, \
                    f"{path.name} imports {node.module}"
