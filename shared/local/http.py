"""The app's HTTP-triggered functions as an ASGI app, served by uvicorn on 127.0.0.1.

Routes are ``/<routePrefix>/<route>`` with the Functions host's route templates: ``{name}``,
``{name?}`` (optional), ``{name=default}``, ``{*rest}`` (catch-all) and ``{name:constraint}``
(the constraint is ignored; only the name is used). Literal segments match case-insensitively and
more specific templates win (literals before parameters before optionals before catch-alls). A
function without a ``methods`` list accepts every method. A path or method no function declares
gets a 404 JSON answer, as from the Functions host.

Authorization levels: by default every route is anonymous on 127.0.0.1, as with the Functions Core
Tools. With a local key (app setting ``PARALLELRUN_LOCAL_KEY``, ``parallelrun up --require-key``),
every route whose ``authLevel`` is not ``anonymous`` answers 401 unless the request carries the key,
as Azure's function keys are sent: the ``x-functions-key`` header or the ``code`` query parameter.
A body larger than ``max_body_bytes`` is refused (413) before it is read past that size.
"""

from __future__ import annotations

import hmac
import logging
import re
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import uvicorn
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from shared.local.invocation import FunctionSpec, StatsBook

log = logging.getLogger("parallelrun.local.http")

_TOKEN = re.compile(r"\{(\*{1,2})?([A-Za-z_]\w*)([^}?=]*)(?:=([^}]*))?(\?)?\}")
# precedence of one segment kind, lower wins (ASP.NET Core routing order)
LITERAL, MIXED, PARAMETER, OPTIONAL, CATCH_ALL = range(5)


@dataclass(frozen=True)
class Route:
    """One HTTP function's compiled route template."""

    template: str
    pattern: re.Pattern[str]
    defaults: tuple[tuple[str, str], ...]
    rank: tuple[int, ...]
    methods: frozenset[str] | None
    spec: FunctionSpec

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        params = dict(self.defaults)
        params.update({k: v for k, v in found.groupdict().items() if v is not None})
        return params


def compile_template(template: str, prefix: str) -> tuple[re.Pattern[str], dict[str, str],
                                                          tuple[int, ...]]:
    """Regex, defaults and precedence rank of ``/<prefix>/<template>``."""
    regex, defaults, rank = "", {}, []
    for segment in [s for s in f"{prefix}/{template}".split("/") if s]:
        token = _TOKEN.fullmatch(segment)
        if token and token.group(1):
            regex += f"(?:/(?P<{token.group(2)}>.*))?"
            rank.append(CATCH_ALL)
        elif token and (token.group(5) or token.group(4) is not None):
            regex += f"(?:/(?P<{token.group(2)}>[^/]+))?"
            if token.group(4) is not None:
                defaults[token.group(2)] = token.group(4)
            rank.append(OPTIONAL)
        elif token:
            regex += f"/(?P<{token.group(2)}>[^/]+)"
            rank.append(PARAMETER)
        else:
            parts = _TOKEN.split(segment)
            regex += "/" + "".join(
                re.escape(p) if i % 6 == 0 else (f"(?P<{p}>[^/]+)" if i % 6 == 2 else "")
                for i, p in enumerate(parts) if p is not None)
            rank.append(MIXED if len(parts) > 1 else LITERAL)
    return re.compile((regex or "") + "/?", re.IGNORECASE), defaults, tuple(rank)


def build_routes(specs: Iterable[FunctionSpec], route_prefix: str) -> list[Route]:
    routes = []
    for spec in specs:
        template = str(spec.trigger.get("route") or spec.name).strip("/")
        methods = spec.trigger.get("methods")
        allowed = (frozenset(str(getattr(m, "value", m)).upper() for m in methods)
                   if methods else None)
        pattern, defaults, rank = compile_template(template, route_prefix)
        routes.append(Route(template, pattern, tuple(defaults.items()), rank, allowed, spec))
    return sorted(routes, key=lambda r: r.rank)


