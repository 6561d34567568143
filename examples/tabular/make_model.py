"""Train the example's breast-cancer classifier and write it as ONNX to ``examples/tabular/model/breast_cancer.onnx``.

A TabularDataset job scores rows of a table; here the rows are scikit-learn's breast-cancer data set
(see ``make_data.py``) and the model is a ``StandardScaler`` + ``LogisticRegression`` pipeline,
converted with skl2onnx:

* input ``"input"``: float32 ``[None, 30]``, the 30 feature columns in ``make_data.FEATURE_COLUMNS``
  order (raw values: the scaler is part of the graph);
* outputs ``"label"`` (int64 ``[None]``, 0 = malignant, 1 = benign) and ``"probabilities"``
  (float32 ``[None, 2]``) - plain tensors, the ZipMap operator is disabled.

Training is deterministic (fixed stratified split and ``random_state``, fixed opsets), so re-running
the script reproduces the committed model. Run from the repository root::

    .venv/bin/python examples/tabular/make_model.py [--out PATH]
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

import make_data  # noqa: E402  (the example's own module, next to this file)

DEFAULT_OUT = HERE / "model" / "breast_cancer.onnx"
SEED = 0
TEST_SIZE = 0.25
# Upper bound on the opsets, fixed so the file does not change with the converter's default.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
MIN_ACCURACY = 0.93


def load_xy() -> tuple[np.ndarray, np.ndarray]:
    """The data set's 569 rows: features (569, 30) float32 in model order, labels (569,) int64."""
    frame = make_data.make_frame()
    return frame[list(make_data.FEATURE_COLUMNS)].to_numpy(dtype=np.float32), frame["label"].to_numpy()


def train(seed: int = SEED):
    """Fit the pipeline on a stratified split; return (model, held-out accuracy, test x, test y)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_xy()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=seed, stratify=y)
    model = Pipeline([
        ("scaler", StandardScaler()),
        ("classifier", LogisticRegression(C=1.0, max_iter=1000, random_state=seed)),
    ])
    model.fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    return model, accuracy, x_test, y_test


def to_onnx(model):
    """The fitted pipeline as an ONNX ModelProto with the interface documented above."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    classifier = model.steps[-1][1]
    onx = convert_sklearn(
        model, name="breast_cancer",
        initial_types=[("input", FloatTensorType([None, make_data.N_FEATURES]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=TARGET_OPSET)
    # skl2onnx 1.20 lists the default domain twice for this pipeline; keep one entry per domain.
    versions: dict[str, int] = {}
    for opset in onx.opset_import:
        versions[opset.domain] = max(versions.get(opset.domain, 0), opset.version)
    del onx.opset_import[:]
    for domain, version in versions.items():
        entry = onx.opset_import.add()
        entry.domain, entry.version = domain, version
    onx.doc_string = ("Breast-cancer classifier for the ParallelRun TabularDataset example: input 'input' "
                      "float32 [N, 30] = the 30 feature columns in data-set order; outputs 'label' int64 [N] "
                      "(0 = malignant, 1 = benign) and 'probabilities' float32 [N, 2].")
    return onx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train the tabular example's classifier and export it to ONNX.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"where to write the model ({DEFAULT_OUT})")
    args = parser.parse_args(argv)

    import onnxruntime

    model, accuracy, x_test, y_test = train()
    print(f"held-out accuracy: {accuracy:.4f} on {len(y_test)} rows (train/test split "
          f"{1 - TEST_SIZE:.2f}/{TEST_SIZE:.2f}, seed {SEED})")
    if accuracy < MIN_ACCURACY:
        print(f"error: accuracy below {MIN_ACCURACY}", file=sys.stderr)
        return 1

    data = to_onnx(model).SerializeToString()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"input": x_test})
    agreement = float(np.mean(labels == model.predict(x_test)))
    max_diff = float(np.max(np.abs(probabilities - model.predict_proba(x_test))))
    onnx_accuracy = float(np.mean(labels == y_test))
    print(f"onnx accuracy: {onnx_accuracy:.4f}; agreement with scikit-learn: {agreement:.4f}; "
          f"max probability difference {max_diff:.2e}; probabilities {probabilities.shape} {probabilities.dtype}")
    if agreement < 1.0 or max_diff > 1e-4:
        print("error: the ONNX model disagrees with the scikit-learn model", file=sys.stderr)
        return 1

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
