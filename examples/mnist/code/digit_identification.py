"""ParallelRunStep entry script: identify handwritten digits in PNG files with an ONNX model.

Written against Azure ML's ParallelRunStep contract, so it runs unchanged on an AmlCompute cluster
or on ParallelRun Functions:

* ``init()`` runs once per scoring process and loads the registered model "mnist";
* ``run(mini_batch)`` gets a list of local file paths and returns one line per file,
  ``"<file name>: <digit>"``, which the ``append_row`` output action appends to the output file.

The model expects 28x28 grayscale images as 784 float32 values scaled to 0..1.
"""

import argparse
import os

import numpy as np
import onnxruntime
from azureml.core import Model
from PIL import Image

IMAGE_SIZE = 28


def init():
    global g_session, g_input_name

    # Resolve the registered model to a local path (a file, or a folder holding the .onnx file):
    # a v2 parallel job binds it in program_arguments (--model ${{inputs.mnist_model}}); a v1
    # ParallelRunStep names the registered model.
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--model")
    model_path = parser.parse_known_args()[0].model or Model.get_model_path("mnist")
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


def preprocess(image_path):
    """28x28 grayscale pixels of one image as 784 float32 values in 0..1."""
    with Image.open(image_path) as img:
        gray = img.convert("L")
        if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
            gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), resample=Image.Resampling.LANCZOS)
        return np.asarray(gray, dtype=np.float32).reshape(IMAGE_SIZE * IMAGE_SIZE) / np.float32(255.0)


def run(mini_batch):
    print(f"run method start: {__file__}, run({len(mini_batch)} files)")
    if len(mini_batch) == 0:
        return []

    # Prepare every image, then score the whole mini-batch in one call.
    batch = np.stack([preprocess(image) for image in mini_batch]).astype(np.float32, copy=False)
    labels = g_session.run(["label"], {g_input_name: batch})[0]

    result_list = []
    for image, digit in zip(mini_batch, labels):
        result_list.append(f"{os.path.basename(image)}: {int(digit)}")
    return result_list
