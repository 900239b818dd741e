"""The host's blob trigger: once per blob version, durable receipts, retries, poison queue."""

from __future__ import annotations

import json

import pytest
from azure.storage.blob import BlobServiceClient

from local.azurite import Azurite
from local.functions_host import FunctionsHost
from tests.support.azureml import wait_until
from tests.support.functions_host import (
    HostedApp,
    HostFactory,
    host_status,
    poison_messages,
    settle_blob_trigger,
)

pytestmark = pytest.mark.integration

FUNCTION_ID = "Host.Functions.on_blob"


def _upload(azurite: Azurite, container: str, name: str, data: bytes) -> str:
    """Upload (or overwrite) a blob; return its ETag."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blob = service.get_blob_client(container, name)
        result = blob.upload_blob(data, overwrite=True)
        return str(result["etag"])


def _receipt(azurite: Azurite, host_id: str, container: str, name: str) -> dict[str, object]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        path = f"blobreceipts/{host_id}/{FUNCTION_ID}/{container}/{name}"
        data = service.get_blob_client("azure-webjobs-hosts", path).download_blob().readall()
        receipt: dict[str, object] = json.loads(data)
        return receipt


def _invocations(host: FunctionsHost) -> int:
    return int(host_status(host)["blobTriggers"]["on_blob"]["invocations"])


@pytest.fixture
def container(hosted_app: HostedApp, azurite: Azurite) -> str:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(hosted_app.container)
    return hosted_app.container


def test_each_blob_version_fires_once_with_an_sdk_blob_client(
    hosted_app: HostedApp, start_host: HostFactory, azurite: Azurite, container: str
) -> None:
    host = start_host()
    etag_a = _upload(azurite, container, "a.jsonl", b"first")
    etag_b = _upload(azurite, container, "nested/b.jsonl", b"second")

    hosted_app.records.wait_for("blob", name="a.jsonl")
    hosted_app.records.wait_for("blob", name="nested/b.jsonl")
    settle_blob_trigger(host, "on_blob")

    blobs = hosted_app.records.of("blob")
    assert sorted((r["name"], r["etag"]) for r in blobs) == sorted(
        [("a.jsonl", etag_a), ("nested/b.jsonl", etag_b)]
    )
    # The parameter is annotated with the SDK-type binding: a real BlobClient arrives.
    assert {r["client_type"] for r in blobs} == {"azure.storage.blob._blob_client.BlobClient"}
    assert {r["container"] for r in blobs} == {container}
    receipt = _receipt(azurite, host.host_id, container, "a.jsonl")
    assert receipt["ETag"] == etag_a
    assert receipt["Outcome"] == "Succeeded"
    assert "Executed 'Functions.on_blob' (Succeeded" in host.log_text()


def test_overwriting_a_blob_fires_again(
    hosted_app: HostedApp, start_host: HostFactory, azurite: Azurite, container: str
) -> None:
    host = start_host()
    first = _upload(azurite, container, "data.jsonl", b"version one")
    hosted_app.records.wait_for("blob", name="data.jsonl", etag=first)

    second = _upload(azurite, container, "data.jsonl", b"version two")
    assert second != first
    hosted_app.records.wait_for("blob", name="data.jsonl", etag=second)
    settle_blob_trigger(host, "on_blob")

    versions = [(r["etag"], r["content"]) for r in hosted_app.records.of("blob")]
    assert versions == [(first, "version one"), (second, "version two")]


def test_receipts_survive_a_host_restart(
    hosted_app: HostedApp, start_host: HostFactory, azurite: Azurite, container: str
) -> None:
    first_host = start_host()
    etag = _upload(azurite, container, "kept.jsonl", b"handled once")
    hosted_app.records.wait_for("blob", name="kept.jsonl")
    settle_blob_trigger(first_host, "on_blob")
    first_host.stop()
    assert first_host.returncode == 0, first_host.log_tail()

    second_host = start_host()
    assert second_host.host_id == first_host.host_id
    # Two complete scans of the container by the new host, nothing in flight:
    # the receipt, not memory, kept it from firing again.
    settle_blob_trigger(second_host, "on_blob")
    assert [r["etag"] for r in hosted_app.records.of("blob")] == [etag]
    assert _invocations(second_host) == 0


def test_a_blob_uploaded_while_the_host_is_down_fires_once_after_start(
    hosted_app: HostedApp, start_host: HostFactory, azurite: Azurite, container: str
) -> None:
    first_host = start_host()
    settle_blob_trigger(first_host, "on_blob")
    first_host.stop()

    etag = _upload(azurite, container, "late.jsonl", b"uploaded while down")
    second_host = start_host()
    hosted_app.records.wait_for("blob", name="late.jsonl")
    settle_blob_trigger(second_host, "on_blob")

    assert [r["etag"] for r in hosted_app.records.of("blob")] == [etag]


def test_a_failing_blob_is_tried_five_times_then_poisoned(
    hosted_app: HostedApp, start_host: HostFactory, azurite: Azurite, container: str
) -> None:
    host = start_host()
    etag = _upload(azurite, container, "bad.jsonl", b"fail: always")

    hosted_app.records.wait_for("blob", 5, name="bad.jsonl")
    messages = wait_until(
        lambda: poison_messages(azurite.connection_string, container),
        lambda found: len(found) == 1,
        what="a poison message for bad.jsonl",
    )
    settle_blob_trigger(host, "on_blob")

    assert len(hosted_app.records.of("blob", name="bad.jsonl")) == 5  # not retried forever
    assert messages[0] == {
        "Type": "BlobTrigger",
        "FunctionId": FUNCTION_ID,
        "BlobType": "BlockBlob",
        "ContainerName": container,
        "BlobName": "bad.jsonl",
        "ETag": etag,
    }
    receipt = _receipt(azurite, host.host_id, container, "bad.jsonl")
    assert receipt["ETag"] == etag
    assert receipt["Outcome"] == "Poisoned"
    log = host.log_text()
    assert log.count("Executed 'Functions.on_blob' (Failed") == 5
    assert "attempt 5/5" in log
    assert "moved to queue webjobs-blobtrigger-poison" in log
