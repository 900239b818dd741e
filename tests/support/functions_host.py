"""Test-side helpers for the local Functions host (``local.functions_host``).

``TEST_APP`` is a small throw-away Functions app, written into a temporary directory
by ``write_test_app``, so the host's behaviour is tested independently of the real
app: a blob trigger, timers, HTTP routes at every auth level and an Event Grid
trigger, and a blob trigger with the Event Grid source, each recording what it
received as one JSON line in ``RECORD_FILE``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from local.functions_host import FunctionsHost
from local.functions_host.storage import StorageConnection, resolve_connection
from tests.support.azureml import wait_until

HostFactory = Callable[..., FunctionsHost]

# A schedule that never comes during a test (midnight, January 1st).
NEVER = "0 0 0 1 1 *"

TEST_APP = '''
"""A throw-away Functions app for the local host's tests."""

import json
import os
import threading
import time

import azure.functions as func
from azurefunctions.extensions.bindings import blob

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
_lock = threading.Lock()


def record(kind, **fields):
    line = json.dumps({"kind": kind, "at": time.time(), **fields}, default=str)
    with _lock, open(os.environ["RECORD_FILE"], "a", encoding="utf-8") as out:
        out.write(line + "\\n")


@app.blob_trigger(arg_name="client", path="%WATCH_CONTAINER%/{name}", connection="TEST_STORAGE")
def on_blob(client: blob.BlobClient) -> None:
    content = client.download_blob().readall().decode("utf-8")
    record(
        "blob",
        name=client.blob_name,
        container=client.container_name,
        etag=client.get_blob_properties().etag,
        content=content,
        client_type=f"{type(client).__module__}.{type(client).__name__}",
    )
    if content.startswith("fail"):
        raise RuntimeError(f"refusing {client.blob_name}")


@app.blob_trigger(
    arg_name="client",
    path="%EVENT_CONTAINER%/{name}",
    connection="TEST_STORAGE",
    source=func.BlobSource.EVENT_GRID,
)
def on_blob_event(client: blob.BlobClient) -> None:
    content = client.download_blob().readall().decode("utf-8")
    record(
        "blob_event",
        name=client.blob_name,
        container=client.container_name,
        etag=client.get_blob_properties().etag,
        content=content,
    )
    if content.startswith("fail"):
        raise RuntimeError(f"refusing {client.blob_name}")


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    started = time.time()
    time.sleep(float(os.environ.get("TICK_SECONDS", "0")))
    record("tick", start=started, end=time.time(), past_due=timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
def on_start(timer: func.TimerRequest) -> None:
    record("startup", past_due=timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", use_monitor=True)
def monitored(timer: func.TimerRequest) -> None:
    record("monitored", past_due=timer.past_due, status=timer.schedule_status)


@app.route(route="hello/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params['name']}")


@app.route(route="items/{id:int}/{*rest}", methods=["GET", "POST"])
def item(req: func.HttpRequest) -> func.HttpResponse:
    answer = {
        "method": req.method,
        "url": req.url,
        "route_params": dict(req.route_params),
        "params": dict(req.params),
        "x_test": req.headers.get("x-test"),
        "body": req.get_body().decode("utf-8"),
    }
    return func.HttpResponse(
        json.dumps(answer),
        status_code=201,
        mimetype="application/json",
        headers={"X-Handled-By": "item"},
    )


@app.route(route="files/{name}", auth_level=func.AuthLevel.ANONYMOUS)
def file_by_name(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"file {req.route_params['name']}")


@app.route(route="files/latest", auth_level=func.AuthLevel.ANONYMOUS)
def latest_file(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("the latest file")


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.route(route="boom", auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom on purpose")


@app.event_grid_trigger(arg_name="event")
def on_event(event: func.EventGridEvent) -> None:
    data = event.get_json()
    record(
        "event",
        id=event.id,
        topic=event.topic,
        subject=event.subject,
        event_type=event.event_type,
        event_time=event.event_time.isoformat() if event.event_time else None,
        data_version=event.data_version,
        data=data,
    )
    if isinstance(data, dict) and data.get("fail"):
        raise RuntimeError(f"event {event.id} fails on purpose")
'''


def write_test_app(directory: Path, source: str = TEST_APP) -> Path:
    """Write a Functions app (``function_app.py`` + ``host.json``) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "function_app.py").write_text(source, encoding="utf-8")
    (directory / "host.json").write_text(json.dumps({"version": "2.0"}), encoding="utf-8")
    return directory


def app_values(connection_string: str, record_file: Path, **overrides: str) -> dict[str, str]:
    """App settings for ``TEST_APP`` on one storage account, with a container of its own."""
    return {
        "AzureWebJobsStorage": connection_string,
        "TEST_STORAGE": connection_string,
        "WATCH_CONTAINER": f"watch-{uuid.uuid4().hex[:12]}",
        "EVENT_CONTAINER": f"events-{uuid.uuid4().hex[:12]}",
        "TICK_SCHEDULE": NEVER,
        "TICK_SECONDS": "0",
        "RECORD_FILE": str(record_file),
        **overrides,
    }


@dataclass
class HostedApp:
    """The throw-away app in a temporary directory, its settings and its records."""

    app_dir: Path
    state_dir: Path
    values: dict[str, str]
    records: Records

    @property
    def container(self) -> str:
        return self.values["WATCH_CONTAINER"]


@dataclass
class Records:
    """The JSON lines the test app wrote."""

    path: Path

    def all(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in self.all()
            if r["kind"] == kind and all(r.get(k) == v for k, v in match.items())
        ]

    def wait_for(
        self, kind: str, count: int = 1, *, timeout: float = 30.0, **match: Any
    ) -> list[dict[str, Any]]:
        return wait_until(
            lambda: self.of(kind, **match),
            lambda found: len(found) >= count,
            what=f"{count} '{kind}' record(s) matching {match}",
            timeout=timeout,
        )


def host_status(host: FunctionsHost) -> dict[str, Any]:
    response = requests.get(
        f"{host.base_url}/admin/host/status",
        headers={"x-functions-key": host.master_key},
        timeout=10,
    )
    response.raise_for_status()
    status: dict[str, Any] = response.json()
    return status


def settle_blob_trigger(host: FunctionsHost, function: str, *, timeout: float = 30.0) -> None:
    """Wait for two more complete container scans with nothing left in flight.

    Every blob version present before this call has then been either handled (receipt
    written) or submitted and finished: a positive signal that nothing more will fire
    for it, instead of sleeping and hoping.
    """
    start = host_status(host)["blobTriggers"][function]["scans"]
    wait_until(
        lambda: host_status(host)["blobTriggers"][function],
        lambda s: s["scans"] >= start + 2 and s["inFlight"] == 0,
        what=f"two more scans of {function} with nothing in flight",
        timeout=timeout,
    )


def poison_messages(connection_string: str, container: str) -> list[dict[str, Any]]:
    """Poison messages the host wrote for blobs of ``container``."""
    connection: StorageConnection = resolve_connection("TEST", {"TEST": connection_string})
    messages = connection.queue("webjobs-blobtrigger-poison").peek(32)
    decoded = [json.loads(m.text) for m in messages]
    return [m for m in decoded if m.get("ContainerName") == container]