class FunctionsAsgiApp:
    """ASGI callable dispatching requests to HTTP-triggered functions (keys: see the module)."""

    def __init__(self, specs: Iterable[FunctionSpec], route_prefix: str, stats: StatsBook, *,
                 local_key: str | None = None, max_body_bytes: int | None = None) -> None:
        self.routes = build_routes(specs, route_prefix)
        self._stats = stats
        self._key = local_key
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        method, path = request.method.upper(), request.url.path
        for route in self.routes:
            params = route.match(path)
            if params is not None and (route.methods is None or method in route.methods):
                if not self._authorized(route, request):
                    return JSONResponse({"error": "this route needs the local key: send it as the "
                                         "x-functions-key header or the code query parameter "
                                         "(app setting PARALLELRUN_LOCAL_KEY)"}, status_code=401)
                body = await self._read_body(request)
                if body is None:
                    return JSONResponse({"error": f"the body is larger than {self._max_body:,} "
                                         "bytes, the most any route accepts (app settings "
                                         "PARALLELRUN_MAX_BODY_BYTES, PARALLELRUN_MAX_SNAPSHOT_BYTES)"},
                                        status_code=413)
                return await self._invoke(route, params, request, body)
        return JSONResponse({"error": f"no function serves {method} {path}"}, status_code=404)

    def _authorized(self, route: Route, request: Request) -> bool:
        level = route.spec.trigger.get("authLevel", "function")
        if not self._key or str(getattr(level, "value", level)).lower() == "anonymous":
            return True
        given = request.headers.get("x-functions-key") or request.query_params.get("code") or ""
        return hmac.compare_digest(given.encode(), self._key.encode())

    async def _read_body(self, request: Request) -> bytes | None:
        """The body, or None as soon as it is known to be over the limit."""
        limit = self._max_body
        declared = request.headers.get("content-length", "")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if limit is not None and size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _invoke(self, route: Route, params: dict[str, str], request: Request,
                      body: bytes) -> Response:
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        req = func.HttpRequest(request.method.upper(), sent_url(request), headers=headers,
                               params=dict(request.query_params), route_params=params,
                               body=body)
        spec = route.spec
        self._stats.add(spec.name, invocations=1)
        started = time.monotonic()
        try:
            if spec.is_async:
                result = await spec.user_function(**spec.arguments(req))
            else:
                result = await run_in_threadpool(spec.invoke, req)
            response = to_response(result)
        except Exception:  # noqa: BLE001 - a failing function is a 500, as in the host
            log.exception("http trigger %s %s %s failed after %.3fs", spec.name, req.method,
                          request.url.path, time.monotonic() - started)
            self._stats.add(spec.name, failures=1)
            return Response(status_code=500)
        self._stats.add(spec.name, successes=1)
        log.debug("http trigger %s %s %s -> %d in %.3fs", spec.name, req.method,
                  request.url.path, response.status_code, time.monotonic() - started)
        return response


def sent_url(request: Request) -> str:
    """The URL as the client sent it, still percent-encoded, as the Functions host passes it on.
    The ASGI adapter parses the URL again and then decodes its path: given a decoded path, it
    would cut a job id at a ``;``, ``?`` or ``#`` (``/api/jobs/%3Bx`` answered as ``/api/jobs/``)."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    base = f"{request.url.scheme}://{request.url.netloc}"
    return base + raw.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")


def to_response(result: Any) -> Response:
    """The HTTP answer for a function's return value."""
    if result is None:
        return Response(status_code=204)
    if isinstance(result, (str, bytes)):
        return Response(result, media_type="text/plain")
    if not isinstance(result, func.HttpResponse):
        raise TypeError("an HTTP function must return func.HttpResponse, "
                        f"not {type(result).__name__}")
    headers = {k: v for k, v in result.headers.items()}
    if not any(k.lower() == "content-type" for k in headers) and result.mimetype:
        charset = f"; charset={result.charset}" if result.charset else ""
        headers["Content-Type"] = f"{result.mimetype}{charset}"
    return Response(result.get_body(), status_code=result.status_code, headers=headers)


class HttpServer:
    """uvicorn serving an ASGI app on 127.0.0.1 from a background thread (port 0: any free port)."""

    def __init__(self, app: Any, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind(("127.0.0.1", port))
        except OSError as exc:
            self._sock.close()
            raise OSError(exc.errno, f"cannot serve HTTP on 127.0.0.1:{port}: {exc.strerror}") \
                from exc
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="http", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start on {self.url}")
            time.sleep(0.01)
        log.info("serving HTTP functions on %s", self.url)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(15)
        self._sock.close()
