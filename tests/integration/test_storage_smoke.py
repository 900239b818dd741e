"""The real Azure Storage SDKs against Azurite: the calls the Function App relies on."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from local.azurite import Azurite

pytestmark = pytest.mark.integration


def _unique(prefix: str) -> str:
    # Container and table names must start with a letter and be alphanumeric (tables)
    # or lowercase alphanumeric (containers); hex satisfies both.
    return f"{prefix}{uuid.uuid4().hex[:16]}"


@pytest.fixture
def container(blob_service: BlobServiceClient) -> Iterator[ContainerClient]:
    client = blob_service.create_container(_unique("smoke"))
    yield client
    client.delete_container()


@pytest.fixture
def table(table_service: TableServiceClient) -> Iterator[TableClient]:
    client = table_service.create_table(_unique("smoke"))
    yield client
    table_service.delete_table(client.table_name)


# --- Blob ---


def test_container_is_listed(blob_service: BlobServiceClient, container: ContainerClient) -> None:
    names = [c.name for c in blob_service.list_containers(name_starts_with="smoke")]

    assert container.container_name in names


def test_upload_keeps_metadata_and_content_settings(container: ContainerClient) -> None:
    blob = container.get_blob_client("runs/run-1/manifest.json")

    blob.upload_blob(
        b'{"model": "phi-3"}',
        metadata={"run_id": "run-1", "stage": "prepared"},
        content_settings=ContentSettings(content_type="application/json"),
    )

    properties = blob.get_blob_properties()
    assert properties.metadata == {"run_id": "run-1", "stage": "prepared"}
    assert properties.content_settings.content_type == "application/json"
    assert properties.size == len(b'{"model": "phi-3"}')
    assert blob.download_blob().readall() == b'{"model": "phi-3"}'


def test_download_streams_in_chunks(azurite: Azurite, container: ContainerClient) -> None:
    chunk_size = 64 * 1024
    payload = os.urandom(5 * chunk_size + 123)  # Six chunks, the last one short.
    container.upload_blob("data/train.jsonl", payload)
    # The default client downloads anything under 32 MiB in one request; shrink the
    # request sizes so this small blob really arrives as a stream of ranges.
    with BlobServiceClient.from_connection_string(
        azurite.connection_string,
        max_single_get_size=chunk_size,
        max_chunk_get_size=chunk_size,
    ) as small_chunks:
        downloader = small_chunks.get_blob_client(
            container.container_name, "data/train.jsonl"
        ).download_blob()
        chunks = list(downloader.chunks())

    assert len(chunks) == 6
    assert all(len(chunk) == chunk_size for chunk in chunks[:-1])
    assert len(chunks[-1]) == 123
    assert b"".join(chunks) == payload


def test_overwrite_changes_etag_and_stale_etag_is_rejected(container: ContainerClient) -> None:
    blob = container.get_blob_client("state/checkpoint.txt")
    first_etag = blob.upload_blob(b"v1")["etag"]

    second_etag = blob.upload_blob(b"v2", overwrite=True)["etag"]

    assert second_etag != first_etag
    assert blob.get_blob_properties().etag == second_etag

    with pytest.raises(ResourceModifiedError):
        blob.upload_blob(
            b"v3-from-a-stale-writer",
            overwrite=True,
            etag=first_etag,
            match_condition=MatchConditions.IfNotModified,
        )
    assert blob.download_blob().readall() == b"v2"
    assert blob.get_blob_properties().etag == second_etag

    # The current ETag, by contrast, lets the write through.
    blob.upload_blob(
        b"v3", overwrite=True, etag=second_etag, match_condition=MatchConditions.IfNotModified
    )
    assert blob.download_blob().readall() == b"v3"


# --- Table ---


def test_update_with_current_etag_succeeds(table: TableClient) -> None:
    table.upsert_entity({"PartitionKey": "run-1", "RowKey": "status", "state": "queued"})
    entity = table.get_entity("run-1", "status")

    table.update_entity(
        {"PartitionKey": "run-1", "RowKey": "status", "state": "training"},
        mode=UpdateMode.MERGE,
        etag=entity.metadata["etag"],
        match_condition=MatchConditions.IfNotModified,
    )

    updated = table.get_entity("run-1", "status")
    assert updated["state"] == "training"
    assert updated.metadata["etag"] != entity.metadata["etag"]


def test_update_with_stale_etag_is_rejected(table: TableClient) -> None:
    table.upsert_entity({"PartitionKey": "run-1", "RowKey": "status", "state": "queued"})
    stale_etag = table.get_entity("run-1", "status").metadata["etag"]
    table.upsert_entity({"PartitionKey": "run-1", "RowKey": "status", "state": "training"})

    with pytest.raises(ResourceModifiedError):
        table.update_entity(
            {"PartitionKey": "run-1", "RowKey": "status", "state": "failed"},
            mode=UpdateMode.MERGE,
            etag=stale_etag,
            match_condition=MatchConditions.IfNotModified,
        )

    assert table.get_entity("run-1", "status")["state"] == "training"


def test_query_by_partition_key_with_filter(table: TableClient) -> None:
    rows = [
        ("run-1", "a", 1, "done"),
        ("run-1", "b", 3, "done"),
        ("run-1", "c", 5, "failed"),
        ("run-2", "a", 4, "done"),
    ]
    for partition, row, attempts, state in rows:
        table.upsert_entity(
            {"PartitionKey": partition, "RowKey": row, "attempts": attempts, "state": state}
        )

    found = table.query_entities(
        "PartitionKey eq @pk and attempts ge @min_attempts",
        parameters={"pk": "run-1", "min_attempts": 3},
    )

    assert sorted((e["RowKey"], e["attempts"], e["state"]) for e in found) == [
        ("b", 3, "done"),
        ("c", 5, "failed"),
    ]
