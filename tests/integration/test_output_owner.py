"""A job owns its output: two jobs never write one output folder. A second job naming the output
of an unfinished job (or a folder inside or around it) is refused with 409 naming the owner; once
the owner has finished a new job may take the output over, and the old job then says so instead
of showing the new job's rows."""

from __future__ import annotations

import httpx

from shared.local.host import LocalHost
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.storage import Storage

from .conftest import put_files, submit


def spec(code: str, container: str, output: str, **extra) -> dict:
    return {"name": "owner", "entry_script": "misbehave.py", "source_directory": code,
            "inputs": [f"{container}/"], "mini_batch_size": "5", "arguments": ["--mode", "none"],
            "output": output, **extra}


def test_an_output_has_one_owner(host: LocalHost, api: httpx.Client, storage: Storage,
                                 code: str) -> None:
    put_files(storage, "ownedin", {f"o{i:03d}.txt": b"x" for i in range(10)})
    put_files(storage, "ownedsmall", {f"s{i:03d}.txt": b"x" for i in range(5)})
    storage.ensure_container("owned")        # an output container must exist at submit
    first = submit(api, spec(code, "ownedin", "owned/shared/run",
                             arguments=["--mode", "slow", "--delay", "2"]))
    # while the first is not finished: the same folder, one inside it, one around it
    for output in ("owned/shared/run", "owned/shared/run/inner", "owned/shared", "owned/"):
        r = api.post("/api/jobs", json=spec(code, "ownedsmall", output))
        assert r.status_code == 409, (output, r.text)
        assert r.json()["owner"] == first and first in r.json()["error"]
    r = api.post(f"/api/jobs/{first}/resubmit", json={})          # resubmit keeps the output
    assert r.status_code == 409 and "--set output=" in r.json()["error"], r.text
    assert submit(api, spec(code, "ownedsmall", "owned/shared/other"))   # a sibling is fine
    ledger = Ledger(storage.ledger)
    assert jobs.status(storage, ledger, first)["state"] in ("queued", "running")   # not finished
    host.drain(timeout_s=60)
    assert jobs.status(storage, ledger, first)["rows"] == 10
    # the owner finished: a new job may take the output over
    second = submit(api, spec(code, "ownedsmall", "owned/shared/run"))
    host.drain(timeout_s=60)
    assert api.get(f"/api/jobs/{second}/results?head=100").json()["rows"] == \
        [f"s{i:03d}.txt" for i in range(5)]
    old = api.get(f"/api/jobs/{first}").json()
    assert old["output"]["replaced_by"] == second and second in old["output"]["note"]
    r = api.get(f"/api/jobs/{first}/results")
    assert r.status_code == 410 and f"output replaced by job {second}" in r.json()["error"]
    assert api.get(f"/api/jobs/{second}").json()["output"]["replaced_by"] is None
