"""The README's demo, end to end: Azurite, two host nodes, the HTTP API, the MNIST tutorial."""

from __future__ import annotations

import pytest

from shared.cli.demo import run_demo
from shared.local.azurite import free_port


@pytest.mark.timeout(600)
def test_demo_scores_every_image_once_with_the_tutorial_accuracy(capsys: pytest.CaptureFixture[str]) -> None:
    summary = run_demo(nodes=2, port=free_port())
    assert summary["images"] == 1797
    assert summary["rows"] == summary["images"]
    assert summary["accuracy"] >= 0.90
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith(f"demo: 1797 images, 1797 rows, accuracy {summary['accuracy']:.3f}, output http://127.0.0.1:")
    assert last.endswith("/mnist_outputs.txt")
