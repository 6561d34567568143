"""Train the example's digit classifier and write it as ONNX to ``examples/mnist/model/mnist.onnx``.

The tutorial this example replays downloads a pre-trained TensorFlow MNIST model; nothing can be
downloaded here, so we train a small one on the 28x28 MNIST-style renderings of scikit-learn's
digits (see ``digits.py``) and convert it with skl2onnx:

* input ``"input"``: float32 ``[None, 784]``, pixels / 255.0 (``digits.image_to_features``);
* outputs ``"label"`` (int64 ``[None]``) and ``"probabilities"`` (float32 ``[None, 10]``) - plain
  tensors, the ZipMap operator is disabled.

Training is deterministic (fixed split and ``random_state``, fixed opsets), so re-running the
script reproduces the committed model. Run from the repository root::

    .venv/bin/python examples/mnist/make_model.py [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import digits  # noqa: E402  (the example's own module, next to this file)

DEFAULT_OUT = HERE / "model" / "mnist.onnx"
SEED = 0
TEST_SIZE = 0.25
# Upper bound on the opsets (skl2onnx records the lowest the graph needs: 16 / ml 1), fixed so the
# file does not change with the converter's default.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
MIN_ACCURACY = 0.90


def train(seed: int = SEED):
    """Fit the classifier on a stratified split; return (model, held-out accuracy, test x, test y)."""
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = digits.load_features()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=seed, stratify=y)
    model = MLPClassifier(hidden_layer_sizes=(64,), activation="relu", solver="adam",
                          alpha=1e-3, batch_size=64, learning_rate_init=1e-3, max_iter=200,
                          early_stopping=False, random_state=seed)
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    return model, accuracy, x_test, y_test


def to_onnx(model):
    """The fitted classifier as an ONNX ModelProto with the interface documented above."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model, name="mnist",
        initial_types=[("input", FloatTensorType([None, digits.N_FEATURES]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET)
    onx.doc_string = ("Digit classifier for the ParallelRunStep MNIST example: input 'input' float32 "
                      "[N, 784] = 28x28 grayscale pixels / 255.0; outputs 'label' int64 [N] and "
                      "'probabilities' float32 [N, 10].")
    return onx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the MNIST example's classifier and export it to ONNX.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write the model ({DEFAULT_OUT})")
    args = parser.parse_args(argv)

    import onnxruntime

    model, accuracy, x_test, y_test = train()
    print(f"held-out accuracy: {accuracy:.4f} on {len(y_test)} images "
          f"(train/test split {1 - TEST_SIZE:.2f}/{TEST_SIZE:.2f}, seed {SEED})")
    if accuracy < MIN_ACCURACY:
        print(f"error: accuracy below {MIN_ACCURACY}", file=sys.stderr)
        return 1

    data = to_onnx(model).SerializeToString()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"input": x_test})
    agreement = float(np.mean(labels == model.predict(x_test)))
    onnx_accuracy = float(np.mean(labels == y_test))
    print(f"onnx accuracy: {onnx_accuracy:.4f}; agreement with scikit-learn: {agreement:.4f}; "
          f"probabilities {probabilities.shape} {probabilities.dtype}")
    if agreement < 0.995:
        print("error: the ONNX model disagrees with the scikit-learn model", file=sys.stderr)
        return 1

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
