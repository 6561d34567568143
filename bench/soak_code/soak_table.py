"""The soak's table script: returns each row's id (one line per input row)."""


def init():
    pass


def run(mini_batch):
    return mini_batch[["id"]]
