"""Blob storage events for the local stack: a storage account's Event Grid system topic.

Azurite raises no events, so a blob trigger with the Event Grid source would
never run on it. ``StorageEvents`` stands in for what Azure does instead: it is
a reverse proxy in front of Azurite's Blob endpoint that forwards every request
unchanged (Shared Key signatures do not cover the host, so they stay valid),
and when Azurite confirms a call that creates a blob, publishes a
``Microsoft.Storage.BlobCreated`` event (Event Grid schema, the fields Azure
sends) to the subscriptions whose filters match. Azure raises BlobCreated for
Put Blob, Put Block List and Copy Blob; so does this stand-in (not for Put
Block, container operations, metadata or reads). Clients whose writes should
raise events use ``connection_string`` (Azurite's, with the proxy as
``BlobEndpoint``); writes straight to Azurite raise none.

Subscriptions (``subscribe``) are what ``az eventgrid system-topic
event-subscription create`` makes (scripts/postdeploy.sh): a webhook endpoint,
included event types, ``subject_begins_with`` / ``subject_ends_with``, and
``StringNotBeginsWith`` advanced filters on the subject. As in Event Grid, the
endpoint is validated when the subscription is created (the
``SubscriptionValidation`` handshake: it must echo the code), events are
delivered one per request (the default batch size) with ``aeg-event-type:
Notification``, and a failed delivery (no answer, 408, 429, 5xx) is retried
with backoff, up to ``max_attempts``; 400, 401, 403 and 413 are not retried.
Event Grid's own retry schedule starts at 10 seconds and grows to hours; here
it starts at ``retry_seconds`` and doubles, up to 30 seconds, so local runs end.

    with Azurite() as azurite, StorageEvents(azurite) as events:
        events.subscribe("datasets", host.blobs_url("dataset_uploaded"),
                         subject_begins_with="/blobServices/default/containers/datasets/blobs/")
        BlobServiceClient.from_connection_string(events.connection_string)...
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import logging
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
from azure.storage.blob import BlobServiceClient

from local.azurite import Azurite

log = logging.getLogger("local.storage_events")

BLOB_CREATED = "Microsoft.Storage.BlobCreated"
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/local"
    "/providers/Microsoft.Storage/storageAccounts/{account}"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host"}
_NOT_RETRIED = {400, 401, 403, 413}
_MAX_RETRY_SECONDS = 30.0


class SubscriptionValidationError(RuntimeError):
    """The endpoint did not complete the Event Grid handshake."""


@dataclass(frozen=True)
class Published:
    """One event as the topic published it, with when (``time.time()``)."""

    event: dict[str, Any]
    at: float


@dataclass
class Subscription:
    name: str
    endpoint: str
    included_event_types: tuple[str, ...]
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    subject_not_begins_with: tuple[str, ...] = ()
    delivered: list[Published] = field(default_factory=list)
    delivered_at: list[float] = field(default_factory=list)  # when each was accepted
    failed: list[Published] = field(default_factory=list)  # given up on

    def matches(self, event: dict[str, Any]) -> bool:
        subject = str(event["subject"])
        return (
            (not self.included_event_types or event["eventType"] in self.included_event_types)
            and subject.startswith(self.subject_begins_with)
            and subject.endswith(self.subject_ends_with)
            and not any(subject.startswith(p) for p in self.subject_not_begins_with)
        )


class StorageEvents:
    """The proxy and its subscriptions; start/stop, or a context manager."""

    def __init__(
        self,
        azurite: Azurite,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        retry_seconds: float = 1.0,
        max_attempts: int = 30,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._azurite = azurite
        self._upstream = urlsplit(azurite.blob_endpoint)
        self._host, self._port = host, port
        self.retry_seconds = retry_seconds
        self.max_attempts = max_attempts
        self.timeout_seconds = timeout_seconds
        self.subscriptions: dict[str, Subscription] = {}
        self.published: list[Published] = []
        self._queues: dict[str, queue.Queue[Published | None]] = {}
        self._workers: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._sequence = 0
        self._direct: BlobServiceClient | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        owner = self

        class Handler(_ProxyHandler):
            events = owner

        self._server = ThreadingHTTPServer((self._host, self._port), Handler)
        self._server.daemon_threads = True
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="storage-events", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        for pending in self._queues.values():
            pending.put(None)
        for worker in self._workers:
            worker.join(timeout=5)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StorageEvents:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what clients use --------------------------------------------------------------

    @property
    def blob_endpoint(self) -> str:
        return f"http://{self._host}:{self._port}{self._upstream.path}"

    @property
    def connection_string(self) -> str:
        """Azurite's connection string with the proxy as the Blob endpoint."""
        parts = [
            f"BlobEndpoint={self.blob_endpoint}" if p.startswith("BlobEndpoint=") else p
            for p in self._azurite.connection_string.split(";")
        ]
        return ";".join(parts)

    def subscribe(
        self,
        name: str,
        endpoint: str,
        *,
        included_event_types: Sequence[str] = (BLOB_CREATED,),
        subject_begins_with: str = "",
        subject_ends_with: str = "",
        subject_not_begins_with: Sequence[str] = (),
    ) -> Subscription:
        """Create (or replace) a subscription, after the endpoint's validation handshake."""
        code = secrets.token_hex(16)
        handshake = [
            {
                "id": str(uuid.uuid4()),
                "topic": TOPIC.format(account=self._azurite.account_name),
                "subject": "",
                "eventType": VALIDATION_EVENT,
                "eventTime": _now(),
                "data": {"validationCode": code, "validationUrl": ""},
                "dataVersion": "2",
                "metadataVersion": "1",
            }
        ]
        response = requests.post(
            endpoint,
            json=handshake,
            headers={"aeg-event-type": "SubscriptionValidation", "aeg-subscription-name": name},
            timeout=self.timeout_seconds,
        )
        answer = response.json() if response.ok else {}
        if not isinstance(answer, dict) or answer.get("validationResponse") != code:
            raise SubscriptionValidationError(
                f"{endpoint.split('?')[0]} answered the handshake with {response.status_code}"
            )
        subscription = Subscription(
            name,
            endpoint,
            tuple(included_event_types),
            subject_begins_with,
            subject_ends_with,
            tuple(subject_not_begins_with),
        )
        with self._lock:
            replaced = name in self.subscriptions
            self.subscriptions[name] = subscription
            if not replaced:
                pending: queue.Queue[Published | None] = queue.Queue()
                self._queues[name] = pending
                worker = threading.Thread(
                    target=self._deliver, args=(name,), name=f"events-{name}", daemon=True
                )
                self._workers.append(worker)
                worker.start()
        return subscription

    # --- publishing ----------------------------------------------------------------------

    def blob_created(self, api: str, path: str, headers: http.client.HTTPMessage) -> None:
        """Publish BlobCreated for the blob at ``path`` (``/<account>/<container>/<blob>``),
        created by a request Azurite answered with ``headers``."""
        account, _, rest = unquote(path).lstrip("/").partition("/")
        container, _, blob = rest.partition("/")
        if not container or not blob:
            return
        # Azure's event carries the blob's length and type; a Put Block List answer does not.
        length, content_type = 0, "application/octet-stream"
        with contextlib.suppress(Exception):
            properties = self._blobs().get_blob_client(container, blob).get_blob_properties()
            length = int(properties.size)
            content_type = str(properties.content_settings.content_type or content_type)
        with self._lock:
            self._sequence += 1
            sequencer = f"{self._sequence:032x}"
        event = {
            "topic": TOPIC.format(account=account),
            "subject": f"/blobServices/default/containers/{container}/blobs/{blob}",
            "eventType": BLOB_CREATED,
            "eventTime": _now(),
            "id": str(uuid.uuid4()),
            "data": {
                "api": api,
                "clientRequestId": headers.get("x-ms-client-request-id", ""),
                "requestId": headers.get("x-ms-request-id", str(uuid.uuid4())),
                "eTag": (headers.get("ETag") or "").strip('"'),
                "contentType": content_type,
                "contentLength": length,
                "blobType": "BlockBlob",
                "url": f"{self.blob_endpoint}/{path.lstrip('/').split('/', 1)[1]}",
                "sequencer": sequencer,
                "storageDiagnostics": {"batchId": str(uuid.uuid4())},
            },
            "dataVersion": "",
            "metadataVersion": "1",
        }
        published = Published(event, time.time())
        with self._lock:
            self.published.append(published)
            targets = [s for s in self.subscriptions.values() if s.matches(event)]
        for subscription in targets:
            self._queues[subscription.name].put(published)

    def _deliver(self, name: str) -> None:
        pending = self._queues[name]
        while True:
            item = pending.get()
            if item is None:
                return
            subscription = self.subscriptions[name]
            if self._post(subscription, item):
                subscription.delivered.append(item)
                subscription.delivered_at.append(time.time())
            else:
                subscription.failed.append(item)

    def _post(self, subscription: Subscription, item: Published) -> bool:
        delay = self.retry_seconds
        for attempt in range(1, self.max_attempts + 1):
            status = 0
            with contextlib.suppress(requests.RequestException):
                status = requests.post(
                    subscription.endpoint,
                    data=json.dumps([item.event]),
                    headers={
                        "Content-Type": "application/json",
                        "aeg-event-type": "Notification",
                        "aeg-subscription-name": subscription.name,
                        "aeg-delivery-count": str(attempt - 1),
                        "aeg-data-version": "",
                        "aeg-metadata-version": "1",
                    },
                    timeout=self.timeout_seconds,
                ).status_code
            if 200 <= status < 300:
                return True
            if status in _NOT_RETRIED:
                break
            log.info("delivery to %s failed (%s); retrying", subscription.name, status or "error")
            time.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_SECONDS)
        log.warning("gave up delivering event %s to %s", item.event["id"], subscription.name)
        return False

    # --- forwarding ----------------------------------------------------------------------

    def _blobs(self) -> BlobServiceClient:
        """A client straight to Azurite (its reads raise no events)."""
        with self._lock:
            if self._direct is None:
                self._direct = BlobServiceClient.from_connection_string(
                    self._azurite.connection_string
                )
            return self._direct

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[http.client.HTTPResponse, bytes]:
        connection = http.client.HTTPConnection(
            self._upstream.hostname or "127.0.0.1",
            self._upstream.port or 80,
            timeout=self.timeout_seconds,
        )
        try:
            connection.request(method, path, body=body if body else None, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        return response, data


def creating_api(method: str, path: str, headers: dict[str, str], status: int) -> str | None:
    """The Blob API a successful request was, if Azure raises BlobCreated for it."""
    if method != "PUT" or status not in (201, 202):
        return None
    query = parse_qs(urlsplit(path).query)
    if "restype" in query:
        return None  # a container operation
    comp = query.get("comp", [""])[0]
    if comp == "blocklist":
        return "PutBlockList"
    if comp:
        return None  # Put Block, metadata, tier, ...: no new blob version
    lowered = {k.lower() for k in headers}
    if "x-ms-copy-source" in lowered:
        return "CopyBlob"
    if "x-ms-blob-type" in lowered:
        return "PutBlob"
    return None


class _ProxyHandler(BaseHTTPRequestHandler):
    events: StorageEvents
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream = self.events._upstream
        headers["Host"] = upstream.netloc
        try:
            response, data = self.events.forward(self.command, self.path, headers, body)
        except OSError as error:
            self.send_error(502, f"Azurite did not answer: {error}")
            return
        self.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and data:
            self.wfile.write(data)
        self.wfile.flush()
        # As on Azure, the event follows the operation: the client has its answer first.
        api = creating_api(self.command, self.path, headers, response.status)
        if api is not None:
            try:
                self.events.blob_created(api, urlsplit(self.path).path, response.headers)
            except Exception:
                log.exception("could not publish the event of %s %s", self.command, self.path)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _handle


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
