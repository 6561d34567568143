"""One row per file: the mini-batch's index, its partition values and the file's blob name
(the part of its local path after the input's folder, ``/<input name>/``)."""


def init():
    pass


def run(mini_batch, mini_batch_context):
    values = ",".join(f"{k}={v}" for k, v in (mini_batch_context.partition_key_value or {}).items())
    folder = f"/{mini_batch_context.dataset}/"
    return [f"{mini_batch_context.minibatch_index} {values} {str(path).split(folder, 1)[1]}"
            for path in mini_batch]
