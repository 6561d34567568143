"""``parallelrun demo``: Azure ML's PRS MNIST tutorial, replayed end to end on a private Azurite.

1. start Azurite (in memory, free ports) and the local host (``--nodes 2``, HTTP API);
2. render scikit-learn's digits as 28x28 PNGs (the label is in the file name), upload them,
   register the committed ONNX classifier as model ``mnist``, upload the entry script's folder;
3. submit ``examples/mnist/job.yaml`` through ``POST /api/jobs`` and show a live progress bar;
4. resubmit it with new data and parameters (one image, mini_batch_size 1, one process) through
   ``POST /api/jobs/{id}/resubmit``, without redefining the job;
5. print the first rows and the accuracy against the true labels; download the output file and
   the first job's logs into a local folder (``--out``, default ``./parallelrun-demo``), since the
   private Azurite stops with the demo, and end with one line naming that local file.
"""

from __future__ import annotations

import importlib.util
import secrets
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import yaml

from shared.cli.console import console, rows_table, watch
from shared.cli.main import upload_path
from shared.local import keys
from shared.local.azurite import Azurite, free_port, port_open
from shared.local.cluster import LocalCluster
from shared.service.results import download_folder, download_to
from shared.service.working import models, snapshots
from shared.settings import Settings
from shared.storage import Storage, blob_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mnist"
CONTAINER = "mnist-images"


def _digits_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mnist_digits", EXAMPLE / "digits.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise RuntimeError(f"{response.request.method} {response.request.url} -> "
                           f"{response.status_code}: {response.text}")
    return response.json()


def _run_job(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    accepted = _check(http.post(path, json=body))
    console.print(f"submitted [bold]{accepted['job_id']}[/bold] → {accepted['status_url']}",
                  soft_wrap=True)
    final = watch(lambda: _check(http.get(f"/api/jobs/{accepted['job_id']}")), timeout_s=900)
    if final["state"] != "succeeded":
        raise RuntimeError(f"job {final['job_id']} ended {final['state']}: {final.get('reason')}")
    return final


def run_demo(nodes: int = 2, port: int = 7071, out_dir: Path = Path("parallelrun-demo")) -> dict[str, Any]:
    digits = _digits_module()
    http_port = port if not port_open(port) else free_port()
    with tempfile.TemporaryDirectory(prefix="parallelrun-demo-") as tmp, Azurite() as azurite:
        settings = Settings(connection_string=azurite.connection_string,
                            scratch_dir=str(Path(tmp) / "scratch"),
                            local_key=secrets.token_urlsafe(32))   # the API takes only this client
        storage = Storage(settings)
        storage.ensure()
        console.rule("ParallelRun demo: the PRS MNIST tutorial on a local Azurite")
        console.print(f"Azurite on 127.0.0.1 ports {azurite.blob_port}/{azurite.queue_port}/{azurite.table_port}")

        images = Path(tmp) / "digits"
        labelled = digits.write_digit_pngs(images)
        upload_path(storage, images, f"{CONTAINER}/digits")
        model = models.register(storage, "mnist", EXAMPLE / "model" / "mnist.onnx")
        console.print(f"{len(labelled)} images in {CONTAINER}/digits/, model mnist version {model.version}")

        spec = yaml.safe_load((EXAMPLE / "job.yaml").read_text())
        spec["source_directory"] = snapshots.upload(storage, EXAMPLE / spec["source_directory"])

        with LocalCluster(settings, nodes=nodes, http_port=http_port,
                          log_dir=Path(tmp) / "logs") as cluster, \
                httpx.Client(base_url=cluster.http_url, timeout=60,
                             headers=keys.headers(settings.local_key)) as http:
            console.print(f"local host: {nodes} node(s), API on {cluster.http_url}/api", soft_wrap=True)
            first = _run_job(http, "/api/jobs", spec)
            single = f"digits/{Path(labelled[0][0]).name}"
            console.print(f"resubmitting with one image ({single}), mini_batch_size 1, one process")
            second = _run_job(http, f"/api/jobs/{first['job_id']}/resubmit", {
                "inputs": [{"container": CONTAINER, "files": [single]}],
                "mini_batch_size": "1", "process_count_per_node": 1})
            console.print(rows_table(_check(http.get(f"/api/jobs/{second['job_id']}/results",
                                                     params={"head": 1}))["rows"], "single image"))
            head = _check(http.get(f"/api/jobs/{first['job_id']}/results", params={"head": 10}))

        out = first["output"]
        saved = download_to(storage, out["container"], out["blob"],
                            out_dir.resolve() / Path(out["blob"]).name)
        download_folder(storage, out["container"], blob_path(out["prefix"], "logs"),
                        out_dir.resolve() / "logs")
        rows = saved.read_text().splitlines()
        correct = 0
        for row in rows:
            name, _, digit = row.rpartition(": ")
            correct += int(digit) == digits.label_from_filename(name)
        accuracy = correct / len(rows) if rows else 0.0
        console.print(rows_table(head["rows"], "first 10 rows"))
        summary = {"images": len(labelled), "rows": len(rows), "accuracy": accuracy,
                   "output": str(saved), "logs": str(saved.parent / "logs")}
        # the private Azurite stops now: name the local copies, which outlive it
        print(f"demo: {summary['images']} images, {summary['rows']} rows, "
              f"accuracy {summary['accuracy']:.3f}, output {summary['output']} "
              f"(logs in {summary['logs']})", flush=True)
        return summary
