"""For delimited-option tests: one row per input row: first column, column names, newline count."""


def init():
    pass


def run(mini_batch):
    names = ",".join(mini_batch.columns)
    return [f"{row.iloc[0]} {names} {str(row.iloc[1]).count(chr(10)) + 1}"
            for _, row in mini_batch.iterrows()]
