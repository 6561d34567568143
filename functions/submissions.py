"""Blob trigger: a job spec (JSON or YAML) uploaded to the requests container is submitted."""

import logging

import azure.functions as func

from shared.service import runtime
from shared.service.jobs import submissions

bp = func.Blueprint()
log = logging.getLogger("parallelrun.functions.submissions")


@bp.blob_trigger(arg_name="blob", path="%PARALLELRUN_REQUESTS_CONTAINER%/{name}",
                 connection="AzureWebJobsStorage", source=func.BlobSource.EVENT_GRID)
def submit_from_blob(blob: func.InputStream) -> None:
    rt = runtime.current()
    limit = rt.settings.limits.max_body_bytes   # read no more than one byte past the limit
    submissions.submit_blob(rt.storage, rt.ledger, blob.name or "", blob.read(limit + 1),
                              size=blob.length)
