"""A scoring process, warm spare or not, starts without the storage SDKs and pydantic (~0.5 s of
CPU at every start)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_scoring_and_table_loading_import_no_storage_sdk() -> None:
    code = ("import sys, shared.scoring.child, shared.scoring.tables, shared.scoring.blobreader\n"
            "import shared.scoring.textrows\n"
            "shared.scoring.tables.TableLoader()\n"
            "shared.scoring.child._warm_imports()\n"
            "print(sorted({m.split('.')[0] + '.' + m.split('.')[1] if m.startswith('azure.') "
            "else m.split('.')[0] for m in sys.modules "
            "if m.startswith(('azure.storage', 'azure.data', 'azure.core', 'pydantic'))}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
