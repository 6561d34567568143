"""The MNIST example: generated digit images, the committed ONNX model, and the PRS entry script.

The entry script is imported exactly as a scoring process would load it, with a minimal stand-in
for ``azureml.core`` whose ``Model.get_model_path`` returns the committed model file.
"""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .examples import load_entry_script, load_module

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mnist"
MODEL = EXAMPLE / "model" / "mnist.onnx"
ENTRY_SCRIPT = EXAMPLE / "code" / "digit_identification.py"
N_IMAGES = 200
NAME_RE = re.compile(r"^digit_(\d{5})_label_(\d)\.png$")
RESULT_RE = re.compile(r"^(digit_\d{5}_label_\d\.png): (\d)$")




@pytest.fixture(scope="module")
def digits() -> types.ModuleType:
    return load_module("mnist_example_digits", EXAMPLE / "digits.py")


@pytest.fixture(scope="module")
def pngs(digits: types.ModuleType, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, int]]:
    return digits.write_digit_pngs(tmp_path_factory.mktemp("mnist-images"), limit=N_IMAGES)


@pytest.fixture
def entry_script(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The entry script, imported with a fake ``azureml.core`` that resolves "mnist" to the model."""
    return load_entry_script(monkeypatch, "digit_identification_under_test", ENTRY_SCRIPT, "mnist", MODEL)


# -- digits.py ---------------------------------------------------------------------------------

def test_write_digit_pngs_names_labels_and_images(digits: types.ModuleType,
                                                  pngs: list[tuple[str, int]]) -> None:
    from sklearn.datasets import load_digits

    assert len(pngs) == N_IMAGES
    target = load_digits().target
    names = [Path(path).name for path, _ in pngs]
    assert names == sorted(names), "lexical order must be index order"
    for index, (path, label) in enumerate(pngs):
        match = NAME_RE.match(Path(path).name)
        assert match, path
        assert int(match.group(1)) == index
        assert label == int(target[index]) == digits.label_from_filename(path)
        assert digits.label_from_filename(Path(path).name) == label
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert img.mode == "L"
            assert img.size == (28, 28)
    assert set(label for _, label in pngs) == set(range(10))


def test_render_digit_is_mnist_style(digits: types.ModuleType) -> None:
    from sklearn.datasets import load_digits

    img = digits.render_digit(load_digits().images[0])
    assert (img.mode, img.size) == ("L", (28, 28))
    pixels = np.asarray(img)
    assert pixels.max() > 200, "ink should reach near-white"
    border = np.concatenate([pixels[:4].ravel(), pixels[-4:].ravel(), pixels[:, :4].ravel(), pixels[:, -4:].ravel()])
    assert border.max() == 0, "the digit sits in a 20x20 box centred on a black 28x28 canvas"
    # Deterministic: rendering twice gives the same pixels.
    assert np.array_equal(pixels, np.asarray(digits.render_digit(load_digits().images[0])))


def test_image_to_features(digits: types.ModuleType, pngs: list[tuple[str, int]]) -> None:
    with Image.open(pngs[0][0]) as img:
        features = digits.image_to_features(img)
        expected = np.asarray(img, dtype=np.float32).reshape(784) / 255.0
    assert features.dtype == np.float32 and features.shape == (784,)
    assert 0.0 <= features.min() and features.max() <= 1.0
    np.testing.assert_array_equal(features, expected)
    # Other sizes and modes are brought to 28x28 grayscale first.
    big = Image.new("RGB", (56, 56), color=(255, 255, 255))
    assert digits.image_to_features(big).shape == (784,)


def test_label_from_filename_rejects_unlabelled_names(digits: types.ModuleType) -> None:
    assert digits.label_from_filename("digit_00042_label_7.png") == 7
    assert digits.label_from_filename("/some/dir/digit_01796_label_8.png") == 8
    for bad in ("digit_00042.png", "label_x.png", "digit_00042_label_7.jpg"):
        with pytest.raises(ValueError):
            digits.label_from_filename(bad)


def test_cli_writes_limited_set(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, str(EXAMPLE / "digits.py"), str(out), "--limit", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "digit_00000_label_0.png", "digit_00001_label_1.png", "digit_00002_label_2.png"]


# -- the committed model -------------------------------------------------------------------------

def test_committed_model_interface_and_accuracy(digits: types.ModuleType,
                                                pngs: list[tuple[str, int]]) -> None:
    import onnxruntime

    assert MODEL.is_file(), "run examples/mnist/make_model.py to regenerate the model"
    assert MODEL.stat().st_size < 1_000_000
    session = onnxruntime.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "input" and inp.type == "tensor(float)" and inp.shape[1] == 784
    outputs = {o.name: o.type for o in session.get_outputs()}
    assert outputs == {"label": "tensor(int64)", "probabilities": "tensor(float)"}

    features = []
    for path, _ in pngs:
        with Image.open(path) as img:
            features.append(digits.image_to_features(img))
    x = np.stack(features)
    y = np.array([label for _, label in pngs])
    labels, probabilities = session.run(["label", "probabilities"], {"input": x})
    assert labels.shape == (N_IMAGES,) and probabilities.shape == (N_IMAGES, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)
    accuracy = float(np.mean(labels == y))
    assert accuracy >= 0.9, accuracy


# -- the entry script -----------------------------------------------------------------------------

def test_entry_script_scores_mini_batches(entry_script: types.ModuleType, digits: types.ModuleType,
                                          pngs: list[tuple[str, int]],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    entry_script.init()
    assert entry_script.requested_models == ["mnist"]
    paths = [path for path, _ in pngs]

    results = entry_script.run(paths)
    assert isinstance(results, list) and len(results) == len(paths)
    correct = 0
    for path, line in zip(paths, results):
        assert isinstance(line, str)
        match = RESULT_RE.match(line)
        assert match, line
        assert match.group(1) == Path(path).name
        correct += int(match.group(2)) == digits.label_from_filename(match.group(1))
    assert correct / len(paths) >= 0.9

    # Mini-batches of 5 (the job's mini_batch_size) give the same lines, in order.
    batched = [line for i in range(0, len(paths), 5) for line in entry_script.run(paths[i:i + 5])]
    assert batched == results
    assert entry_script.run([]) == []
    assert "run method start" in capsys.readouterr().out


def test_entry_script_preprocessing_matches_digits(entry_script: types.ModuleType,
                                                   digits: types.ModuleType,
                                                   pngs: list[tuple[str, int]]) -> None:
    for path, _ in pngs[:20]:
        with Image.open(path) as img:
            expected = digits.image_to_features(img)
        actual = entry_script.preprocess(path)
        assert actual.dtype == np.float32
        np.testing.assert_array_equal(actual, expected)


def test_entry_script_accepts_a_model_folder(entry_script: types.ModuleType, monkeypatch: pytest.MonkeyPatch,
                                             pngs: list[tuple[str, int]]) -> None:
    monkeypatch.setattr(entry_script.Model, "get_model_path", staticmethod(lambda name: str(MODEL.parent)))
    entry_script.init()
    assert RESULT_RE.match(entry_script.run([pngs[0][0]])[0])


def test_job_spec_matches_the_tutorial() -> None:
    import yaml

    spec = yaml.safe_load((EXAMPLE / "job.yaml").read_text())
    assert spec == {
        "name": "mnist-batch",
        "entry_script": "digit_identification.py",
        "source_directory": "code",
        "models": ["mnist"],
        "inputs": [{"path": "mnist-images/digits/"}],
        "mini_batch_size": "5",
        "error_threshold": 10,
        "output_action": "append_row",
        "append_row_file_name": "mnist_outputs.txt",
        "process_count_per_node": 2,
        "node_count": 2,
        "logging_level": "INFO",
        "run_invocation_timeout": 60,
        "run_max_try": 3,
        "allow_reuse": True,
    }
    assert re.fullmatch(r"[a-z][a-z0-9-]{2,31}", spec["name"])
    assert (EXAMPLE / spec["source_directory"] / spec["entry_script"]).is_file()
