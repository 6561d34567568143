"""The API's description: the OpenAPI document (``/api/openapi.json``) and the docs page that
renders it offline (``/api/docs``).

:mod:`~shared.service.apidocs.answers` (the answers' shapes and :func:`documented`, what a route
declares), :mod:`~shared.service.apidocs.bodies` (the hand-read request bodies),
:mod:`~shared.service.apidocs.document` (the document: what FastAPI cannot infer) and
:mod:`~shared.service.apidocs.page` (the docs page and its assets).
"""
