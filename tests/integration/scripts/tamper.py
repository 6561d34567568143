"""An entry script that tries to change what it must not: its own code, and the model cache."""
import os
import tempfile

from azureml.core import Model
from azureml_user.parallel_run import EntryScript

HERE = os.path.dirname(os.path.abspath(__file__))


def init():
    global model_path
    model_path = Model.get_model_path("echo")


def _append(path):
    with open(path, "a") as fh:
        fh.write("# changed\n")


def _chmod_then_append(path):
    try:
        os.chmod(path, 0o666)
    except OSError:
        pass
    _append(path)


def _link_then_append(path):
    """A hard link in its own (writable) folder to the model's file, then a write through it."""
    mine = os.path.join(os.getcwd(), "linked-model")
    try:
        os.link(path, mine)
    except OSError as exc:
        raise PermissionError(f"link refused: {exc}") from exc
    _chmod_then_append(mine)


def _temp_file():
    with tempfile.NamedTemporaryFile("w", delete=True) as fh:
        fh.write("scratch of its own")


def _output_file():
    with open(os.path.join(EntryScript().output_dir, "mine.txt"), "w") as fh:
        fh.write("an output of its own")


ATTEMPTS = {
    "source-new-file": lambda: _append(os.path.join(HERE, "planted.py")),
    "source-change": lambda: _append(os.path.join(HERE, "frames.py")),
    "source-chmod-change": lambda: _chmod_then_append(os.path.join(HERE, "prs_style.py")),
    "source-remove": lambda: os.remove(os.path.join(HERE, "slow.py")),
    "model-change": lambda: _append(model_path),
    "model-chmod-change": lambda: _chmod_then_append(model_path),
    "model-remove": lambda: os.remove(model_path),
    "model-link-change": lambda: _link_then_append(model_path),
    "model-relative-change": lambda: _append(os.path.join("azureml-models", "echo", "1", "echo.txt")),
    "model-new-file": lambda: _append(os.path.join(os.path.dirname(model_path), "planted.bin")),
    "own-temp-file": _temp_file,
    "own-output-file": _output_file,
}


def run(mini_batch):
    results = []
    for name, attempt in ATTEMPTS.items():
        try:
            attempt()
            results.append(f"{name} ok")
        except OSError as exc:
            results.append(f"{name} {type(exc).__name__}")
    return results
