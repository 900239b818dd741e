"""Telemetry of one full run (issue 12), read back from what the host process exported.

The local Functions host runs the app in a child process, so an in-memory
exporter there is out of the test's reach. The app's own setup path
(``configure_azure_monitor`` with the app's processors) is used as in
production, with two test-only ends: ``TELEMETRY_EXPORT_FILE`` adds
exporters that write every span, log record and metric as a JSON line to a
file (synchronously for spans and logs), and the connection string points at
a stand-in for Application Insights' ingestion endpoint in this process, which
keeps what Azure Monitor's exporter sends. A dataset then goes to LIVE, its
record is read through the API, and the API is asked to start a run from a
SAS URL (a secret handed to the app). Then:

- one span per trigger invocation: the blob trigger's (with the run id), the
  timer's, the HTTP route's (with the run id of ``runs/{id}``);
- one ``reconcile`` span per reconcile step of the run, each with its run id,
  the state found, the actions decided and the state left, covering every
  state the run went through; every span inside one of them (the Azure SDKs'
  and HTTP requests' own) and every log record of the app emitted in them, or
  naming the run, carries the run id;
- the metrics: state transitions, time in each state, smoke and evaluation
  outcomes;
- no secret in any of it, nor in what reached the ingestion stand-in: the
  secrets of ``test_secrets.py``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from local.azureml_emulator import AzureMLEmulator
from local.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from shared.composition import build
from shared.domain.runs import Run, RunState
from tests.e2e.conftest import make_host
from tests.e2e.test_secrets import ISSUED_TOKEN, _endpoint_keys
from tests.support.app import jsonl, text_examples
from tests.support.azureml import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]

# A SAS signature or a function key in a query that was not scrubbed.
UNSCRUBBED_QUERY = re.compile(r"(?i)\b(?:sig|code)=(?!\[REDACTED\])[^&\s\"']+")


class Ingestion:
    """A stand-in for Application Insights' ingestion endpoint: accepts every batch
    and keeps its body."""

    def __init__(self) -> None:
        bodies = self.bodies = []  # type: list[str]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                text = raw.decode("utf-8", "replace")
                bodies.append(text)
                items = max(1, text.count("\n") + 1)
                answer = json.dumps({"itemsReceived": items, "itemsAccepted": items, "errors": []})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def connection_string(self) -> str:
        port = self._server.server_address[1]
        return (
            f"InstrumentationKey={uuid.uuid4()};IngestionEndpoint=http://127.0.0.1:{port}/;"
            f"LiveEndpoint=http://127.0.0.1:{port}/"
        )

    def __enter__(self) -> Ingestion:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def ingestion() -> Iterator[Ingestion]:
    with Ingestion() as running:
        yield running


@pytest.fixture
def export_file(tmp_path: Path) -> Path:
    return tmp_path / "telemetry.jsonl"


@pytest.fixture
def settings(
    host_settings: dict[str, str],
    emulator: AzureMLEmulator,
    ingestion: Ingestion,
    export_file: Path,
) -> dict[str, str]:
    return {
        **host_settings,
        "SMOKE_PROMPT_COUNT": "1",
        "EVENTS_TOPIC_ENDPOINT": emulator.topic_endpoint,
        "EVENTS_TOPIC_KEY": emulator.topic_key,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string,
        "TELEMETRY_EXPORT_FILE": str(export_file),
        # Every trace kept (the distro's default samples), no statsbeat to Microsoft.
        "OTEL_TRACES_SAMPLER": "always_on",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    }


def _exported(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _run_of(settings: dict[str, str], name: str) -> Run | None:
    ledger = build(settings).ledger
    summaries, _ = ledger.list_runs(None, 100, None)
    found = [s for s in summaries if s.dataset_name == name]
    stored = ledger.get(found[0].run_id) if found else None
    return stored.run if stored else None


def _attributes(item: dict[str, Any]) -> dict[str, Any]:
    return dict(item.get("attributes") or {})


def _metric_points(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Every data point's attributes, by metric name, across all exports."""
    points: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        for resource in item.get("resource_metrics", []):
            for scope in resource.get("scope_metrics", []):
                for metric in scope.get("metrics", []):
                    for point in metric["data"]["data_points"]:
                        points.setdefault(metric["name"], []).append(point["attributes"])
    return points


def _assert_trigger_spans(spans: list[dict[str, Any]], run_id: str) -> None:
    """One SERVER span per trigger invocation; the run's carry its id."""
    triggers = [s for s in spans if "faas.trigger" in _attributes(s)]
    uploaded = [s for s in triggers if s["name"] == "dataset_uploaded"]
    assert [_attributes(s).get("run.id") for s in uploaded] == [run_id]
    assert all(s["kind"] == "SpanKind.SERVER" for s in triggers)
    assert any(_attributes(s)["faas.trigger"] == "timer" for s in triggers)
    got = [s for s in triggers if s["name"] == "get_run_route"]
    assert [_attributes(s).get("run.id") for s in got] == [run_id]
    assert any(s["name"] == "start_run_route" for s in triggers)


def _assert_metrics(exports: list[dict[str, Any]]) -> None:
    """State transitions, time in each state, smoke and evaluation outcomes."""
    points = _metric_points(exports)
    assert {"state": "LIVE"} in points["autopilot.run.transitions"]
    assert {"state": "TRAINING"} in points["autopilot.run.state_duration"]
    assert {"outcome": "passed"} in points["autopilot.smoke.outcomes"]
    assert {"outcome": "promote"} in points["autopilot.evaluation.outcomes"]


