"""Sleeps SLOW_SECONDS (default 0.5) per mini-batch and returns each file's name as its row.

With CANCEL_API set (the API's base URL), mini-batch CANCEL_AT cancels its own job through
``POST /api/jobs/<id>/cancel`` and then keeps running: a user pressing cancel while it runs.
"""
import os
import time
import urllib.request

from azureml.core import Run


def init():
    pass


def run(mini_batch, mini_batch_context):
    api = os.environ.get("CANCEL_API")
    if api and mini_batch_context.minibatch_index == int(os.environ.get("CANCEL_AT", "0")):
        url = f"{api}/api/jobs/{Run.get_context().id}/cancel"
        with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=30):
            pass
        time.sleep(float(os.environ.get("AFTER_CANCEL_SECONDS", "1.0")))
    time.sleep(float(os.environ.get("SLOW_SECONDS", "0.5")))
    return [os.path.basename(p) for p in mini_batch]
