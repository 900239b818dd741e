"""The Functions app: triggers only. Each turns its binding into one value,
calls one service function and maps the outcome to the trigger's semantics:
a ``RetryableError`` (or a settings problem) escapes so the host retries and
logs it; everything else is recorded on the run by the service.

Importing this module opens no connection and reads one setting only,
``DATASET_TRIGGER_SOURCE``, because the blob trigger's source is part of the
function's shape that the host indexes (it has no ``%SETTING%`` form). Every
other setting is read on first use by ``shared.services.services()``.
"""

from __future__ import annotations

import json
import logging
import os

import azure.functions as func
from azurefunctions.extensions.bindings import blob

from shared.health import health

app = func.FunctionApp()
log = logging.getLogger("function_app")


def _dataset_trigger_source() -> func.BlobSource:
    """Polling (logs and container scan) unless DATASET_TRIGGER_SOURCE=EventGrid."""
    wanted = os.environ.get("DATASET_TRIGGER_SOURCE", "").strip().lower()
    if wanted in ("eventgrid", "event_grid"):
        return func.BlobSource.EVENT_GRID
    return func.BlobSource.LOGS_AND_CONTAINER_SCAN


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health_route(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous liveness check."""
    return func.HttpResponse(json.dumps(health()), status_code=200, mimetype="application/json")


@app.function_name("dataset_uploaded")
@app.blob_trigger(
    arg_name="client",
    path="%DATASET_CONTAINER%/{name}",
    connection="DATASET_STORAGE",
    source=_dataset_trigger_source(),
)
def dataset_uploaded(client: blob.BlobClient) -> None:
    """A blob landed in the dataset container: validate it, record a run, submit a job."""
    from shared.intake import accept_upload
    from shared.services import services

    result = accept_upload(services(), str(client.blob_name))
    log.info(
        "dataset_uploaded %s: %s %s %s",
        client.blob_name,
        result.outcome,
        result.run_id or "",
        result.detail.splitlines()[0] if result.detail else "",
    )
