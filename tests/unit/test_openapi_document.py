"""The OpenAPI document of the HTTP API, read as a client reads it.

It is a valid OpenAPI 3.1 document whose schemas are valid JSON Schema; every route the app serves
is in it (computed from ``api.app.routes``, so a route added later is covered: see
:func:`problems`) with a named schema for its success answer, its errors, the function-key
security and its 401, except the anonymous routes of the function app; the spec schemas take the
examples users submit; and the docs page loads nothing from another origin.
"""

from __future__ import annotations

import functools
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jsonschema_rs
import pytest
import yaml
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.routing import APIRoute, iter_route_contexts
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR
from starlette.routing import Mount, Route

from shared import v2job
from shared.local.host import load_app
from shared.service import api
from shared.service.apidocs import bodies, page
from shared.service.apidocs.answers import Health, documented

ROOT = Path(__file__).resolve().parents[2]
# Routes the document leaves out (include_in_schema=False): the document itself and pages for
# browsers, which are HTML (the docs page and its assets, the web view under /api/ui).
BROWSER_PAGES = ("/api/docs", "/api/ui")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return api.app.openapi()


def route_prefix() -> str:
    return json.loads((ROOT / "host.json").read_text())["extensions"]["http"]["routePrefix"]


@functools.cache
def anonymous_paths() -> frozenset[str]:
    """The routes the function app serves without a key, as the app's paths."""
    out = set()
    for function in load_app().get_functions():
        for binding in json.loads(function.get_function_json())["bindings"]:
            if binding.get("type") == "httpTrigger" and str(binding.get("authLevel")).lower() == "anonymous":
                out.add(f"/{route_prefix()}/{binding['route']}")
    return frozenset(out)


def component(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any] | None:
    ref = schema.get("$ref", "")
    return doc["components"]["schemas"].get(ref.rsplit("/", 1)[-1]) if ref else None


def problems(app: FastAPI) -> list[str]:
    """What is missing from ``app``'s document, for every route ``app`` serves (those of included
    routers too)."""
    doc = app.openapi()
    found, anonymous = [], anonymous_paths()
    for route in iter_route_contexts(app.routes):
        path = route.path_format if isinstance(route.original_route, APIRoute) else route.path
        if isinstance(route.original_route, APIRoute) and route.include_in_schema:
            for method in sorted(route.methods):
                operation = doc["paths"].get(path, {}).get(method.lower())
                if operation is None:
                    found.append(f"{method} {path}: not in the document")
                else:
                    found += [f"{method} {path}: {p}" for p in operation_problems(doc, path, operation, anonymous)]
        elif isinstance(route.original_route, (APIRoute, Route, Mount)):
            if path != app.openapi_url and not path.startswith(BROWSER_PAGES):
                found.append(f"{path}: left out of the document, but not a page for browsers {BROWSER_PAGES}")
        else:
            found.append(f"{route.original_route!r}: a route of a kind the document cannot describe")
    return found


def operation_problems(doc: dict[str, Any], path: str, operation: dict[str, Any],
                       anonymous: frozenset[str]) -> list[str]:
    responses = operation.get("responses", {})
    found = []
    if not path.startswith(f"/{route_prefix()}/"):
        found.append(f"the path is not under the route prefix /{route_prefix()}")
    ok = [code for code in responses if code.startswith("2")]
    for code in ok:
        content = responses[code].get("content", {})
        if "application/json" in content or not content:
            if component(doc, content.get("application/json", {}).get("schema", {})) is None:
                found.append(f"its {code} answer has no named schema (documented(MODEL, ...))")
        elif any(c.get("schema") != {"type": "string"} for c in content.values()):
            found.append(f"its {code} answer is text, but not a string schema (documented(None, media_type=))")
    if not ok:
        found.append("no success answer")
    security = operation.get("security", doc.get("security"))
    if (security == []) != (path in anonymous):
        found.append(f"security {security} but the function app serves it "
                     f"{'without' if path in anonymous else 'with'} a key")
    expected = {"503"} | ({"401"} if security else set()) | ({"404"} if "{job_id}" in path else set()) | (
        {"413", "422"} if "requestBody" in operation else set())
    found += [f"no {code} answer" for code in sorted(expected - set(responses))]
    for code, answer in responses.items():
        if code.startswith(("4", "5")):
            schema = component(doc, answer.get("content", {}).get("application/json", {}).get("schema", {}))
            if schema is None or "error" not in schema.get("required", []):
                found.append(f"its {code} answer is not a named error schema")
    return found


