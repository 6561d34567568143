"""The API's docs page (``GET /api/docs``), served entirely by the app: a small HTML page and its
script and style sheet (package data in ``static/``, under ``/api/docs/static/``) that render the
OpenAPI document. It makes no request to another origin, and its Content-Security-Policy says so
to the browser as well.

In Azure every route but health needs the function key; a page opened as ``/api/docs?code=KEY``
passes the key on to its assets and to the document it reads.
"""

from __future__ import annotations

import html
from importlib import resources
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

PATH = "/api/docs"
STATIC = f"{PATH}/static"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
               ".svg": "image/svg+xml"}
_FILES = resources.files("shared.service.apidocs") / "static"
ASSETS = {p.name: p for p in _FILES.iterdir() if p.name.endswith(tuple(MEDIA_TYPES))}

router = APIRouter(include_in_schema=False)


def page(openapi_url: str, code: str | None) -> str:
    """The page's HTML; with ``code``, every URL it loads carries the key."""
    query = f"?code={quote(code, safe='')}" if code else ""
    text = (_FILES / "index.html").read_text(encoding="utf-8")
    return (text.replace("{static}", html.escape(STATIC)).replace("{query}", html.escape(query))
            .replace("{openapi}", html.escape(openapi_url)))


@router.get(PATH, response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    body = page(request.app.openapi_url, request.query_params.get("code"))
    return HTMLResponse(body, headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})


@router.get(STATIC + "/{name}")
def asset(name: str) -> Response:
    """One of the page's files (only those shipped with it: a name is never a path)."""
    found = ASSETS.get(name)
    if found is None:
        return JSONResponse({"error": f"no docs asset {name[:80]!r}"}, status_code=404)
    media_type = MEDIA_TYPES[name[name.rfind("."):]]
    return Response(found.read_bytes(), media_type=media_type,
                    headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})
