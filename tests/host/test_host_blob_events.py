"""Blob triggers with the Event Grid source: the blob extension's webhook, its queue,
retries and poison; and BlobCreated events raised by the local storage-events topic."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from local.azurite import Azurite
from local.functions_host import FunctionsHost
from local.functions_host.blob_events import queue_name
from local.storage_events import StorageEvents, creating_api
from tests.support.azureml import wait_until
from tests.support.functions_host import HostedApp, HostFactory, host_status, poison_messages

pytestmark = pytest.mark.integration

FUNCTION = "on_blob_event"


@pytest.fixture
def container(hosted_app: HostedApp, azurite: Azurite) -> str:
    name = hosted_app.values["EVENT_CONTAINER"]
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(name)
    return name


@pytest.fixture
def events(azurite: Azurite) -> Iterator[StorageEvents]:
    with StorageEvents(azurite, retry_seconds=0.05, max_attempts=3) as topic:
        yield topic


def _upload(connection_string: str, container: str, name: str, data: bytes) -> str:
    with BlobServiceClient.from_connection_string(connection_string) as service:
        result = service.get_blob_client(container, name).upload_blob(data, overwrite=True)
        return str(result["etag"])


def _blob_created(azurite: Azurite, container: str, name: str, etag: str) -> dict[str, Any]:
    return {
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage"
        "/storageAccounts/devstoreaccount1",
        "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
        "eventType": "Microsoft.Storage.BlobCreated",
        "eventTime": "2024-05-01T12:00:00Z",
        "id": str(uuid.uuid4()),
        "data": {
            "api": "PutBlob",
            "eTag": etag.strip('"'),
            "blobType": "BlockBlob",
            "url": f"{azurite.blob_endpoint}/{container}/{name}",
        },
        "dataVersion": "",
        "metadataVersion": "1",
    }


def _post(host: FunctionsHost, events: list[dict[str, Any]], kind: str = "Notification") -> Any:
    return requests.post(
        host.blobs_url(FUNCTION), headers={"aeg-event-type": kind}, json=events, timeout=10
    )


def _trigger_status(host: FunctionsHost) -> dict[str, Any]:
    status: dict[str, Any] = host_status(host)["blobTriggers"][FUNCTION]
    return status


def _settled(host: FunctionsHost, **expected: int) -> dict[str, Any]:
    return wait_until(
        lambda: _trigger_status(host),
        lambda s: s["inFlight"] == 0 and all(s[k] >= v for k, v in expected.items()),
        what=f"{FUNCTION} to reach {expected}",
    )


def test_the_webhook_needs_the_blob_extension_key_and_answers_the_handshake(
    start_host: HostFactory,
) -> None:
    host = start_host()
    validation = {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/x",
        "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2024-05-01T12:00:00Z",
        "data": {"validationCode": "c0de"},
    }
    url = f"{host.base_url}/runtime/webhooks/blobs"
    params = {"functionName": f"Host.Functions.{FUNCTION}"}
    for code in (None, "wrong", host.system_key("eventgrid_extension"), host.function_key):
        denied = requests.post(
            url, params={**params, "code": code} if code else params, json=[validation], timeout=10
        )
        assert denied.status_code == 401
    answer = _post(host, [validation], "SubscriptionValidation")
    assert answer.status_code == 200 and answer.json() == {"validationResponse": "c0de"}
    # A scanned (polling) blob trigger has no webhook.
    other = requests.post(
        host.blobs_url("on_blob"), headers={"aeg-event-type": "Notification"}, json=[], timeout=10
    )
    assert other.status_code == 404


def test_a_blob_created_event_is_queued_then_runs_the_function_once(
    hosted_app: HostedApp, start_host: HostFactory, azurite: Azurite, container: str
) -> None:
    host = start_host()
    etag = _upload(azurite.connection_string, container, "a.jsonl", b"hello")

    answer = _post(host, [_blob_created(azurite, container, "a.jsonl", etag)])

    assert answer.status_code == 202
    [record] = hosted_app.records.wait_for("blob_event", name="a.jsonl")
    assert (record["container"], record["etag"], record["content"]) == (container, etag, "hello")
    status = _settled(host, succeeded=1)
    assert (status["source"], status["queued"], status["invocations"]) == ("EventGrid", 1, 1)
    assert status["queue"] == queue_name(host.host_id)
    # Event Grid-source triggers are not scanned: nothing else ran it.
    assert hosted_app.records.of("blob") == []


def test_events_for_other_blobs_are_ignored(
    hosted_app: HostedApp, start_host: HostFactory, azurite: Azurite, container: str
) -> None:
    host = start_host()
    other = _blob_created(azurite, "some-other-container", "x.jsonl", "0x1")
    deleted = dict(_blob_created(azurite, container, "y.jsonl", "0x2"))
    deleted["eventType"] = "Microsoft.Storage.BlobDeleted"

    assert _post(host, [other, deleted]).status_code == 202

    status = _settled(host, received=2)
    assert (status["ignored"], status["queued"], status["invocations"]) == (2, 0, 0)


def test_an_event_for_a_version_since_overwritten_is_dropped(
    hosted_app: HostedApp, start_host: HostFactory, azurite: Azurite, container: str
) -> None:
    host = start_host()
    old = _upload(azurite.connection_string, container, "b.jsonl", b"old")
    new = _upload(azurite.connection_string, container, "b.jsonl", b"new")

    assert _post(host, [_blob_created(azurite, container, "b.jsonl", old)]).status_code == 202
    _settled(host, dropped=1)
    assert _post(host, [_blob_created(azurite, container, "b.jsonl", new)]).status_code == 202

    [record] = hosted_app.records.wait_for("blob_event", name="b.jsonl")
    assert record["content"] == "new"
    assert _settled(host, succeeded=1)["invocations"] == 1


def test_a_failing_blob_is_tried_five_times_then_poisoned(
    hosted_app: HostedApp, start_host: HostFactory, azurite: Azurite, container: str
) -> None:
    host = start_host()
    etag = _upload(azurite.connection_string, container, "bad.jsonl", b"fail please")

    assert _post(host, [_blob_created(azurite, container, "bad.jsonl", etag)]).status_code == 202

    status = _settled(host, poisoned=1)
    assert (status["invocations"], status["failedAttempts"], status["succeeded"]) == (5, 5, 0)
    assert len(hosted_app.records.of("blob_event", name="bad.jsonl")) == 5
    [poison] = poison_messages(azurite.connection_string, container)
    assert (poison["BlobName"], poison["FunctionId"]) == ("bad.jsonl", f"Host.Functions.{FUNCTION}")


def test_the_storage_topic_delivers_blob_created_to_the_webhook_through_its_filters(
    hosted_app: HostedApp,
    start_host: HostFactory,
    azurite: Azurite,
    container: str,
    events: StorageEvents,
) -> None:
    host = start_host()
    prefix = f"/blobServices/default/containers/{container}/blobs/"
    events.subscribe(
        "datasets",
        host.blobs_url(FUNCTION),
        subject_begins_with=prefix,
        subject_not_begins_with=[f"{prefix}_autopilot/"],
    )
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(f"{container}-other")

    etag = _upload(events.connection_string, container, "via-proxy.jsonl", b"one")
    _upload(events.connection_string, container, "_autopilot/own.jsonl", b"app output")
    _upload(events.connection_string, f"{container}-other", "elsewhere.jsonl", b"other")
    _upload(azurite.connection_string, container, "direct.jsonl", b"no event")  # not proxied

    [record] = hosted_app.records.wait_for("blob_event", name="via-proxy.jsonl")
    assert record["etag"] == etag
    published = [p.event for p in events.published]
    assert {e["data"]["api"] for e in published} == {"PutBlob"}
    assert sorted(e["subject"].rsplit("/blobs/", 1)[1] for e in published) == [
        "_autopilot/own.jsonl",
        "elsewhere.jsonl",
        "via-proxy.jsonl",
    ]
    created = next(e for e in published if e["subject"].endswith("via-proxy.jsonl"))
    assert created["data"]["contentLength"] == 3 and created["data"]["eTag"] == etag.strip('"')
    subscription = events.subscriptions["datasets"]
    wait_until(lambda: len(subscription.delivered), lambda n: n == 1, what="one delivery")
    status = _settled(host, succeeded=1)
    assert (status["received"], status["invocations"]) == (1, 1)
    assert subscription.failed == []


def test_the_topic_raises_blob_created_for_creating_calls_only() -> None:
    put_blob = {"x-ms-blob-type": "BlockBlob"}
    assert creating_api("PUT", "/acct/c/b", put_blob, 201) == "PutBlob"
    assert creating_api("PUT", "/acct/c/b?comp=blocklist", {}, 201) == "PutBlockList"
    assert creating_api("PUT", "/acct/c/b", {"x-ms-copy-source": "u"}, 202) == "CopyBlob"
    assert creating_api("PUT", "/acct/c/b?comp=block&blockid=x", {}, 201) is None
    assert creating_api("PUT", "/acct/c?restype=container", {}, 201) is None
    assert creating_api("PUT", "/acct/c/b?comp=metadata", {}, 200) is None
    assert creating_api("PUT", "/acct/c/b", put_blob, 412) is None
    assert creating_api("GET", "/acct/c/b", {}, 200) is None
    assert creating_api("DELETE", "/acct/c/b", {}, 202) is None
