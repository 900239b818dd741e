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

Each trigger runs inside one telemetry span (``_traced``): a no-op unless
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (``shared.composition.telemetry``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import azure.functions as func
from azurefunctions.extensions.bindings import blob

if TYPE_CHECKING:
    from shared.http.api import Reply

app = func.FunctionApp()
log = logging.getLogger("function_app")
Trigger = TypeVar("Trigger", bound=Callable[..., Any])


DEFAULT_RECONCILE_SCHEDULE = "0 */1 * * * *"  # NCRONTAB, seconds first: every minute


def _reconcile_schedule() -> str:
    return os.environ.get("RECONCILE_SCHEDULE", "").strip() or DEFAULT_RECONCILE_SCHEDULE


def _dataset_trigger_source() -> func.BlobSource:
    """Polling (logs and container scan) unless DATASET_TRIGGER_SOURCE=EventGrid."""
    wanted = os.environ.get("DATASET_TRIGGER_SOURCE", "").strip().lower()
    if wanted in ("eventgrid", "event_grid"):
        return func.BlobSource.EVENT_GRID
    return func.BlobSource.LOGS_AND_CONTAINER_SCAN


def _traced(trigger: Trigger) -> Trigger:
    """Run ``trigger`` inside a span named after it, with the run id of a ``runs/{id}``
    route. Put it under the binding decorators: they register what it returns, and
    ``functools.wraps`` keeps the signature and annotations the host binds by."""

    @functools.wraps(trigger)
    def invoke(*args: Any, **kwargs: Any) -> Any:  # the worker passes bindings by name
        from shared.composition import telemetry

        binding = next(iter((*args, *kwargs.values())), None)
        kind, run_id = "datasource", ""  # a blob
        if isinstance(binding, func.HttpRequest):
            kind, run_id = "http", binding.route_params.get("id", "")
        elif isinstance(binding, func.TimerRequest):
            kind = "timer"
        elif isinstance(binding, func.EventGridEvent):
            kind = "pubsub"
        with telemetry().span(trigger.__name__, run_id, **{"faas.trigger": kind}):
            return trigger(*args, **kwargs)

    return invoke  # type: ignore[return-value]


def _http(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(
        reply.text(), status_code=reply.status, headers=reply.headers, mimetype=reply.media_type
    )


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@_traced
def health_route(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous: up, and able to reach the run ledger (503 with the reason if not)."""
    from shared.composition import services
    from shared.http import api

    return _http(api.health(services))


@app.function_name("openapi")
@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@_traced
def openapi_route(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous: the OpenAPI document of these routes."""
    from shared.http import openapi

    return _http(openapi.reply())


@app.function_name("dashboard")
@app.route(route="ui/{file?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@_traced
def dashboard_route(req: func.HttpRequest) -> func.HttpResponse:
    """Anonymous: the dashboard's page and files (its API calls carry the key)."""
    from shared.http import dashboard

    return _http(dashboard.asset(req.route_params.get("file") or ""))


@app.function_name("start_run")
@app.route(route="runs", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@_traced
def start_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """Start a run from a blob of the dataset container."""
    from shared.composition import services
    from shared.http import api

    return _http(api.start_run(services, req.get_body()))


@app.function_name("list_runs")
@app.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@_traced
def list_runs_route(req: func.HttpRequest) -> func.HttpResponse:
    """A page of runs, newest first."""
    from shared.composition import services
    from shared.http import api

    return _http(api.list_runs(services, req.params))


@app.function_name("get_run")
@app.route(route="runs/{id}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
@_traced
def get_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """The whole record of a run."""
    from shared.composition import services
    from shared.http import api

    return _http(api.get_run(services, req.route_params.get("id", "")))


@app.function_name("cancel_run")
@app.route(route="runs/{id}/cancel", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@_traced
def cancel_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """Cancel a run."""
    from shared.composition import services
    from shared.http import api

    return _http(api.cancel_run(services, req.route_params.get("id", "")))


@app.function_name("retry_run")
@app.route(route="runs/{id}/retry", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@_traced
def retry_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """Retry a failed run from the step that failed."""
    from shared.composition import services
    from shared.http import api

    return _http(api.retry_run(services, req.route_params.get("id", "")))


@app.function_name("approve_run")
@app.route(route="runs/{id}/approve", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@_traced
def approve_run_route(req: func.HttpRequest) -> func.HttpResponse:
    """Let a run waiting for approval (over MAX_RUN_COST) go on."""
    from shared.composition import services
    from shared.http import api

    run_id = req.route_params.get("id", "")
    return _http(api.approve_run(services, run_id, req.get_body(), req.headers, req.params))


@app.function_name("rollback_run")
@app.route(route="runs/{id}/rollback", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@_traced
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
@_traced
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
@_traced
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
@_traced
def azureml_event(event: func.EventGridEvent) -> None:
    """An Azure ML RunCompleted / RunStatusChanged event: reconcile that run now."""
    from shared.composition import services
    from shared.pipeline.azureml_events import on_azureml_event

    data = event.get_json()
    outcome = on_azureml_event(services(), event.event_type, data if isinstance(data, dict) else {})
    log.info("azureml_event %s %s: %s", event.event_type, event.subject, outcome)
