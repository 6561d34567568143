"""A TabularDataset script: echoes each row's id with the mini-batch's dtypes and partition values."""
import hashlib


def init():
    pass


def run(mini_batch, mini_batch_context):
    signature = hashlib.sha1(str(list(mini_batch.dtypes.items())).encode()).hexdigest()[:8]
    out = mini_batch[["id"]].copy()
    out["dtypes"] = signature
    out["batch"] = mini_batch_context.minibatch_index
    keys = list(mini_batch_context.partition_key_value or {})
    if keys:   # PRS appends the partition columns at the end of the DataFrame
        assert list(mini_batch.columns[-len(keys):]) == keys, list(mini_batch.columns)
    for key, value in (mini_batch_context.partition_key_value or {}).items():
        out[key] = value
    return out
