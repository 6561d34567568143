"""Misbehaves on purpose, chosen by --mode: raise | flaky | sleep | exit | segfault | memory |
systemexit | short | slow (every mini-batch sleeps --delay s) | none. Files whose name contains "bad" trigger it (flaky: every mini-batch)."""
import argparse
import ctypes
import os
import time

from azureml_user.parallel_run import EntryScript

args = None


def init():
    global args
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="raise")
    parser.add_argument("--marker_dir", default="")
    parser.add_argument("--delay", type=float, default=0.0)
    args, _ = parser.parse_known_args()


def run(mini_batch, mini_batch_context):
    names = [os.path.basename(p) for p in mini_batch]
    print(f"scoring {names}")
    EntryScript().logger.info("mini-batch %d: %d files", mini_batch_context.minibatch_index, len(names))
    if "bad" in "".join(names) or args.mode == "flaky":
        if args.mode == "raise":
            raise ValueError(f"cannot score {names}")
        if args.mode == "flaky":
            marker = os.path.join(args.marker_dir, f"tried-{mini_batch_context.minibatch_index}")
            if not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("transient failure on the first try")
        if args.mode == "sleep":
            time.sleep(30)
        if args.mode == "exit":
            os._exit(3)
        if args.mode == "segfault":
            ctypes.string_at(0)
        if args.mode == "memory":
            raise MemoryError("simulated out of memory")
        if args.mode == "systemexit":
            raise SystemExit(42)
    if args.mode == "slow":
        time.sleep(args.delay)
    if args.mode == "short":
        return names[:-1]
    return names
