"""An entry script written against the real PRS API, as PRS users write them."""
import argparse
import os

from azureml.core import Model, Run
from azureml_user.parallel_run import EntryScript


def init():
    global model_text, args, run_ctx
    parser = argparse.ArgumentParser()
    parser.add_argument("--suffix", default="")
    parser.add_argument("--model_name", default="echo")
    args, _unknown = parser.parse_known_args()
    with open(Model.get_model_path(args.model_name)) as fh:
        model_text = fh.read().strip()
    run_ctx = Run.get_context()
    EntryScript().logger.info("init: model %s, output dir %s", model_text, EntryScript().output_dir)


def run(mini_batch):
    logger = EntryScript().logger
    logger.info("run: %d files", len(mini_batch))
    run_ctx.log("batch_size", len(mini_batch))
    results = []
    for path in mini_batch:
        with open(path) as fh:
            value = fh.read().strip()
        results.append(f"{os.path.basename(path)} {value} {model_text}{args.suffix} {os.environ.get('GREETING', '')}")
    return results
