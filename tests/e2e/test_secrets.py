"""No secret in anything the app writes (issue 9), as a test.

One full scenario through the local Functions host, with lifecycle events on:
a dataset goes to LIVE, a broken one is rejected with a report, and the HTTP API
is called wrongly a few ways (no key, a wrong key, a body that is not JSON, a
SAS URL, a run that does not exist, a retry that is not allowed now). Then
everything the run left behind is collected: the host's log, the run records
(through the API, and the raw table entities), the lifecycle events the topic
received, every problem body the API answered, and the blobs the app and the
host wrote. None of it may contain a secret: the endpoint's keys, the host's
function, master and system keys, the storage account key or any SAS
signature, the topic key, the identity stand-in's header secret or a bearer
token it issued.

Logs and records are where secrets leak in practice (an exception quoting a
URL with its SAS, a request dumped with its headers, a setting echoed in an
error), and they are kept for months, read by more people than the keys are.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from local.azureml_emulator import AzureMLEmulator
from local.azurite import ACCOUNT_KEY, ACCOUNT_NAME
from local.functions_host import FunctionsHost
from local.functions_host.storage import StorageQueue, resolve_connection
from local.ports import free_port
from shared.composition import build
from shared.domain.runs import Run, RunState
from tests.e2e.conftest import make_host
from tests.support.app import jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, StaticTokenCredential, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]

HOSTS_CONTAINER = "azure-webjobs-hosts"
# Tokens of the identity stand-in: "emulator-" and token_urlsafe(24) (32 characters).
ISSUED_TOKEN = re.compile(r"emulator-[A-Za-z0-9_-]{32}")


@pytest.fixture
def settings(host_settings: dict[str, str], emulator: AzureMLEmulator) -> dict[str, str]:
    return {
        **host_settings,
        "SMOKE_PROMPT_COUNT": "1",
        "EVENTS_TOPIC_ENDPOINT": emulator.topic_endpoint,
        "EVENTS_TOPIC_KEY": emulator.topic_key,
    }


@pytest.fixture
def host(settings: dict[str, str], tmp_path: Path) -> Iterator[FunctionsHost]:
    with make_host(settings, tmp_path / "host") as running:
        yield running


def _run(settings: dict[str, str], run_id: str) -> Run:
    stored = build(settings).ledger.get(run_id)
    assert stored is not None
    return stored.run


def _run_of(settings: dict[str, str], name: str) -> Run | None:
    summaries, _ = build(settings).ledger.list_runs(None, 100, None)
    found = [s for s in summaries if s.dataset_name == name]
    return _run(settings, found[0].run_id) if found else None


def _endpoint_keys(settings: dict[str, str]) -> list[str]:
    """The endpoint's keys, asked of the workspace as any client would."""
    from azure.ai.ml import MLClient

    client = MLClient(
        StaticTokenCredential(),
        subscription_id=settings["AZURE_SUBSCRIPTION_ID"],
        resource_group_name=settings["AZURE_RESOURCE_GROUP"],
        workspace_name=settings["AZUREML_WORKSPACE"],
    )
    keys = client.online_endpoints.get_keys(settings["ENDPOINT_NAME"])
    return [str(keys.primary_key), str(keys.secondary_key)]


def _failing_requests(host: FunctionsHost, sas_url: str) -> list[requests.Response]:
    """The API called wrongly: each answer must be an error, and is kept for the scan."""
    key = {"x-functions-key": host.function_key}
    wrong = {"x-functions-key": "not-the-key"}
    answers = [
        requests.get(host.url("runs"), timeout=30),
        requests.get(host.url("runs"), headers=wrong, timeout=30),
        requests.get(host.url("runs"), params={"code": "not-the-key"}, timeout=30),
        requests.post(host.url("runs"), headers=key, data=b"{not json", timeout=30),
        requests.post(host.url("runs"), headers=key, json={"blob": sas_url}, timeout=30),
        requests.post(host.url("runs"), headers=key, json={"blob": "../up.jsonl"}, timeout=30),
        requests.post(host.url("runs"), headers=key, json={"blob": "none.jsonl"}, timeout=30),
        requests.get(host.url("runs/ft-not-a-run"), headers=key, timeout=30),
        requests.post(
            f"{host.base_url}/runtime/webhooks/eventgrid",
            params={"functionName": "azureml_event", "code": "not-the-key"},
            headers={"aeg-event-type": "Notification"},
            json=[],
            timeout=30,
        ),
    ]
    for answer in answers:
        assert answer.status_code >= 400, (answer.request.url, answer.status_code, answer.text)
    return answers


def _blobs(connection_string: str, container: str, prefix: str) -> dict[str, str]:
    service = BlobServiceClient.from_connection_string(connection_string)
    client = service.get_container_client(container)
    return {
        f"{container}/{blob.name}": client.download_blob(blob.name)
        .readall()
        .decode("utf-8", "replace")
        for blob in client.list_blobs(name_starts_with=prefix)
    }


def _entities(connection_string: str, table: str) -> list[str]:
    service = TableServiceClient.from_connection_string(connection_string)
    client = service.get_table_client(table)
    return [
        json.dumps({**entity, "metadata": entity.metadata}, default=str)
        for entity in client.list_entities()
    ]


