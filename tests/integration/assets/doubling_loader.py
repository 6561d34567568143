"""The loader module of a small MLflow pyfunc model used by the tests: it doubles column x."""
import json
import os


class _Doubling:
    def __init__(self, factor):
        self.factor = factor

    def predict(self, frame, params=None):
        return frame["x"] * self.factor


def _load_pyfunc(data_path):
    with open(os.path.join(data_path, "factor.json")) as fh:
        return _Doubling(json.load(fh)["factor"])
