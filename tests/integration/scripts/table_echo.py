"""A TabularDataset script: echoes each row's id with the mini-batch's dtypes and partition values."""
import hashlib


def init():
    pass


def run(mini_batch, mini_batch_context):
    signature = hashlib.sha1(str(list(mini_batch.dtypes.items())).encode()).hexdigest()[:8]
    out = mini_batch[["id"]].copy()
    out["dtypes"] = signature
    out["batch"] = mini_batch_context.minibatch_index
    for key, value in (mini_batch_context.partition_key_value or {}).items():
        out[key] = value
    return out
