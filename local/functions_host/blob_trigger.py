"""Blob triggers by container scan, with durable receipts and a poison queue.

Like the real host's polling blob trigger (``LogsAndContainerScan``):

* every ``scan_seconds`` the container is listed (names starting with the path
  pattern's literal prefix) and each blob that matches the pattern and whose
  version (name + ETag) has no receipt is handed to a small thread pool;
* a success writes a receipt, the blob ``blobreceipts/<host id>/<function id>/
  <container>/<blob name>`` in the container ``azure-webjobs-hosts`` of the host's
  own storage (``AzureWebJobsStorage``), holding the ETag handled; so a restart
  does not fire again for a handled version, a version uploaded while the host was
  down fires once after start, and an overwrite (new ETag) fires again;
* a failed invocation is tried again, up to ``max_attempts`` in total (host.json
  ``extensions.queues.maxDequeueCount``, 5 by default); then a message goes to the
  queue ``webjobs-blobtrigger-poison`` of the blob's own storage account (JSON with
  Type, FunctionId, BlobType, ContainerName, BlobName, ETag, Base64-encoded as the
  host writes queue messages) and a receipt marks the version handled;
* a version that changed or vanished before an attempt is dropped: the new version
  has its own turn. One blob name is never processed twice at the same time.

Blob triggers declared with the Event Grid source are not scanned: they run on
BlobCreated events delivered to the host's webhook (``blob_events.py``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import inspect
import json
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import _abc as functions_abc
from azure.functions.blob import InputStream
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.functions_host.config import HostStartError
from local.functions_host.indexing import BlobSpec
from local.functions_host.invocations import Invoker
from local.functions_host.storage import StorageConnection

log = logging.getLogger("host.blobs")

HOSTS_CONTAINER = "azure-webjobs-hosts"
POISON_QUEUE = "webjobs-blobtrigger-poison"
_PARAMETER = re.compile(r"\{([^{}]+)\}")


class BlobPattern:
    """The blob part of a trigger path, e.g. ``{name}`` or ``incoming/{name}.jsonl``."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        regex = ""
        position = 0
        for match in _PARAMETER.finditer(pattern):
            regex += re.escape(pattern[position : match.start()])
            name = match.group(1).strip()
            regex += f"(?P<{name}>.+?)" if name.isidentifier() else ".+?"
            position = match.end()
        regex += re.escape(pattern[position:])
        first = _PARAMETER.search(pattern)
        self.prefix = pattern[: first.start()] if first else pattern
        self._regex = re.compile(f"^{regex}$" if pattern else "^.+$", re.DOTALL)

    def match(self, blob_name: str) -> dict[str, str] | None:
        found = self._regex.match(blob_name)
        return None if found is None else {k: v for k, v in found.groupdict().items()}


