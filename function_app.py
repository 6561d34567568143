"""The one FunctionApp: registers the blueprints in functions/ (nothing else)."""

import azure.functions as func

from functions import finalizer, http_api, planner, poison, submissions, sweep, worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
for blueprint in (http_api.bp, planner.bp, worker.bp, finalizer.bp, submissions.bp, poison.bp,
                  sweep.bp):
    app.register_functions(blueprint)