# -- the document ------------------------------------------------------------------------------
def test_the_document_is_valid_openapi_31_with_valid_json_schemas(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1")
    OPENAPI_31_VALIDATOR.validate(doc)
    for name, schema in doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name
    broken = {**doc, "paths": {"/api/health": {"get": {"responses": {"200": {"content": {}}}}}}}
    with pytest.raises(jsonschema_rs.ValidationError):
        OPENAPI_31_VALIDATOR.validate(broken)   # an answer without its description


def test_every_route_the_app_serves_is_documented(doc: dict[str, Any]) -> None:
    assert problems(api.app) == []
    assert doc["paths"]   # and there are routes at all
    assert anonymous_paths() == {"/api/health"}


def test_an_undocumented_route_is_caught() -> None:
    app = FastAPI(openapi_url="/api/openapi.json", docs_url=None, redoc_url=None)
    app.router.routes.extend(api.app.router.routes)
    api.document.install(app)
    assert problems(app) == []
    added = APIRouter()

    @added.get("/api/jobs/{job_id}/trace")
    def trace(job_id: str) -> dict[str, str]:
        return {}

    @added.get("/api/jobs/{job_id}/events/{path}", **documented(Health, anonymous=True))
    def event(job_id: str, path: str) -> dict[str, str]:
        return {}

    app.include_router(added)

    @app.get("/api/jobs/{job_id}/graph", include_in_schema=False)
    def graph(job_id: str) -> dict[str, str]:
        return {}

    @app.get("/api/ui/jobs", include_in_schema=False)
    def ui() -> str:
        return ""

    assert problems(app) == [
        "GET /api/jobs/{job_id}/trace: its 200 answer has no named schema (documented(MODEL, ...))",
        "GET /api/jobs/{job_id}/trace: no 404 answer",
        "GET /api/jobs/{job_id}/events/{path}: security [] but the function app serves it with a key",
        "GET /api/jobs/{job_id}/events/{path}: no 404 answer",
        "/api/jobs/{job_id}/graph: left out of the document, but not a page for browsers "
        "('/api/docs', '/api/ui')",
    ]


def test_the_function_key_is_the_security_scheme(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    assert {(s["type"], s["in"], s["name"]) for s in schemes.values()} == {
        ("apiKey", "header", "x-functions-key"), ("apiKey", "query", "code")}
    assert doc["security"] == [{name: []} for name in schemes]
    assert doc["servers"][0]["url"] == "/"


def test_each_error_has_its_named_shape(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert schemas["Conflict"]["required"] == ["error", "owner"]
    assert schemas["TooLarge"]["required"] == ["error"] and "limit" in schemas["TooLarge"]["properties"]
    assert schemas["Invalid"]["required"] == ["error", "errors"]
    assert schemas["FieldError"]["required"] == ["field", "message"]
    submit = doc["paths"]["/api/jobs"]["post"]["responses"]
    named = {code for code, a in submit.items() if component(doc, a["content"]["application/json"]["schema"])}
    assert named == set(submit) == {"202", "400", "404", "409", "413", "422", "401", "503"}
    assert "Location" in submit["202"]["headers"]
    assert "HTTPValidationError" not in schemas   # FastAPI's own 422 shape is not what the app answers


# -- the request bodies ------------------------------------------------------------------------
def validator(doc: dict[str, Any], name: str) -> Any:
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


@pytest.mark.parametrize("example,form", [("examples/mnist/job.yaml", "JobSpec"),
                                          ("examples/tabular/job.yaml", "JobSpec"),
                                          ("examples/mnist/parallel-job.yml", "V2PipelineJob")])
def test_the_examples_are_submissions_of_one_form(doc: dict[str, Any], example: str, form: str) -> None:
    spec = yaml.safe_load((ROOT / example).read_text())
    spec.setdefault("source_directory", "snapshot:" + "0" * 64) if form == "JobSpec" else None
    assert validator(doc, "JobSubmission").is_valid(spec)
    assert [f for f in ("JobSpec", "V2ParallelJob", "V2PipelineJob") if validator(doc, f).is_valid(spec)] == [form]
    node = spec["jobs"]["mnist_batch"] if form == "V2PipelineJob" else None
    if node is not None:   # the pipeline's node on its own is a parallel job
        assert validator(doc, "V2ParallelJob").is_valid(node)


def test_the_spec_schema_refuses_what_the_spec_refuses(doc: dict[str, Any]) -> None:
    submission = validator(doc, "JobSubmission")
    assert not submission.is_valid({"entry_script": "a.py", "inputs": []})
    assert not submission.is_valid({"entry_script": "a.py", "inputs": ["c/"], "node_count": 0})
    assert not submission.is_valid({"entry_script": "a.py", "inputs": ["c/"], "mini_batch_sise": 1})
    assert submission.is_valid({"entry_script": "a.py", "inputs": ["c/", {"container": "c", "prefix": "p/"}],
                                "arguments": ["--n", 3, True], "models": None, "output": "out/folder"})


def test_the_v2_schemas_name_the_fields_the_translator_takes() -> None:
    def names(model: Any) -> set[str]:
        return {f.alias or name for name, f in model.model_fields.items()}
    assert names(bodies.V2ParallelJob) == v2job.PARALLEL_JOB_FIELDS
    assert names(bodies.V2PipelineJob) == v2job.PIPELINE_JOB_FIELDS
    assert names(bodies.V2Task) == v2job.TASK_FIELDS


def test_overrides_are_any_spec_fields_or_null(doc: dict[str, Any]) -> None:
    overrides = validator(doc, "Overrides")
    assert overrides.is_valid({}) and overrides.is_valid({"mini_batch_size": "1", "output": None})
    assert not overrides.is_valid({"mini_batch_sise": "1"})
    assert set(doc["components"]["schemas"]["Overrides"]["properties"]) == set(
        doc["components"]["schemas"]["JobSpec"]["properties"])
    body = doc["paths"]["/api/jobs/{job_id}/resubmit"]["post"]["requestBody"]
    assert set(body["content"]) == {"application/json", "application/yaml", "text/yaml"}
    snapshot = doc["paths"]["/api/snapshots"]["post"]["requestBody"]["content"]
    assert snapshot == {"application/zip": {"schema": {"type": "string", "format": "binary"}}}


# -- the docs page -----------------------------------------------------------------------------
class Loads(HTMLParser):
    """Every URL a page loads by itself (scripts, style sheets, images, frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for key in ("src", "href") if tag in ("script", "link", "img", "iframe", "source") else ():
            if named.get(key):
                self.urls.append(str(named[key]))


def loads(html: str) -> list[str]:
    parser = Loads()
    parser.feed(html)
    return parser.urls


def get_page(query: str = "") -> Response:
    """The docs page's answer, from its handler (the page needs no storage)."""
    scope = {"type": "http", "method": "GET", "path": page.PATH, "query_string": query.encode(),
             "headers": [], "app": api.app}
    return page.docs(Request(scope))


def test_the_docs_page_loads_only_its_own_assets() -> None:
    r = get_page()
    assert r.status_code == 200 and r.media_type == "text/html"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    text = bytes(r.body).decode()
    urls = loads(text)
    assert sorted(urls) == [f"{page.STATIC}/{name}" for name in ("docs.css", "docs.js", "favicon.svg")]
    assert f'data-openapi="{api.app.openapi_url}"' in text
    for url in urls:
        asset = page.asset(url.rsplit("/", 1)[1])
        assert asset.status_code == 200 and str(asset.media_type).startswith(
            ("text/javascript", "text/css", "image/svg+xml"))
        # no URL of another origin (an SVG's namespace is a name, never fetched)
        body = bytes(asset.body).decode().replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"(https?:)?//[a-z0-9]", body), url
    assert page.asset("../__init__.py").status_code == 404
    assert page.asset("index.html").status_code == 404   # only the page's assets


def test_the_docs_page_passes_the_key_on_escaped() -> None:
    text = bytes(get_page("code=" + quote('k"><script>alert(1)</script>')).body).decode()
    assert "<script>alert" not in text
    assert set(loads(text)) == {f"{page.STATIC}/{name}?code=k%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E"
                                for name in ("docs.css", "docs.js", "favicon.svg")}
