"""Blob triggers with the Event Grid source: BlobCreated events in, one run per event.

What the real host's blob extension does for ``source=EventGrid`` triggers:

* Event Grid delivers to ``POST /runtime/webhooks/blobs?functionName=Host.Functions.NAME
  &code=<blobs_extension system key>`` (the URL ``scripts/postdeploy.sh`` subscribes;
  the HTTP front answers the subscription handshake);
* each ``Microsoft.Storage.BlobCreated`` event (Event Grid schema or CloudEvents)
  for a blob in the trigger's container that matches its path pattern becomes a
  message on the host's queue ``azure-webjobs-blobtrigger-<host id>`` in
  ``AzureWebJobsStorage``, and the webhook answers 202 Accepted: from then on the
  queue holds the work, so a host that stops loses nothing. Events for other
  blobs are dropped with a log line (Event Grid's own filters should keep them
  away: each costs a delivery);
* the host reads that queue itself: at once after it enqueued (the real host's
  shared-queue watcher), otherwise every ``poll_seconds`` (messages left by a
  previous run, retries);
* a message whose blob is gone, or no longer at the event's ETag (overwritten:
  the new version has its own event), is dropped; else the function runs. A
  failure makes the message visible again after ``retry_seconds``; after
  ``max_attempts`` tries (host.json ``extensions.queues.maxDequeueCount``) a
  message goes to ``webjobs-blobtrigger-poison`` of the blob's account, as for
  polling triggers.

No receipts: each event is one run, so an event delivered twice runs twice (the
function must be idempotent, as on Azure).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobClient, BlobServiceClient

from local.functions_host.blob_trigger import (
    POISON_QUEUE,
    BlobPattern,
    argument_factory,
    normalize_etag,
)
from local.functions_host.indexing import BlobSpec
from local.functions_host.invocations import Invoker
from local.functions_host.storage import QueueMessage, StorageConnection, StorageQueue

log = logging.getLogger("host.blob_events")

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
EVENT_GRID_SOURCE = "eventgrid"
# A dequeued message stays hidden this long: if the host dies mid-invocation, it
# comes back then (the real host renews the lease of messages it is still running).
VISIBILITY_SECONDS = 600


def is_event_grid(spec: BlobSpec) -> bool:
    return spec.source.replace("_", "").lower() == EVENT_GRID_SOURCE


def queue_name(host_id: str) -> str:
    """The host's blob trigger queue: a valid queue name whatever the host id."""
    tail = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", host_id.lower())).strip("-")
    return f"azure-webjobs-blobtrigger-{tail or 'host'}"[:63].rstrip("-")


@dataclass
class EventStats:
    received: int = 0
    queued: int = 0
    ignored: int = 0
    invocations: int = 0
    succeeded: int = 0
    failed_attempts: int = 0
    dropped: int = 0  # blob gone or changed before its turn
    poisoned: int = 0


@dataclass(frozen=True)
class _Trigger:
    spec: BlobSpec
    pattern: BlobPattern
    connection: StorageConnection
    service: BlobServiceClient
    argument: Any  # blob_trigger.ArgumentFactory


