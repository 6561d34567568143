"""HTTP triggers: the API (FastAPI through the Functions ASGI adapter) and an anonymous health probe."""

import azure.functions as func

from shared.service import api

bp = func.Blueprint()
_asgi = func.AsgiMiddleware(api.app)


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _asgi.handle_async(req, context)


@bp.route(route="{*route}", methods=["GET", "POST"], auth_level=func.AuthLevel.FUNCTION)
async def http_api(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return await _asgi.handle_async(req, context)