class HostStorage:
    """The host's own container in ``AzureWebJobsStorage``: blob receipts, timer status."""

    def __init__(self, service: BlobServiceClient, host_id: str) -> None:
        self.host_id = host_id
        self.container: ContainerClient = service.get_container_client(HOSTS_CONTAINER)

    def ensure(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.container.create_container()

    def receipt_name(self, function_id: str, container: str, blob: str) -> str:
        return f"blobreceipts/{self.host_id}/{function_id}/{container}/{blob}"

    def handled_etag(self, function_id: str, container: str, blob: str) -> str | None:
        receipt = self.read_json(self.receipt_name(function_id, container, blob))
        etag = receipt.get("ETag") if receipt else None
        return etag if isinstance(etag, str) else None

    def write_receipt(
        self,
        function_id: str,
        container: str,
        blob: str,
        *,
        etag: str,
        outcome: str,
        attempts: int,
    ) -> None:
        document = {
            "FunctionId": function_id,
            "ContainerName": container,
            "BlobName": blob,
            "ETag": etag,
            "Outcome": outcome,
            "Attempts": attempts,
            "HandledAt": dt.datetime.now(dt.UTC).isoformat(),
        }
        self.write_json(self.receipt_name(function_id, container, blob), document)

    def read_json(self, name: str) -> dict[str, Any] | None:
        try:
            data = self.container.download_blob(name).readall()
        except ResourceNotFoundError:
            return None
        try:
            loaded = json.loads(data)
        except ValueError:
            log.warning("Ignoring unreadable %s/%s", HOSTS_CONTAINER, name)
            return None
        return loaded if isinstance(loaded, dict) else None

    def write_json(self, name: str, document: dict[str, Any]) -> None:
        self.container.upload_blob(name, json.dumps(document).encode("utf-8"), overwrite=True)


@dataclass
class BlobStats:
    scans: int = 0
    invocations: int = 0
    succeeded: int = 0
    failed_attempts: int = 0
    poisoned: int = 0


class BlobTriggerListener:
    """Scans one blob trigger's container and invokes its function per new blob version."""

    def __init__(
        self,
        spec: BlobSpec,
        *,
        connection: StorageConnection,
        host_storage: HostStorage,
        invoker: Invoker,
        stop: threading.Event,
        scan_seconds: float,
        max_attempts: int,
        retry_seconds: float,
        parallelism: int,
    ) -> None:
        self.spec = spec
        self.pattern = BlobPattern(spec.pattern)
        self._connection = connection
        self._service = connection.blob_service()
        self._container = self._service.get_container_client(spec.container)
        self._poison = connection.queue(POISON_QUEUE)
        self._host_storage = host_storage
        self._invoker = invoker
        self._stop = stop
        self._scan_seconds = scan_seconds
        self._max_attempts = max_attempts
        self._retry_seconds = retry_seconds
        self._pool = ThreadPoolExecutor(
            max_workers=parallelism, thread_name_prefix=f"blob-{spec.name}"
        )
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._handled: dict[str, str] = {}  # blob name -> ETag with a receipt
        self._missing_logged = False
        self._thread: threading.Thread | None = None
        self.stats = BlobStats()
        self._make_argument = argument_factory(spec)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"scan-{self.spec.name}", daemon=True
        )
        self._thread.start()

    def stop(self, wait: bool = False) -> None:
        """Stop scanning (the shared stop event is set by the host) and drop queued work."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        log.info(
            "Blob trigger 'Functions.%s' scans %s/%s every %gs",
            self.spec.name,
            self.spec.container,
            self.spec.pattern or "*",
            self._scan_seconds,
        )
        while not self._stop.is_set():
            try:
                self.scan_once()
            except Exception:
                log.exception("Blob scan for 'Functions.%s' failed; trying again", self.spec.name)
            self._stop.wait(self._scan_seconds)

    def scan_once(self) -> None:
        """List the container once and submit every blob version not handled yet."""
        try:
            blobs = list(self._container.list_blobs(name_starts_with=self.pattern.prefix or None))
        except ResourceNotFoundError:
            if not self._missing_logged:
                log.info(
                    "Blob trigger 'Functions.%s': container %s does not exist (yet)",
                    self.spec.name,
                    self.spec.container,
                )
                self._missing_logged = True
            self._count_scan()
            return
        self._missing_logged = False
        for blob in blobs:
            if self._stop.is_set():
                return
            name, etag = str(blob.name), normalize_etag(str(blob.etag))
            if self.pattern.match(name) is None or self._handled.get(name) == etag:
                continue
            with self._lock:
                if name in self._in_flight:
                    continue
            if (
                self._host_storage.handled_etag(self.spec.function_id, self.spec.container, name)
                == etag
            ):
                self._handled[name] = etag
                continue
            with self._lock:
                if name in self._in_flight:
                    continue
                self._in_flight.add(name)
            blob_type = str(getattr(blob, "blob_type", "BlockBlob") or "BlockBlob")
            try:
                self._pool.submit(self._process, name, etag, _blob_type_name(blob_type))
            except RuntimeError:  # the pool is shut down: the host is stopping
                with self._lock:
                    self._in_flight.discard(name)
                return
        self._count_scan()

    def _count_scan(self) -> None:
        with self._lock:
            self.stats.scans += 1

    def _process(self, name: str, etag: str, blob_type: str) -> None:
        try:
            self._attempts(name, etag, blob_type)
        except Exception:
            log.exception(
                "Blob trigger 'Functions.%s' could not finish %s/%s; the next scan retries",
                self.spec.name,
                self.spec.container,
                name,
            )
        finally:
            with self._lock:
                self._in_flight.discard(name)

    def _attempts(self, name: str, etag: str, blob_type: str) -> None:
        spec = self.spec
        client = self._container.get_blob_client(name)
        for attempt in range(1, self._max_attempts + 1):
            if self._stop.is_set():
                log.info("Abandoned %s/%s (%s): the host is stopping", spec.container, name, etag)
                return
            try:
                current = normalize_etag(str(client.get_blob_properties().etag))
            except ResourceNotFoundError:
                log.info("Blob %s/%s is gone; nothing to do", spec.container, name)
                return
            if current != etag:
                log.info(
                    "Blob %s/%s changed (%s -> %s); the new version gets its own turn",
                    spec.container,
                    name,
                    etag,
                    current,
                )
                return
            detail = (
                f"blob {spec.container}/{name} (ETag {etag}, attempt {attempt}/"
                f"{self._max_attempts})"
            )
            with self._lock:
                self.stats.invocations += 1
            try:
                argument = self._make_argument(self._connection, spec.container, name, client)
                self._invoker.invoke(spec, {spec.parameter: argument}, detail)
            except Exception:
                with self._lock:
                    self.stats.failed_attempts += 1
                if attempt < self._max_attempts:
                    self._stop.wait(self._retry_seconds)
                continue
            self._host_storage.write_receipt(
                spec.function_id,
                spec.container,
                name,
                etag=etag,
                outcome="Succeeded",
                attempts=attempt,
            )
            self._handled[name] = etag
            with self._lock:
                self.stats.succeeded += 1
            return
        self._poison_blob(name, etag, blob_type)

    def _poison_blob(self, name: str, etag: str, blob_type: str) -> None:
        spec = self.spec
        message = {
            "Type": "BlobTrigger",
            "FunctionId": spec.function_id,
            "BlobType": blob_type,
            "ContainerName": spec.container,
            "BlobName": name,
            "ETag": etag,
        }
        self._poison.create()
        self._poison.put(json.dumps(message))
        self._host_storage.write_receipt(
            spec.function_id,
            spec.container,
            name,
            etag=etag,
            outcome="Poisoned",
            attempts=self._max_attempts,
        )
        self._handled[name] = etag
        with self._lock:
            self.stats.poisoned += 1
        log.error(
            "Blob %s/%s (ETag %s) failed %d times in 'Functions.%s'; moved to queue %s",
            spec.container,
            name,
            etag,
            self._max_attempts,
            spec.name,
            POISON_QUEUE,
        )


def normalize_etag(etag: str) -> str:
    """ETags in one form, quoted as in the ETag header (listings may omit the quotes)."""
    return f'"{etag.strip(chr(34))}"'


def _blob_type_name(value: str) -> str:
    # The SDK's BlobType enum prints as "BlobType.BLOCKBLOB" in some versions.
    lowered = value.lower()
    for known in ("BlockBlob", "PageBlob", "AppendBlob"):
        if known.lower() in lowered:
            return known
    return value


ArgumentFactory = Any  # Callable[[StorageConnection, str, str, BlobClient], object]


def argument_factory(spec: BlobSpec) -> ArgumentFactory:
    """How to turn a blob into the function's argument, chosen from its annotation.

    SDK types (``azurefunctions.extensions.bindings.blob.BlobClient``, ``ContainerClient``,
    ``StorageStreamDownloader``) go through the extension's own converter, exactly
    as the Python worker does: it builds the client from the app setting named by
    ``connection``. ``func.InputStream`` (or no annotation), ``bytes`` and ``str``
    get the blob's content.
    """
    annotation = spec.annotation
    if annotation is not inspect.Parameter.empty and _is_sdk_type(annotation):
        base = importlib.import_module("azurefunctions.extensions.base")
        converter = base._ConverterMeta.get("blobTrigger")
        if converter is None or not converter.check_input_type_annotation(annotation):
            raise HostStartError(
                f"function '{spec.name}': no blob converter accepts {annotation!r}"
            )

        def sdk(connection: StorageConnection, container: str, name: str, client: Any) -> Any:
            content = json.dumps(
                {"Connection": spec.connection, "ContainerName": container, "BlobName": name}
            )
            data = base.Datum(
                value=SimpleNamespace(
                    version="1.0",
                    source="AzureStorageBlobs",
                    content_type="application/json",
                    content=content,
                ),
                type="model_binding_data",
            )
            return converter.decode(data, trigger_metadata={}, pytype=annotation)

        return sdk

    def content(connection: StorageConnection, container: str, name: str, client: Any) -> Any:
        downloader = client.download_blob()
        data = downloader.readall()
        if annotation is bytes:
            return data
        if annotation is str:
            return data.decode("utf-8")
        properties = downloader.properties
        return InputStream(
            data=data,
            name=f"{container}/{name}",
            uri=client.url,
            length=len(data),
            blob_properties=dict(properties),
            metadata=dict(properties.metadata or {}),
        )

    if annotation in (bytes, str, inspect.Parameter.empty) or (
        isinstance(annotation, type) and issubclass(annotation, functions_abc.InputStream)
    ):
        return content
    raise HostStartError(
        f"function '{spec.name}': blob trigger parameter '{spec.parameter}' is annotated "
        f"{annotation!r}; supported: the SDK types of azurefunctions-extensions-bindings-blob, "
        "func.InputStream, bytes, str"
    )


def _is_sdk_type(annotation: Any) -> bool:
    try:
        base = importlib.import_module("azurefunctions.extensions.base")
    except ImportError:
        return False
    return bool(base._ConverterMeta.check_supported_type(annotation))
