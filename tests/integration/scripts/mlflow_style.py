"""A batch-scoring entry script as the Azure ML v1/v2 MLflow samples write it: the model folder
from Model.get_model_path (v1) or from --model ${{inputs.model}} (v2), loaded with mlflow."""
import argparse
import os

import mlflow
import pandas as pd
from azureml.core import Model


def init():
    global model, where
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--model")
    path = parser.parse_known_args()[0].model
    where = "argument" if path else "get_model_path"
    model = mlflow.pyfunc.load_model(path or Model.get_model_path("mlf"))


def run(mini_batch):
    values = [float(open(p).read()) for p in mini_batch]
    predictions = model.predict(pd.DataFrame({"x": values}))
    return [f"{os.path.basename(p)} {float(y)} {where}" for p, y in zip(mini_batch, list(predictions))]
