"""Test functions. In-process tests read :data:`CALLS`; node processes persist what they did as
blobs ``<system container>/calls/<id>/<node>-<invocation>`` when a message asks for it."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import azure.functions as func

from shared.service import runtime
bp = func.Blueprint()
CALLS: list[dict[str, Any]] = []
_lock = threading.Lock()


def record(function: str, **fields: Any) -> None:
    with _lock:
        CALLS.append({"function": function, "at": time.monotonic(), **fields})


def calls(function: str) -> list[dict[str, Any]]:
    with _lock:
        return [c for c in CALLS if c["function"] == function]


@bp.queue_trigger(arg_name="msg", queue_name="%PARALLELRUN_BATCH_QUEUE%",
                  connection="AzureWebJobsStorage")
def work(msg: func.QueueMessage, context: Any) -> None:
    raw = msg.get_body()
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    record("work", id=body.get("id"), body=raw, message_id=msg.id,
           dequeue_count=msg.dequeue_count, invocation_id=context.invocation_id,
           function_name=context.function_name)
    time.sleep(float(body.get("sleep", 0)))
    if body.get("persist"):
        rt = runtime.current()
        rt.storage.container(rt.settings.system_container).upload_blob(
            f"calls/{body['id']}/{rt.node_id}-{context.invocation_id}", b"", overwrite=True)
    if body.get("fail"):
        raise RuntimeError(f"message {body.get('id')} asked to fail")


@bp.blob_trigger(arg_name="blob", path="%PARALLELRUN_REQUESTS_CONTAINER%/{name}",
                 connection="AzureWebJobsStorage", source="EventGrid")
def on_request(blob: func.InputStream) -> None:
    data = blob.read()
    record("on_request", name=blob.name, data=data, length=blob.length)
    if data.startswith(b"fail"):
        raise RuntimeError(f"blob {blob.name} asked to fail")


def _json(value: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(value), status_code=status, mimetype="application/json")


@bp.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"status": "ok"})


@bp.route(route="jobs/{job_id}", methods=["GET"])
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"job_id": req.route_params["job_id"], "params": dict(req.params),
                  "url": req.url, "header": req.headers.get("x-test")})


@bp.route(route="jobs", methods=["POST"])
def post_job(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"received": req.get_json(), "method": req.method}, status=201)


@bp.route(route="files/{*rest}")
def files(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"rest": req.route_params.get("rest"), "method": req.method})


@bp.route(route="items/{item_id:int}/{view?}", methods=["GET"])
def items(req: func.HttpRequest) -> func.HttpResponse:
    return _json(dict(req.route_params))


@bp.route(route="async/{x}", methods=["GET"])
async def async_route(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"async {req.route_params['x']}", status_code=202)


@bp.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")
