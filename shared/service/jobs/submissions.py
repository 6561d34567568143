"""Jobs submitted by uploading a spec (JSON or YAML) to the requests container.

A blob trigger has nobody to answer, so the outcome is written next to the system's records:
``<system container>/request-receipts/<blob name>.json`` holds the job id, or the spec errors.
The same limits as for the HTTP API apply (:mod:`shared.limits`); a refusal's receipt names them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from shared.errors import SpecError, SubmitterError
from shared.limits import check_spec_bytes
from shared.service.jobs import lifecycle as jobs
from shared.service.ledger.store import Ledger
from shared.storage import Storage

log = logging.getLogger("parallelrun.requests")


def receipt_name(blob_name: str) -> str:
    return f"request-receipts/{blob_name.split('/', 1)[-1]}.json"


def submit_blob(storage: Storage, ledger: Ledger, blob_name: str, data: bytes,
                size: int | None = None) -> dict:
    """Submit the spec in ``data`` (the blob's first bytes; ``size``: the whole blob's, if known);
    write and return the receipt. Invalid specs are not retried."""
    try:
        check_spec_bytes(max(size or 0, len(data)), storage.settings.limits)
        job = jobs.submit(storage, ledger, data, plan_now=True)
        receipt: dict[str, Any] = {"request": blob_name, "job_id": job.job_id, "state": job.state}
        log.info("request submitted: %s -> job %s", blob_name, job.job_id)
    except SpecError as exc:
        receipt = {"request": blob_name, "error": "invalid job spec", "errors": exc.errors}
        log.warning("request refused: %s: %s", blob_name, exc)
    except SubmitterError as exc:
        receipt = {"request": blob_name, "error": str(exc)}
        log.warning("request refused: %s: %s", blob_name, exc)
    storage.system.upload_blob(receipt_name(blob_name), json.dumps(receipt, indent=2).encode(),
                               overwrite=True)
    return receipt
