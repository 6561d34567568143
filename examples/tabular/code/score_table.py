"""ParallelRunStep entry script: score rows of a breast-cancer table with an ONNX model.

Written against Azure ML's ParallelRunStep contract for a TabularDataset, so it runs unchanged on an
AmlCompute cluster or on ParallelRun Functions:

* ``init()`` runs once per scoring process and loads the registered model "breast-cancer";
* ``run(mini_batch)`` gets a pandas DataFrame (a slice of the table: ``id``, the 30 feature columns,
  and possibly more, such as ``label``) and returns a DataFrame with one row per input row:
  ``id``, ``prediction`` (0 = malignant, 1 = benign) and ``probability`` (of class 1, rounded to 6
  decimals). The ``append_row`` output action writes it as space-separated rows without a header,
  e.g. ``42 1 0.987654``.

The model takes the 30 features as float32, in the order of FEATURE_COLUMNS.
"""

import os

import numpy as np
import onnxruntime
import pandas as pd
from azureml.core import Model

FEATURE_COLUMNS = [
    "mean_radius", "mean_texture", "mean_perimeter", "mean_area", "mean_smoothness",
    "mean_compactness", "mean_concavity", "mean_concave_points", "mean_symmetry",
    "mean_fractal_dimension",
    "radius_error", "texture_error", "perimeter_error", "area_error", "smoothness_error",
    "compactness_error", "concavity_error", "concave_points_error", "symmetry_error",
    "fractal_dimension_error",
    "worst_radius", "worst_texture", "worst_perimeter", "worst_area", "worst_smoothness",
    "worst_compactness", "worst_concavity", "worst_concave_points", "worst_symmetry",
    "worst_fractal_dimension",
]
RESULT_COLUMNS = ["id", "prediction", "probability"]


def init():
    global g_session, g_input_name

    # Resolve the registered model to a local path (a file, or a folder holding the .onnx file).
    model_path = Model.get_model_path("breast-cancer")
    if os.path.isdir(model_path):
        onnx_files = sorted(f for f in os.listdir(model_path) if f.endswith(".onnx"))
        if not onnx_files:
            raise FileNotFoundError(f"no .onnx file in model folder {model_path}")
        model_path = os.path.join(model_path, onnx_files[0])

    options = onnxruntime.SessionOptions()
    # Several scoring processes share a node: one compute thread each avoids oversubscription.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    g_session = onnxruntime.InferenceSession(model_path, sess_options=options,
                                             providers=["CPUExecutionProvider"])
    g_input_name = g_session.get_inputs()[0].name
    print(f"init: loaded {model_path}")


def run(mini_batch):
    print(f"run method start: {__file__}, run({len(mini_batch)} rows)")
    missing = [c for c in ["id", *FEATURE_COLUMNS] if c not in mini_batch.columns]
    if missing:
        raise KeyError(f"mini-batch lacks column(s) {missing}; it has {list(mini_batch.columns)}")
    if len(mini_batch) == 0:
        return pd.DataFrame({"id": pd.Series(dtype="int64"), "prediction": pd.Series(dtype="int64"),
                             "probability": pd.Series(dtype="float64")})

    # All rows of the mini-batch in one call.
    features = mini_batch[FEATURE_COLUMNS].to_numpy(dtype=np.float32)
    labels, probabilities = g_session.run(["label", "probabilities"], {g_input_name: features})

    return pd.DataFrame({
        "id": mini_batch["id"].to_numpy(),
        "prediction": labels.astype(np.int64),
        "probability": np.round(probabilities[:, 1].astype(np.float64), 6),
    }, columns=RESULT_COLUMNS)
