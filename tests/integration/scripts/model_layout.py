"""Reports what an entry script sees of its models, asked the ways v1 and v2 samples ask:
``AZUREML_MODEL_DIR`` joined with a folder's name or globbed, and ``Model.get_model_path``."""
import glob
import json
import os

from azureml.core import Model


def _opens_for_writing(path):
    try:
        os.close(os.open(path, os.O_WRONLY))   # writes nothing; refused unless it could
        return True
    except OSError:
        return False


def init():
    global seen
    model_dir = os.environ["AZUREML_MODEL_DIR"]
    everything = glob.glob(f"{model_dir}/**", recursive=True)
    seen = {"model_dir": model_dir,
            "files": sorted(os.path.relpath(p, model_dir) for p in everything if os.path.isfile(p)),
            "links": [p for p in everything if os.path.islink(p)],
            "resolved": all(os.path.realpath(p) == os.path.normpath(p) for p in everything),
            "writable": [p for p in everything if os.path.isfile(p) and _opens_for_writing(p)],
            "paths": {}}
    for name in filter(None, os.environ.get("ASK_FOR", "").split(",")):
        path = Model.get_model_path(name)
        seen["paths"][name] = path
        if os.path.isfile(path):
            seen.setdefault("contents", {})[name] = open(path).read()
    for spelled in filter(None, os.environ.get("JOIN", "").split(",")):
        seen.setdefault("joined", {})[spelled] = os.path.exists(os.path.join(model_dir, spelled))


def run(mini_batch):
    return [json.dumps(seen, sort_keys=True) for _ in mini_batch]
