"""Prints and logs its whole environment in init(), as some samples do; rows are the file names."""
import json
import os

from azureml_user.parallel_run import EntryScript


def init():
    print(json.dumps(dict(os.environ)))
    EntryScript().logger.info("environment: %s", dict(os.environ))
    with open(os.path.join(EntryScript().output_dir, "environment.json"), "w") as fh:
        json.dump(dict(os.environ), fh)


def run(mini_batch):
    return [os.path.basename(p) for p in mini_batch]
