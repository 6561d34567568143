"""The test function app: one FunctionApp registering the test blueprint (like the real app)."""

import azure.functions as func

from tests.integration.hostapp.blueprint import bp

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(bp)
