"""The blob store port: the dataset container uploads land in, and the work container.

Two stores of one shape: ``Services.store`` is the dataset container the blob
trigger watches (the app only reads it), ``Services.work`` the app's own
container (``WORK_CONTAINER``), where it writes reports and training/validation
parts, so its outputs never wake the trigger or lengthen its scan. Names there
keep the ``APP_PREFIX``: pointed at the dataset container (the old layout),
the work store's blobs are still the ones the trigger skips.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

APP_PREFIX = "_autopilot/"
REPORTS_PREFIX = APP_PREFIX + "reports/"
SPLITS_PREFIX = APP_PREFIX + "splits/"
VALIDATION_SUFFIX = ".validation.jsonl"


@dataclass(frozen=True)
class BlobInfo:
    name: str
    url: str
    etag: str
    size: int
    metadata: Mapping[str, str]


class PartWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    def commit(self, metadata: Mapping[str, str]) -> str:
        """Finish the blob with ``metadata``; returns its URL."""
        ...


class DatasetStore(Protocol):
    container: str

    def info(self, name: str) -> BlobInfo | None:
        """Properties of blob ``name``, or None if it does not exist."""
        ...

    def chunks(self, name: str, etag: str) -> Iterator[bytes]:
        """Stream the blob's bytes, only if it is still at version ``etag``."""
        ...

    def put_text(self, name: str, text: str, content_type: str) -> str:
        """Write (or overwrite) a small blob under the app's prefix; returns its URL."""
        ...

    def writer(self, name: str) -> PartWriter:
        """A streaming writer for a large blob under the app's prefix. Nothing is
        visible (no blob, no event) until ``commit``; a writer dropped uncommitted
        leaves nothing behind but data the service discards on its own."""
        ...


def is_app_blob(name: str) -> bool:
    return name.startswith(APP_PREFIX)


def sibling_validation_name(name: str) -> str:
    """``data.jsonl`` -> ``data.validation.jsonl``: the user's own validation set."""
    return name[: -len(".jsonl")] + VALIDATION_SUFFIX