class BlobEventTriggers:
    """Every Event Grid-source blob trigger of the app, behind the host's one queue."""

    def __init__(
        self,
        specs: list[BlobSpec],
        *,
        connections: Mapping[str, StorageConnection],
        queue: StorageQueue,
        invoker: Invoker,
        stop: threading.Event,
        poll_seconds: float,
        max_attempts: int,
        retry_seconds: float,
        parallelism: int,
    ) -> None:
        self._triggers = {
            spec.name: _Trigger(
                spec,
                BlobPattern(spec.pattern),
                connections[spec.name],
                connections[spec.name].blob_service(),
                argument_factory(spec),
            )
            for spec in specs
        }
        self.queue = queue
        self._invoker = invoker
        self._stop = stop
        self._poll_seconds = poll_seconds
        self._max_attempts = max_attempts
        self._retry_seconds = retry_seconds
        self._slots = threading.Semaphore(parallelism)
        self._parallelism = parallelism
        self._pool = ThreadPoolExecutor(max_workers=parallelism, thread_name_prefix="blob-event")
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {name: 0 for name in self._triggers}
        self.stats = {name: EventStats() for name in self._triggers}
        self._thread: threading.Thread | None = None

    @property
    def functions(self) -> set[str]:
        return set(self._triggers)

    def container(self, name: str) -> str:
        return self._triggers[name].spec.container

    def in_flight(self, name: str) -> int:
        with self._lock:
            return self._in_flight[name]

    def start(self) -> None:
        self.queue.create()
        self._thread = threading.Thread(target=self._run, name="blob-event-queue", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = False) -> None:
        self._wake.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the webhook's side ------------------------------------------------------

    def accept(self, function: str, event: Mapping[str, Any]) -> bool:
        """Queue the blob of one delivered event for ``function``; False if the event
        is not a BlobCreated for this trigger's container and pattern (then ignored)."""
        trigger = self._triggers[function]
        stats = self.stats[function]
        with self._lock:
            stats.received += 1
        kind = str(event.get("eventType") or event.get("type") or "")
        data = event.get("data")
        url = data.get("url") if isinstance(data, dict) else None
        where = None
        if kind == BLOB_CREATED and isinstance(url, str):
            try:
                client = BlobClient.from_blob_url(url)
                where = (str(client.container_name), str(client.blob_name))
            except ValueError:
                where = None
        spec = trigger.spec
        if where is None or where[0] != spec.container or trigger.pattern.match(where[1]) is None:
            with self._lock:
                stats.ignored += 1
            log.info(
                "Ignored a %s event for 'Functions.%s' (%s): not a new blob of %s/%s",
                kind or "typeless",
                spec.name,
                url,
                spec.container,
                spec.pattern or "*",
            )
            return False
        assert isinstance(data, dict)
        etag = data.get("eTag")
        message = {
            "Type": "BlobTrigger",
            "FunctionId": spec.function_id,
            "BlobType": str(data.get("blobType") or "BlockBlob"),
            "ContainerName": where[0],
            "BlobName": where[1],
            "ETag": normalize_etag(str(etag)) if etag else None,
        }
        self.queue.put(json.dumps(message))
        with self._lock:
            stats.queued += 1
        self._wake.set()
        return True

    # --- the queue's side --------------------------------------------------------

    def _run(self) -> None:
        log.info(
            "Blob trigger(s) %s read queue %s (Event Grid source)",
            ", ".join(f"'Functions.{name}'" for name in sorted(self._triggers)),
            self.queue.name,
        )
        while not self._stop.is_set():
            try:
                self._drain()
            except Exception:
                log.exception("Reading queue %s failed; trying again", self.queue.name)
            self._wake.wait(self._poll_seconds)
            self._wake.clear()

    def _drain(self) -> None:
        while not self._stop.is_set():
            free = 0
            while free < min(32, self._parallelism) and self._slots.acquire(blocking=False):
                free += 1
            if free == 0:
                return  # every slot busy: a finishing invocation wakes the reader
            messages = self.queue.get(free, VISIBILITY_SECONDS)
            for _ in range(free - len(messages)):
                self._slots.release()
            if not messages:
                return
            for message in messages:
                try:
                    self._pool.submit(self._process, message)
                except RuntimeError:  # shutting down: the message comes back later
                    self._slots.release()
                    return

    def _process(self, message: QueueMessage) -> None:
        try:
            self._handle(message)
        except Exception:
            log.exception("Blob trigger message %s could not be handled", message.id)
        finally:
            self._slots.release()
            self._wake.set()

    def _handle(self, message: QueueMessage) -> None:
        try:
            document = json.loads(message.text)
            function_id = str(document["FunctionId"])
            container, name = str(document["ContainerName"]), str(document["BlobName"])
        except (ValueError, KeyError, TypeError):
            log.error("Dropped an unreadable message of queue %s: %r", self.queue.name, message)
            self.queue.delete(message)
            return
        function = function_id.removeprefix("Host.Functions.")
        trigger = self._triggers.get(function)
        if trigger is None:
            log.warning("Dropped a message for unknown function %s", function_id)
            self.queue.delete(message)
            return
        spec, stats = trigger.spec, self.stats[function]
        client = trigger.service.get_blob_client(container, name)
        try:
            current = normalize_etag(str(client.get_blob_properties().etag))
        except ResourceNotFoundError:
            current = None
        wanted = document.get("ETag")
        if current is None or (wanted and current != wanted):
            log.info(
                "Blob %s/%s is %s; its event is dropped",
                container,
                name,
                "gone" if current is None else f"at {current}, not {wanted}",
            )
            with self._lock:
                stats.dropped += 1
            self.queue.delete(message)
            return
        attempt = message.dequeue_count
        detail = (
            f"blob {container}/{name} (ETag {current}, Event Grid, attempt {attempt}/"
            f"{self._max_attempts})"
        )
        with self._lock:
            stats.invocations += 1
            self._in_flight[function] += 1
        try:
            argument = trigger.argument(trigger.connection, container, name, client)
            self._invoker.invoke(spec, {spec.parameter: argument}, detail)
        except Exception:
            with self._lock:
                stats.failed_attempts += 1
            self._failed(trigger, message, document)
            return
        finally:
            with self._lock:
                self._in_flight[function] -= 1
        with self._lock:
            stats.succeeded += 1
        self.queue.delete(message)

    def _failed(self, trigger: _Trigger, message: QueueMessage, document: dict[str, Any]) -> None:
        if message.dequeue_count < self._max_attempts:
            self.queue.hide(message, max(0, round(self._retry_seconds)))
            timer = threading.Timer(self._retry_seconds, self._wake.set)
            timer.daemon = True
            timer.start()
            return
        poison = trigger.connection.queue(POISON_QUEUE)
        poison.create()
        poison.put(json.dumps(document))
        self.queue.delete(message)
        with self._lock:
            self.stats[trigger.spec.name].poisoned += 1
        log.error(
            "Blob %s/%s failed %d times in 'Functions.%s'; moved to queue %s",
            document.get("ContainerName"),
            document.get("BlobName"),
            message.dequeue_count,
            trigger.spec.name,
            POISON_QUEUE,
        )
