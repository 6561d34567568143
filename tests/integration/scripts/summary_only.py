"""PRS's summary_only pattern: the script writes its own files to AZUREML_BI_OUTPUT_PATH."""
import os

from azureml_user.parallel_run import EntryScript


def init():
    pass


def run(mini_batch, mini_batch_context):
    out_dir = os.environ["AZUREML_BI_OUTPUT_PATH"]
    assert out_dir == EntryScript().output_dir
    name = f"batch_{mini_batch_context.minibatch_index:04d}.txt"
    with open(os.path.join(out_dir, name), "w") as fh:
        for path in mini_batch:
            fh.write(os.path.basename(path) + "\n")
    return [None] * len(mini_batch)
