"""A DataFrame-in, DataFrame-out script written for pandas 1.x: it uses ``DataFrame.append``, which
pandas 2 removed, and says which pandas, numpy and pyarrow it ran with."""
import numpy as np
import pandas as pd
import pyarrow as pa


def init():
    pass


def run(mini_batch):
    out = pd.DataFrame(columns=["id", "double", "versions"])
    for row in mini_batch.itertuples():
        out = out.append({"id": row.id, "double": float(np.float64(row.x) * 2),
                          "versions": f"{pd.__version__}/{np.__version__}/{pa.__version__}"},
                         ignore_index=True)
    return out
