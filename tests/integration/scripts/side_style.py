"""A PRS entry script with side inputs: their paths come through its arguments, as in PRS
(``arguments=["--labels_dir", labels_config]``) and v2 (``--labels ${{inputs.labels}}``)."""
import argparse
import os


def _tree(folder):
    return ",".join(sorted(f"{os.path.relpath(os.path.join(d, f), folder)}={open(os.path.join(d, f)).read()}"
                           for d, _, files in os.walk(folder) for f in files))


def init():
    global seen
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--one")
    parser.add_argument("--lookup")
    args, _ = parser.parse_known_args()
    seen = [f"labels[{_tree(args.labels)}]"]
    if args.one:
        seen.append(f"one[{os.path.basename(args.one)}={open(args.one).read()}]")
    if args.lookup:
        seen.append(f"lookup[{open(args.lookup).read()}]")
    try:
        with open(os.path.join(args.labels, "planted.txt"), "w") as fh:
            fh.write("x")
        seen.append("writable")
    except OSError:
        seen.append("read-only")


def run(mini_batch):
    return [f"{os.path.basename(p)} {' '.join(seen)}" for p in mini_batch]
