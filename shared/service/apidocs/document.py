"""The OpenAPI document of the app (``GET /api/openapi.json``): FastAPI's, plus what it cannot infer.

FastAPI documents each route from its decorator (:func:`~shared.service.apidocs.answers.documented`:
the answers' models, the hand-read request body). This adds, for every operation:

* the function-key security (the ``x-functions-key`` header or the ``code`` query parameter, as
  Azure Functions take them) and its 401, except where a route says ``security: []`` (health);
* 503 (every route reads storage), 413 for a route with a body, and for a route with a body or
  query parameters the one 422 shape (:class:`~shared.service.apidocs.answers.Invalid`), in place
  of FastAPI's own;
* the schemas of the request bodies (:mod:`shared.service.apidocs.bodies`).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from pydantic import TypeAdapter

from shared.service.apidocs import bodies
from shared.service.apidocs.answers import ERRORS, error_answer
from shared.service.apidocs.bodies import REF

SECURITY_SCHEMES = {
    "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key",
                    "description": "A function key (in Azure) or the local key (parallelrun up --require-key)"},
    "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code",
                         "description": "The same key as the code query parameter"},
}
KEYED: list[dict[str, list[str]]] = [{"functionKey": []}, {"functionKeyQuery": []}]
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
_FASTAPI_422 = ("HTTPValidationError", "ValidationError")


def build(app: FastAPI) -> dict[str, Any]:
    """The whole document for ``app``'s routes: FastAPI's own (:meth:`FastAPI.openapi`, rebuilt
    when routes change), completed."""
    doc = copy.deepcopy(FastAPI.openapi(app))
    doc["security"] = KEYED
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _FASTAPI_422:
        schemas.pop(name, None)
    schemas.update(bodies.schemas())
    schemas.update(error_schemas())
    components["securitySchemes"] = SECURITY_SCHEMES
    for operation in operations(doc):
        add_shared_answers(operation)
    return doc


def operations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in doc.get("paths", {}).values() for method, op in item.items() if method in METHODS]


def add_shared_answers(operation: dict[str, Any]) -> None:
    """The answers an operation has by being a route of this app (see the module)."""
    responses = operation.setdefault("responses", {})
    responses.pop("422", None)   # FastAPI's own: a path parameter alone cannot be invalid here
    if "requestBody" in operation or any(p.get("in") != "path" for p in operation.get("parameters", [])):
        responses["422"] = error_answer(422)
    if "requestBody" in operation:
        responses.setdefault("413", error_answer(413))
    if operation.get("security") != []:
        responses.setdefault("401", error_answer(401))
    responses.setdefault("503", error_answer(503))


def error_schemas() -> dict[str, Any]:
    """The error answers' schemas, by name, derived from their dataclasses."""
    named: dict[str, Any] = {}
    for model, _ in ERRORS.values():
        schema = TypeAdapter(model).json_schema(ref_template=REF, mode="serialization")
        named.update(schema.pop("$defs", {}))
        named[model.__name__] = schema
    return named


def install(app: FastAPI) -> None:
    """Serve :func:`build`'s document at the app's ``openapi_url`` (built again only when FastAPI
    builds its own again, i.e. when the routes changed)."""
    built: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def openapi() -> dict[str, Any]:
        base = FastAPI.openapi(app)
        if not built or built[0][0] is not base:
            built[:] = [(base, build(app))]
        return built[0][1]
    app.openapi = openapi  # type: ignore[method-assign]
