"""Scores text files of comma-separated features with a scikit-learn model saved by joblib, the
way the ParallelRunStep samples write it (the model found with Model.get_model_path)."""

import os

import joblib
import numpy as np
from azureml.core.model import Model

model = None


def init():
    global model
    model = joblib.load(os.path.join(Model.get_model_path("iris-like"), "model.joblib"))


def run(mini_batch):
    results = []
    for path in mini_batch:
        with open(path) as fh:
            features = np.array([[float(x) for x in fh.read().split(",")]])
        results.append(f"{os.path.basename(path)} {int(model.predict(features)[0])}")
    return results