def _leaks(exported: dict[str, str], secrets: dict[str, list[str]]) -> list[str]:
    leaks = [
        f"{what} in {where}"
        for where, text in exported.items()
        for what, values in secrets.items()
        if any(value and value in text for value in values)
    ]
    leaks += [
        f"an unscrubbed query in {w}" for w, t in exported.items() if UNSCRUBBED_QUERY.search(t)
    ]
    leaks += [
        f"an issued bearer token in {w}" for w, t in exported.items() if ISSUED_TOKEN.search(t)
    ]
    return leaks


def test_one_run_is_traced_with_its_run_id_and_no_secret(
    settings: dict[str, str],
    emulator: AzureMLEmulator,
    ingestion: Ingestion,
    export_file: Path,
    tmp_path: Path,
) -> None:
    storage, container = settings["DATASET_STORAGE"], settings["DATASET_CONTAINER"]
    with make_host(settings, tmp_path / "host") as host:
        blobs = BlobServiceClient.from_connection_string(storage)
        upload = blobs.get_blob_client(container, "traced.jsonl")
        upload.upload_blob(jsonl(text_examples(12, f"telemetry {uuid.uuid4().hex}")))
        run = wait_until(
            lambda: _run_of(settings, "traced.jsonl"),
            lambda found: found is not None and found.state.terminal,
            what="the dataset to go through",
            timeout=120,
        )
        assert run is not None and run.state is RunState.LIVE, run
        run_id = run.run_id
        key = {"x-functions-key": host.function_key}
        record = requests.get(host.url(f"runs/{run_id}"), headers=key, timeout=30)
        assert record.status_code == 200
        sas = generate_blob_sas(
            ACCOUNT_NAME,
            container,
            "traced.jsonl",
            account_key=ACCOUNT_KEY,
            permission=BlobSasPermissions(read=True),
            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
        )
        refused = requests.post(
            host.url("runs"), headers=key, json={"blob": f"{upload.url}?{sas}"}, timeout=30
        )
        assert refused.status_code >= 400, refused.text
        # The LIVE step's span is written when that reconcile ends.
        wait_until(
            lambda: _exported(export_file),
            lambda items: any(
                i["signal"] == "span"
                and i["name"] == "reconcile"
                and _attributes(i).get("state.after") == "LIVE"
                for i in items
            ),
            what="the span of the step to LIVE",
        )
        secrets = {
            "endpoint key": _endpoint_keys(settings),
            "function key": [host.function_key],
            "master key": [host.master_key],
            "Event Grid system key": [host.system_key("eventgrid_extension")],
            "storage account key": [ACCOUNT_KEY],
            "SAS signature": [sas.split("sig=", 1)[1]],
            "topic key": [settings["EVENTS_TOPIC_KEY"]],
            "identity header secret": [emulator.identity_env()["IDENTITY_HEADER"]],
        }
    # The host has stopped: metrics and Azure Monitor's batches are flushed.
    items = _exported(export_file)
    spans = [i for i in items if i["signal"] == "span"]
    logs = [i for i in items if i["signal"] == "log"]
    by_id = {s["context"]["span_id"]: s for s in spans}

    _assert_trigger_spans(spans, run_id)

    # One span per reconcile step, each with the run id, the state and the action.
    steps = [s for s in spans if s["name"] == "reconcile" and _attributes(s)["run.id"] == run_id]
    assert all(_attributes(s).get("action") for s in steps if _attributes(s).get("leased"))
    left = {_attributes(s).get("state.after") for s in steps}
    assert {e.state.value for e in run.timeline[2:]} <= left, left
    acted = {_attributes(s).get("action") for s in steps}
    assert {"prepare_data,submit_job", "create_deployment", "shift_traffic"} & acted, acted
    # Each step is inside a trigger invocation's span (the timer's or the blob's).
    for step in steps:
        parent = by_id.get(step["parent_id"])
        assert parent is not None and "faas.trigger" in _attributes(parent), step

    # Everything inside a step of the run carries its id: spans and log records.
    def in_step(span_id: str | None) -> bool:
        while span_id in by_id:
            span = by_id[span_id]
            if span["name"] == "reconcile" and _attributes(span).get("run.id") == run_id:
                return True
            span_id = span["parent_id"]
        return False

    inner = [s for s in spans if in_step(s["context"]["span_id"])]
    assert len(inner) > len(steps)  # the SDKs' own spans are there too
    assert all(_attributes(s).get("run.id") == run_id for s in inner), [
        (s["name"], _attributes(s)) for s in inner if _attributes(s).get("run.id") != run_id
    ]
    # The host's own lines (written around the invocation, "Executed 'Functions.X' ...")
    # are not the app's.
    app_logs = [r for r in logs if not str(r["body"]).startswith(("Executed '", "Executing '"))]
    run_logs = [r for r in app_logs if in_step(r["span_id"]) or run_id in str(r["body"])]
    assert len(run_logs) >= len(run.timeline) - 2  # a line per state change, at least
    assert all(_attributes(r).get("run.id") == run_id for r in run_logs), [
        r for r in run_logs if _attributes(r).get("run.id") != run_id
    ]

    _assert_metrics([i for i in items if i["signal"] == "metrics"])

    # No secret, in the file or in what Azure Monitor's exporter sent.
    assert ingestion.bodies, "nothing reached the ingestion stand-in"
    exported = {
        "exported file": export_file.read_text(encoding="utf-8"),
        **{f"ingestion batch {i}": body for i, body in enumerate(ingestion.bodies)},
    }
    assert run_id in exported["exported file"]
    leaks = _leaks(exported, secrets)
    assert not leaks, leaks
    assert all(value for values in secrets.values() for value in values)
