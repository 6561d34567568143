"""The soak's file script: sleeps --delay s per mini-batch and returns each file's name.

Every process also starts a child in init() that would sleep for ten minutes, and a grandchild that
leaves the process group with setsid: the soak checks that none of them outlives its scoring
process (a timeout, a kill, a shutdown)."""
import argparse
import os
import subprocess
import sys
import time

args = None


def init():
    global args
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--marker", default="parallelrun-soak-child")
    args, _ = parser.parse_known_args()
    code = f"import time; time.sleep(600)  # {args.marker}"
    subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def run(mini_batch):
    time.sleep(args.delay)
    return [os.path.basename(p) for p in mini_batch]
