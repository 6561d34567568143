"""A v2 parallel-job entry script, written the way the Azure ML v2 samples write them: argparse in
init(), the model's path from ${{inputs.model}}, a folder of its own from ${{outputs.NAME}}, and
rows returned for append_row_to."""
import argparse
import os
import sys


def init():
    global args, weights, flags
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--model", type=str, required=True)
    parser.add_argument("--threshold", type=float, default=0.0)
    parser.add_argument("--extras", type=str, required=True)
    args, _ = parser.parse_known_args()
    weights = open(args.model).read().strip()
    flags = " ".join(a for a in sys.argv[1:] if a.startswith("--"))


def run(mini_batch):
    rows = []
    for path in mini_batch:
        name = os.path.basename(path)
        with open(os.path.join(args.extras, name + ".seen"), "w") as fh:
            fh.write("seen")
        with open(path) as fh:
            rows.append(f"{name} {fh.read()} {weights} {args.threshold} | {flags}")
    return rows
