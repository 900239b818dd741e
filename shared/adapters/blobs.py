"""The dataset store on Azure Blob storage.

Reads stream in chunks with ``If-Match`` on the version the run saw, so a blob
overwritten mid-read is noticed, never half-mixed. Large parts are written as
staged blocks (4 MiB each), so memory stays flat whatever the dataset size.
A part under one block is one Put Blob. Over that, a block's id is its
position and a digest of its bytes, so writers racing on one part with the
same bytes (two invocations splitting one upload) converge: the first commit
wins and the other's list names the same blocks, now committed. Different
bytes under one name: the loser's blocks were dropped by the winner's commit,
and it gets a retryable error.
A write that finds its container missing creates it and tries once more: the
work container is the app's own (a local stack, or a deployment from before it
existed, has none yet).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

from shared.adapters.azure_errors import translate
from shared.domain.errors import PermanentError, RetryableError
from shared.domain.storage import BlobInfo

BLOCK_BYTES = 4 << 20
READ_CHUNK_BYTES = 4 << 20

T = TypeVar("T")


class BlobDatasetStore:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container
        self.container = str(container.container_name)

    def info(self, name: str) -> BlobInfo | None:
        blob = self._container.get_blob_client(name)
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, f"reading properties of {name}") from exc
        return BlobInfo(
            name=name,
            url=blob.url,
            etag=str(props.etag),
            size=int(props.size),
            metadata=dict(props.metadata or {}),
        )

    def chunks(self, name: str, etag: str) -> Iterator[bytes]:
        blob = self._container.get_blob_client(name)
        try:
            stream = blob.download_blob(
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
                max_concurrency=1,
            )
            yield from stream.chunks()
        except ResourceModifiedError as exc:
            raise PermanentError(
                f"{name} was overwritten while being read (version {etag} is gone); "
                "the new version is handled as a new upload"
            ) from exc
        except ResourceNotFoundError as exc:
            raise PermanentError(f"{name} was deleted while being read") from exc
        except AzureError as exc:
            raise translate(exc, f"reading {name}") from exc

    def put_text(self, name: str, text: str, content_type: str) -> str:
        blob = self._container.get_blob_client(name)
        try:
            self.creating_container(
                lambda: blob.upload_blob(
                    text.encode("utf-8"),
                    overwrite=True,
                    content_settings=ContentSettings(content_type=content_type),
                )
            )
        except AzureError as exc:
            raise translate(exc, f"writing {name}") from exc
        return str(blob.url)

    def writer(self, name: str) -> BlockWriter:
        return BlockWriter(self._container.get_blob_client(name), self.creating_container)

    def creating_container(self, write: Callable[[], T]) -> T:
        """``write()``; if the container does not exist, create it and write again."""
        try:
            return write()
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) != "ContainerNotFound":
                raise
        with contextlib.suppress(ResourceExistsError):  # created concurrently
            self._container.create_container()
        return write()


class BlockWriter:
    """Buffers up to one block, stages it, and commits the block list at the end.
    Nothing is visible until then; uncommitted blocks are dropped by the service."""

    def __init__(
        self, blob: BlobClient, creating_container: Callable[[Callable[[], object]], object]
    ) -> None:
        self._blob = blob
        self._creating_container = creating_container
        self._buffer = bytearray()
        self._blocks: list[BlobBlock] = []

    def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= BLOCK_BYTES:
            self._stage()

    def _stage(self) -> None:
        if not self._buffer:
            return
        data = bytes(self._buffer)
        digest = hashlib.blake2b(data, digest_size=12).hexdigest()
        block_id = base64.b64encode(f"{len(self._blocks):08d}-{digest}".encode()).decode()
        try:
            self._creating_container(lambda: self._blob.stage_block(block_id, data))
        except AzureError as exc:
            raise translate(exc, f"writing {self._blob.blob_name}") from exc
        self._blocks.append(BlobBlock(block_id=block_id))
        self._buffer.clear()

    def commit(self, metadata: Mapping[str, str]) -> str:
        if not self._blocks:
            return self._put(metadata)  # under one block: one Put Blob, not two requests
        self._stage()
        try:
            self._blob.commit_block_list(
                self._blocks,
                content_settings=ContentSettings(content_type="application/jsonl"),
                metadata=dict(metadata),
            )
        except HttpResponseError as exc:
            if getattr(exc, "error_code", None) == "InvalidBlockList":
                # Another invocation committed other bytes under this name first,
                # which dropped our uncommitted blocks: try again later.
                raise RetryableError(
                    f"{self._blob.blob_name} was written concurrently by another invocation"
                ) from exc
            raise translate(exc, f"writing {self._blob.blob_name}") from exc
        except AzureError as exc:
            raise translate(exc, f"writing {self._blob.blob_name}") from exc
        return str(self._blob.url)

    def _put(self, metadata: Mapping[str, str]) -> str:
        data = bytes(self._buffer)
        try:
            self._creating_container(
                lambda: self._blob.upload_blob(
                    data,
                    overwrite=True,
                    content_settings=ContentSettings(content_type="application/jsonl"),
                    metadata=dict(metadata),
                )
            )
        except AzureError as exc:
            raise translate(exc, f"writing {self._blob.blob_name}") from exc
        self._buffer.clear()
        return str(self._blob.url)
