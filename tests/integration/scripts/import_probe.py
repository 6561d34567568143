"""Reports which modules a scoring process can import (one row per module named in its input)."""

import importlib


def init():
    pass


def run(mini_batch):
    rows = []
    for path in mini_batch:
        with open(path) as fh:
            for name in fh.read().split():
                try:
                    importlib.import_module(name)
                    rows.append(f"{name} yes")
                except ImportError:
                    rows.append(f"{name} no")
    return rows