def test_nothing_the_app_writes_holds_a_secret(
    host: FunctionsHost,
    settings: dict[str, str],
    emulator: AzureMLEmulator,
    emulator_admin: EmulatorAdmin,
) -> None:
    storage = settings["DATASET_STORAGE"]
    container = settings["DATASET_CONTAINER"]
    blobs = BlobServiceClient.from_connection_string(storage)
    upload = blobs.get_blob_client(container, "secret-scan.jsonl")
    upload.upload_blob(jsonl(text_examples(12, f"secrets {uuid.uuid4().hex}")))
    blobs.get_blob_client(container, "broken.jsonl").upload_blob(b'{"prompt": "x"}\nnot json\n')

    live = wait_until(
        lambda: _run_of(settings, "secret-scan.jsonl"),
        lambda run: run is not None and run.state.terminal,
        what="the dataset to go through",
        timeout=120,
    )
    assert live is not None and live.state is RunState.LIVE, live
    rejected = wait_until(
        lambda: _run_of(settings, "broken.jsonl"),
        lambda run: run is not None and run.state.terminal,
        what="the broken dataset to be rejected",
    )
    assert rejected is not None and rejected.state is RunState.REJECTED
    # Every lifecycle event of both runs went out (the outbox is empty).
    for run_id in (live.run_id, rejected.run_id):
        wait_until(
            functools.partial(_run, settings, run_id),
            lambda found: found.published == len(found.timeline),
            what=f"the events of {run_id} to be published",
        )

    sas = generate_blob_sas(
        ACCOUNT_NAME,
        container,
        "secret-scan.jsonl",
        account_key=ACCOUNT_KEY,
        permission=BlobSasPermissions(read=True),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    answers = _failing_requests(host, f"{upload.url}?{sas}")
    key = {"x-functions-key": host.function_key}
    records = [
        requests.get(host.url(f"runs/{run.run_id}"), headers=key, timeout=30).text
        for run in (live, rejected)
    ]
    listing = requests.get(host.url("runs"), headers=key, timeout=30).text
    written: dict[str, str] = {
        "host log": host.log_text(),
        "run listing (API)": listing,
        **{f"run record {i} (API)": text for i, text in enumerate(records)},
        **{
            f"table entity {i}": text
            for i, text in enumerate(
                _entities(settings["AzureWebJobsStorage"], settings["RUN_TABLE"])
            )
        },
        **{
            f"event {e['id']}": json.dumps(e)
            for run in (live, rejected)
            for e in emulator_admin.topic_events(subject=run.run_id)
        },
        **{
            f"answer {a.status_code} to {a.request.method} {a.request.path_url}": json.dumps(
                {"headers": dict(a.headers), "body": a.text}
            )
            for a in answers
        },
        **_blobs(storage, settings["WORK_CONTAINER"], "_autopilot/"),
        **_blobs(
            settings["AzureWebJobsStorage"],
            HOSTS_CONTAINER,
            f"blobreceipts/{host.host_id}/Host.Functions.dataset_uploaded/{container}/",
        ),
        **_blobs(settings["AzureWebJobsStorage"], HOSTS_CONTAINER, f"timers/{host.host_id}/"),
    }
    # The scan sees what it should: the run, its events, its report, the failures.
    everything = "\n".join(written.values())
    assert live.run_id in written["host log"] and live.run_id in written["run listing (API)"]
    assert any(name.startswith("event ") for name in written)
    assert any(name.endswith(".report.json") for name in written)
    assert any(name.startswith("answer 400") for name in written)
    assert "Executed 'Functions.start_run'" in everything

    secrets = {
        "endpoint key": _endpoint_keys(settings),
        "function key": [host.function_key],
        "master key": [host.master_key],
        "Event Grid system key": [host.system_key("eventgrid_extension")],
        "storage account key": [ACCOUNT_KEY],
        "topic key": [settings["EVENTS_TOPIC_KEY"]],
        "identity header secret": [emulator.identity_env()["IDENTITY_HEADER"]],
    }
    leaks = [
        f"{what} in {where}"
        for where, text in written.items()
        for what, values in secrets.items()
        if any(value and value in text for value in values)
    ]
    leaks += [f"a SAS signature in {where}" for where, text in written.items() if "sig=" in text]
    leaks += [
        f"an issued bearer token in {where}"
        for where, text in written.items()
        if ISSUED_TOKEN.search(text)
    ]
    assert not leaks, leaks
    # The values scanned for are the ones the app was given (the host's settings
    # file holds them), so a clean scan is not a scan for the wrong strings.
    given = (host.state_dir / "local.settings.json").read_text(encoding="utf-8")
    for what in ("storage account key", "topic key", "identity header secret"):
        assert all(value in given for value in secrets[what]), what
    assert all(value for values in secrets.values() for value in values)


def test_a_failed_queue_request_of_the_host_names_no_sas() -> None:
    """The host writes poison messages with an account SAS in the URL's query; when
    storage does not answer, the error (logged with its traceback by the blob
    trigger) must not quote that URL, as ``requests`` does."""
    port = free_port()  # nothing listens there
    account = f"http://127.0.0.1:{port}/{ACCOUNT_NAME}"
    connection = resolve_connection(
        "STORAGE",
        {
            "STORAGE": f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint={account};QueueEndpoint={account};"
        },
    )
    queue = StorageQueue(connection, "webjobs-blobtrigger-poison", timeout=5)
    with pytest.raises(ConnectionError) as caught:
        queue.put("{}")
    logged = "".join(traceback.format_exception(caught.value))
    assert "webjobs-blobtrigger-poison" in logged
    assert "sig=" not in logged and ACCOUNT_KEY not in logged, logged
