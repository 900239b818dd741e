"""A stand-in for an Event Grid custom topic (CloudEvents 1.0 input schema).

The app publishes its lifecycle events to a topic; locally they come here, so
the real ``azure-eventgrid`` ``EventGridPublisherClient`` runs unchanged:

- ``POST /eventgrid/api/events?api-version=...``: what the client sends for
  CloudEvents, a JSON array with ``Content-Type:
  application/cloudevents-batch+json`` (a single ``application/cloudevents+json``
  event is accepted too, as Event Grid does). Authenticated by the
  ``aeg-sas-key`` header, checked against the key generated when the emulator
  starts, or by any ``Authorization: Bearer`` token (the identity path; like
  the ARM routes, the emulator does not check tokens). Each event is kept as
  received, in order; the answer is an empty 200, like Event Grid's.
- ``GET /_emulator/topic``: ``{"events": [...], "rejected": N}``, the events
  received in order and how many requests were refused.
- ``DELETE /_emulator/topic``: forget the received events.
- ``POST /_emulator/faults/topic``: ``{"status": 500, "count": N}`` answers the
  next ``count`` publishes (default 1; ``null``: until faults are cleared) with
  ``status``, storing nothing. ``"retry_after": S`` adds ``Retry-After``;
  ``"retry_after_ms": M`` adds ``retry-after-ms``, which azure-core's retry
  policy also honours (tests use it to make the SDK's retries instant).

The routes are of kind ``admin`` so the ARM bearer check and the request
faults of the management API do not apply; the topic does its own auth.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import threading
from dataclasses import dataclass
from typing import Any

from local.azureml_emulator.arm import ArmError, bad_request
from local.azureml_emulator.http import Request, Response, Router

TOPIC_PATH = "/eventgrid/api/events"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
SINGLE_CONTENT_TYPE = "application/cloudevents+json"
MAX_BATCH_BYTES = 1024 * 1024  # Event Grid's limit on one publish request
REQUIRED_ATTRIBUTES = ("id", "source", "type", "specversion")


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: until cleared
    retry_after: int | None
    retry_after_ms: int | None


class TopicRoutes:
    def __init__(self) -> None:
        # Shaped like a real topic key: 32 random bytes, base64.
        self.key = base64.b64encode(secrets.token_bytes(32)).decode()
        self._events: list[dict[str, Any]] = []
        self._rejected = 0
        self._fault: _Fault | None = None
        self._lock = threading.Lock()

    def register(self, router: Router) -> None:
        router.add("POST", TOPIC_PATH, self.publish, kind="admin")
        router.add("GET", r"/_emulator/topic", self.list_events, kind="admin")
        router.add("DELETE", r"/_emulator/topic", self.forget_events, kind="admin")
        router.add("POST", r"/_emulator/faults/topic", self.set_fault, kind="admin")

    # -- the topic ---------------------------------------------------------------------

    def publish(self, request: Request) -> Response:
        try:
            self._authenticate(request)
            if not request.query.get("api-version"):
                raise ArmError(400, "BadRequest", "The api-version query parameter is missing.")
            self._injected_fault()
            events = _events(request)
        except ArmError:
            with self._lock:
                self._rejected += 1
            raise
        with self._lock:
            self._events.extend(events)
        return Response(200)

    def _authenticate(self, request: Request) -> None:
        key = request.header("aeg-sas-key")
        if key is not None:
            if hmac.compare_digest(key.encode(), self.key.encode()):
                return
            raise ArmError(401, "Unauthorized", "The request authorization key is not valid.")
        auth = request.header("Authorization") or ""
        if auth.startswith("Bearer ") and auth[len("Bearer ") :].strip():
            return
        raise ArmError(
            401,
            "Unauthorized",
            "Request must contain one of the 'aeg-sas-token' or 'aeg-sas-key' or "
            "'Authorization' header.",
        )

    def _injected_fault(self) -> None:
        with self._lock:
            fault = self._fault
            if fault is None:
                return
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
        code = "TooManyRequests" if fault.status == 429 else "InjectedFault"
        raise ArmError(fault.status, code, f"Injected topic fault: {fault.status}.", headers)

    # -- admin -----------------------------------------------------------------------

    def list_events(self, request: Request) -> Response:
        with self._lock:
            return Response(200, {"events": list(self._events), "rejected": self._rejected})

    def forget_events(self, request: Request) -> Response:
        with self._lock:
            self._events.clear()
            self._rejected = 0
        return Response(200, {"events": [], "rejected": 0})

    def set_fault(self, request: Request) -> Response:
        body = request.json() if request.body else {}
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object.")
        try:
            status = int(body.get("status", 500))
            count = body.get("count", 1)
            remaining = None if count is None else int(count)
            retry_after = _optional_int(body.get("retry_after"))
            retry_after_ms = _optional_int(body.get("retry_after_ms"))
        except (TypeError, ValueError) as exc:
            raise bad_request(f"Invalid topic fault: {exc}") from exc
        if not 400 <= status <= 599:
            raise bad_request("A topic fault's status must be 4xx or 5xx.")
        if remaining is not None and remaining < 1:
            raise bad_request("A topic fault's count must be 1 or more (or null).")
        with self._lock:
            self._fault = _Fault(status, remaining, retry_after, retry_after_ms)
        return Response(201, self.describe_fault())

    def describe_fault(self) -> dict[str, Any]:
        with self._lock:
            fault = self._fault
            if fault is None:
                return {"topic": None}
            return {
                "topic": {
                    "status": fault.status,
                    "count": fault.remaining,
                    "retry_after": fault.retry_after,
                    "retry_after_ms": fault.retry_after_ms,
                }
            }

    def clear_faults(self) -> None:
        with self._lock:
            self._fault = None


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _events(request: Request) -> list[dict[str, Any]]:
    """The CloudEvents in a publish request, checked like Event Grid's input schema."""
    content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type not in {BATCH_CONTENT_TYPE, SINGLE_CONTENT_TYPE}:
        raise ArmError(
            400,
            "BadRequest",
            f"This topic takes the CloudEvents 1.0 schema ({BATCH_CONTENT_TYPE}); "
            f"the request's content type is '{content_type or 'missing'}'.",
        )
    if len(request.body) > MAX_BATCH_BYTES:
        raise ArmError(
            413, "RequestEntityTooLarge", f"The request is over {MAX_BATCH_BYTES} bytes."
        )
    try:
        body = json.loads(request.body)
    except ValueError as exc:
        raise ArmError(400, "BadRequest", f"The body is not valid JSON: {exc}") from exc
    events = body if content_type == BATCH_CONTENT_TYPE else [body]
    if not isinstance(events, list) or not events:
        raise ArmError(400, "BadRequest", "A batch must be a non-empty JSON array.")
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise ArmError(400, "BadRequest", f"Event {index} is not a JSON object.")
        missing = [a for a in REQUIRED_ATTRIBUTES if not isinstance(event.get(a), str)]
        if missing:
            raise ArmError(
                400, "BadRequest", f"Event {index} lacks required attribute(s) {missing}."
            )
        if event["specversion"] != "1.0":
            raise ArmError(
                400, "BadRequest", f"Event {index} has specversion {event['specversion']!r}."
            )
    return events
