"""The README's demo, end to end: Azurite, two host nodes, the HTTP API, the MNIST tutorial."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.cli.demo import run_demo
from shared.local.azurite import free_port


@pytest.mark.timeout(600)
def test_demo_scores_every_image_once_with_the_tutorial_accuracy(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    summary = run_demo(nodes=2, port=free_port(), out_dir=tmp_path / "demo-out")
    assert summary["images"] == 1797
    assert summary["rows"] == summary["images"]
    assert summary["accuracy"] >= 0.90
    last = capsys.readouterr().out.strip().splitlines()[-1]
    # it ends with local copies, which outlive the demo's private Azurite, not with its URL
    output = tmp_path / "demo-out" / "mnist_outputs.txt"
    assert last == (f"demo: 1797 images, 1797 rows, accuracy {summary['accuracy']:.3f}, "
                    f"output {output.resolve()} (logs in {output.resolve().parent / 'logs'})")
    assert "http://" not in last
    assert len(output.read_text().splitlines()) == 1797
    assert (tmp_path / "demo-out" / "logs" / "job_result.txt").read_text().startswith("Job ")
