"""The Functions app: triggers only. Each turns its binding into one value,
calls one service function and maps the outcome to the trigger's semantics:
a ``RetryableError`` (or a settings problem) escapes so the host retries and
logs it; everything else is recorded on the run by the service. HTTP routes
hand the request's parts to one function of ``shared.http.api``, which answers
every outcome, errors included, as a ``Reply`` (status, JSON, headers).

Importing this module opens no connection and reads two settings only,
``DATASET_TRIGGER_SOURCE`` and ``RECONCILE_SCHEDULE``, tolerantly and with
defaults, because they shape the functions the host indexes (the blob
trigger's source has no ``%SETTING%`` form, and a ``%SETTING%`` schedule
would have no default). Every other setting is read on first use by
``shared.composition.services()``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import azure.functions as func
from azurefunctions.extensions.bindings import blob

if TYPE_CHECKING:
    from shared.http.api import Reply

app = func.FunctionApp()
log = logging.getLogger("function_app")


DEFAULT_RECONCILE_SCHEDULE = "0 */1 * * * *"  # NCRONTAB, seconds first: every minute


def _reconcile_schedule() -> str:
    return os.environ.get("RECONCILE_SCHEDULE", "").strip() or DEFAULT_RECONCILE_SCHEDULE


def _dataset_trigger_source() -> func.BlobSource:
    """Polling (logs and container scan) unless DATASET_TRIGGER_SOURCE=EventGrid."""
    wanted = os.environ.get("DATASET_TRIGGER_SOURCE", "").strip().lower()
    if wanted in ("eventgrid", "event_grid"):
        return func.BlobSource.EVENT_GRID
    return func.BlobSource.LOGS_AND_CONTAINER_SCAN


def _http(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(
        reply.text(), status_code=reply.status, headers=reply.headers, mimetype=reply.media_type
    )


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health_route(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous: up, and able to reach the run ledger (503 with the reason if not)."""
    from shared.composition import services
    from shared.http import api

    return _http(api.health(services))


@app.function_name("openapi")
@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi_route(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous: the OpenAPI document of these routes."""
    from shared.http import openapi

    return _http(openapi.reply())


@app.function_name("dashboard")
@app.route(route="ui/{file?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def dashboard_route(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous: the dashboard's page and files (its API calls carry the key)."""
    from shared.http import dashboard

    return _http(dashboard.asset(req.route_params.get("file") or ""))


@app.function_name("start_run")
@app.route(route="runs", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def start_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """Start a run from a blob of the dataset container."""
    from shared.composition import services
    from shared.http import api

    return _http(api.start_run(services, req.get_body()))


@app.function_name("list_runs")
@app.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_runs_route(req: func.HttpRequest) -> func.HttpResponse:
    """A page of runs, newest first."""
    from shared.composition import services
    from shared.http import api

    return _http(api.list_runs(services, req.params))


@app.function_name("get_run")
@app.route(route="runs/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def get_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """The whole record of a run."""
    from shared.composition import services
    from shared.http import api

    return _http(api.get_run(services, req.route_params.get("id", "")))


@app.function_name("cancel_run")
@app.route(route="runs/{id}/cancel", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def cancel_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """Cancel a run."""
    from shared.composition import services
    from shared.http import api

    return _http(api.cancel_run(services, req.route_params.get("id", "")))


@app.function_name("retry_run")
@app.route(route="runs/{id}/retry", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def retry_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """Retry a failed run from the step that failed."""
    from shared.composition import services
    from shared.http import api

    return _http(api.retry_run(services, req.route_params.get("id", "")))


@app.function_name("approve_run")
@app.route(route="runs/{id}/approve", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def approve_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """Let a run waiting for approval (over MAX_RUN_COST) go on."""
    from shared.composition import services
    from shared.http import api

    run_id = req.route_params.get("id", "")
    return _http(api.approve_run(services, run_id, req.get_body(), req.headers, req.params))


@app.function_name("rollback_run")
@app.route(route="runs/{id}/rollback", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
def rollback_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """Put back the model a LIVE run replaced, through a new rollback run."""
    from shared.composition import services
    from shared.http import api

    run_id = req.route_params.get("id", "")
    return _http(api.rollback_run(services, run_id, req.get_body(), req.headers, req.params))


@app.function_name("dataset_uploaded")
@app.blob_trigger(
    arg_name="client",
    path="%DATASET_CONTAINER%/{name}",
    connection="DATASET_STORAGE",
    source=_dataset_trigger_source(),
)
def dataset_uploaded(client: blob.BlobClient) -> None:
    """A blob landed in the dataset container: validate it, record a run, submit a job."""
    from shared.composition import services
    from shared.pipeline.intake import accept_upload

    result = accept_upload(services(), str(client.blob_name))
    log.info(
        "dataset_uploaded %s: %s %s %s",
        client.blob_name,
        result.outcome,
        result.run_id or "",
        result.detail.splitlines()[0] if result.detail else "",
    )


@app.function_name("reconcile_timer")
@app.timer_trigger(
    arg_name="timer", schedule=_reconcile_schedule(), run_on_startup=False, use_monitor=True
)
def reconcile_timer(timer: func.TimerRequest) -> None:
    """Reconcile every run that is due; the source of truth when events are lost."""
    from shared.composition import services
    from shared.pipeline.sweep import sweep

    result = sweep(services())
    log.info(
        "reconcile_timer swept %d due of %d active runs%s%s",
        result.due,
        result.active,
        " (past due)" if timer.past_due else "",
        f"; failed: {', '.join(result.failed)}" if result.failed else "",
    )


@app.function_name("azureml_event")
@app.event_grid_trigger(arg_name="event")
def azureml_event(event: func.EventGridEvent) -> None:
    """An Azure ML RunCompleted / RunStatusChanged event: reconcile that run now."""
    from shared.composition import services
    from shared.pipeline.azureml_events import on_azureml_event

    data = event.get_json()
    outcome = on_azureml_event(services(), event.event_type, data if isinstance(data, dict) else {})
    log.info("azureml_event %s %s: %s", event.event_type, event.subject, outcome)
