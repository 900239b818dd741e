"""The blob dataset store on Azurite: conditional reads, block writes, races."""

from __future__ import annotations

import uuid

import pytest
from azure.storage.blob import BlobServiceClient

from local.azurite import Azurite
from shared.adapters import blobs
from shared.adapters.blobs import BlobDatasetStore
from shared.domain.errors import PermanentError, RetryableError

pytestmark = pytest.mark.integration


@pytest.fixture
def store(blob_service: BlobServiceClient) -> BlobDatasetStore:
    return BlobDatasetStore(blob_service.create_container(f"store-{uuid.uuid4().hex[:12]}"))


def test_reading_a_version_that_was_overwritten_is_refused(store: BlobDatasetStore) -> None:
    store.put_text("a.jsonl", "one\n", "application/jsonl")
    info = store.info("a.jsonl")
    assert info is not None and info.size == 4
    store.put_text("a.jsonl", "two\n", "application/jsonl")
    with pytest.raises(PermanentError, match="overwritten"):
        b"".join(store.chunks("a.jsonl", info.etag))


def test_writer_streams_blocks_and_keeps_metadata(store: BlobDatasetStore) -> None:
    writer = store.writer("_autopilot/part.jsonl")
    for i in range(3):
        writer.write(f"line {i}\n".encode())
    url = writer.commit({"examples": "3"})
    info = store.info("_autopilot/part.jsonl")
    assert info is not None and info.url == url
    assert info.metadata["examples"] == "3"
    assert b"".join(store.chunks(info.name, info.etag)) == b"line 0\nline 1\nline 2\n"


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blobs, "BLOCK_BYTES", 8)  # every write stages a block


def test_a_part_under_one_block_is_one_put(azurite: Azurite) -> None:
    seen: list[str] = []
    name = f"store-{uuid.uuid4().hex[:12]}"
    hooked = BlobServiceClient.from_connection_string(
        azurite.connection_string, raw_request_hook=lambda r: seen.append(r.http_request.method)
    )
    hooked.create_container(name)
    seen.clear()
    writer = BlobDatasetStore(hooked.get_container_client(name)).writer("_autopilot/s.jsonl")
    writer.write(b"small\n")
    writer.commit({"examples": "1"})
    assert seen == ["PUT"]


@pytest.mark.usefixtures("small_blocks")
def test_concurrent_writers_of_the_same_bytes_converge(store: BlobDatasetStore) -> None:
    # Two invocations splitting one upload write the same part.
    first, second = store.writer("_autopilot/p.jsonl"), store.writer("_autopilot/p.jsonl")
    first.write(b"same line\n")
    second.write(b"same line\n")  # staged, not committed, when the first one commits
    first.commit({"examples": "1"})
    second.commit({"examples": "1"})
    info = store.info("_autopilot/p.jsonl")
    assert info is not None
    assert b"".join(store.chunks(info.name, info.etag)) == b"same line\n"


@pytest.mark.usefixtures("small_blocks")
def test_a_losing_concurrent_writer_of_other_bytes_gets_a_retryable_error(
    store: BlobDatasetStore,
) -> None:
    first, second = store.writer("_autopilot/p.jsonl"), store.writer("_autopilot/p.jsonl")
    first.write(b"one line\n")
    second.write(b"two line\n")  # staged, not committed, when the first one commits
    first.commit({})
    with pytest.raises(RetryableError, match="concurrently"):
        second.commit({})
    info = store.info("_autopilot/p.jsonl")
    assert info is not None
    assert b"".join(store.chunks(info.name, info.etag)) == b"one line\n"


def test_an_uncommitted_writer_leaves_no_blob(store: BlobDatasetStore) -> None:
    writer = store.writer("_autopilot/dropped.jsonl")
    writer.write(b"x" * 10)
    writer._stage()
    assert store.info("_autopilot/dropped.jsonl") is None


@pytest.mark.parametrize("block_bytes", [4, blobs.BLOCK_BYTES])
def test_writes_create_a_missing_container(
    blob_service: BlobServiceClient, monkeypatch: pytest.MonkeyPatch, block_bytes: int
) -> None:
    monkeypatch.setattr(blobs, "BLOCK_BYTES", block_bytes)  # staged blocks, or one put
    name = f"work-{uuid.uuid4().hex[:12]}"
    store = BlobDatasetStore(blob_service.get_container_client(name))
    assert store.info("_autopilot/x.txt") is None  # no container yet: simply not there
    url = store.put_text("_autopilot/x.txt", "report\n", "text/plain")
    assert url.endswith(f"/{name}/_autopilot/x.txt")
    other = BlobDatasetStore(blob_service.get_container_client(f"{name}-b"))
    writer = other.writer("_autopilot/part.jsonl")
    writer.write(b"line\n")
    writer.commit({})
    info = other.info("_autopilot/part.jsonl")
    assert info is not None and info.size == 5
