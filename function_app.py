"""The Functions app: triggers only. Each turns its binding into one value,
calls one service function and maps the outcome to the trigger's semantics.

Importing this module reads no setting and opens no connection.
"""

from __future__ import annotations

import json

import azure.functions as func

from shared.health import health

app = func.FunctionApp()


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health_route(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous liveness check."""
    return func.HttpResponse(
        json.dumps(health()), status_code=200, mimetype="application/json"
    )
