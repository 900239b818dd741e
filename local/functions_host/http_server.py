"""The host's HTTP front: function routes, the Event Grid webhook, two admin routes.

* ``/<routePrefix>/<route>`` (``/api/...`` by default): HTTP-triggered functions.
  Auth levels as in the real host: ``anonymous``; ``function`` (a function key or
  the master key, in the ``x-functions-key`` header or the ``code`` query
  parameter); ``admin`` (the master key only). A missing or wrong key is a 401 with
  an empty body; no matching route (path or method) a 404; an exception in the
  function a 500, logged.
* ``POST /runtime/webhooks/eventgrid?functionName=NAME&code=<system key>``: Event
  Grid deliveries (Event Grid schema) for ``eventGridTrigger`` functions, with the
  ``eventgrid_extension`` system key (or the master key). ``aeg-event-type:
  SubscriptionValidation`` answers the validation handshake; ``Notification``
  invokes the function once per event and answers 200 if all succeeded, 500 if
  one failed (so Event Grid would deliver again).
* ``POST /runtime/webhooks/blobs?functionName=Host.Functions.NAME&code=<system key>``:
  Event Grid deliveries of storage events for blob triggers with the Event Grid
  source, with the ``blobs_extension`` system key (or the master key); the same
  handshakes, and 202 Accepted once each ``BlobCreated`` of the trigger's blobs
  is queued (``blob_events.py`` runs them).
* ``GET /admin/host/status`` (master key): the host's id and state, plus local
  counters per trigger. ``POST /admin/functions/NAME`` (master key) runs a timer
  function now, as Core Tools does for non-HTTP functions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from local.functions_host.blob_events import BlobEventTriggers
from local.functions_host.config import HostStartError
from local.functions_host.indexing import EventGridSpec, HttpSpec
from local.functions_host.invocations import Invoker
from local.functions_host.keys import HostKeys

log = logging.getLogger("host.http")

EVENTGRID_PATH = "/runtime/webhooks/eventgrid"
EVENTGRID_SYSTEM_KEY = "eventgrid_extension"
BLOBS_PATH = "/runtime/webhooks/blobs"
BLOBS_SYSTEM_KEY = "blobs_extension"
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"


class _Response:
    def __init__(
        self,
        status: int,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []

    @classmethod
    def json(cls, status: int, document: Any) -> _Response:
        return cls(
            status,
            json.dumps(document).encode("utf-8"),
            [("Content-Type", "application/json; charset=utf-8")],
        )

    @classmethod
    def text(cls, status: int, text: str) -> _Response:
        return cls(status, text.encode("utf-8"), [("Content-Type", "text/plain; charset=utf-8")])


class _Request:
    def __init__(
        self,
        method: str,
        raw_path: str,
        headers: dict[str, str],
        body: bytes,
        host_header: str,
    ) -> None:
        parts = urlsplit(raw_path)
        self.method = method
        self.raw_path = raw_path
        self.path = parts.path
        self.query_string = parts.query
        params: dict[str, list[str]] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            params.setdefault(name, []).append(value)
        # Repeated parameters join with commas, as ASP.NET's StringValues print.
        self.params = {name: ",".join(values) for name, values in params.items()}
        self.headers = headers
        self.body = body
        self.url = f"http://{host_header}{raw_path}"

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def key(self) -> str | None:
        return self.header("x-functions-key") or self.params.get("code") or None


class HttpFront:
    """Routes requests to functions; runs a ``ThreadingHTTPServer`` in a thread."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        route_prefix: str,
        http_functions: list[HttpSpec],
        eventgrid_functions: list[EventGridSpec],
        keys: HostKeys,
        blob_events: BlobEventTriggers | None = None,
        invoker: Invoker,
        status: Callable[[], dict[str, Any]],
        run_function: Callable[[str], tuple[int, str]],
    ) -> None:
        self.route_prefix = route_prefix.strip("/")
        # Most specific first (literal segments beat parameters); ties keep app order.
        self.http_functions = sorted(http_functions, key=lambda s: s.route.precedence)
        self.eventgrid_functions = {spec.name: spec for spec in eventgrid_functions}
        self.blob_events = blob_events
        self.keys = keys
        self._invoker = invoker
        self._status = status
        self._run_function = run_function
        self._draining = threading.Event()
        self._thread: threading.Thread | None = None
        front = self

        class Handler(_Handler):
            owner = front

        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as error:
            raise HostStartError(f"cannot listen on http://{host}:{port}: {error}") from error
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-server", daemon=True
        )
        self._thread.start()

    def drain(self) -> None:
        """Answer 503 to new requests from now on (the host is stopping)."""
        self._draining.set()

    def close(self) -> None:
        if self._thread is not None:  # shutdown() waits for serve_forever: only if it ran
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    # --- dispatch ------------------------------------------------------------------

    def dispatch(self, request: _Request) -> _Response:
        if self._draining.is_set():
            return _Response(HTTPStatus.SERVICE_UNAVAILABLE)
        path = request.path
        lowered = path.lower().rstrip("/")
        if lowered == EVENTGRID_PATH:
            return self._eventgrid(request)
        if lowered == BLOBS_PATH:
            return self._blob_events(request)
        if lowered == "/admin" or lowered.startswith("/admin/"):
            return self._admin(request, lowered)
        running = _Response.text(200, "The local Functions host is running.\n")
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        if prefix:
            if lowered == "":
                return running
            if not (lowered == prefix.lower() or lowered.startswith(prefix.lower() + "/")):
                return _Response(HTTPStatus.NOT_FOUND)
            return self._route(request, path[len(prefix) :])
        response = self._route(request, path)
        return running if response.status == 404 and lowered == "" else response

    def _route(self, request: _Request, sub_path: str) -> _Response:
        for spec in self.http_functions:
            route_params = spec.route.match(sub_path)
            if route_params is None or request.method not in spec.methods:
                continue
            if spec.auth_level == "function" and not self.keys.allows_function(request.key):
                return _Response(HTTPStatus.UNAUTHORIZED)
            if spec.auth_level == "admin" and not self.keys.is_master(request.key):
                return _Response(HTTPStatus.UNAUTHORIZED)
            return self._invoke_http(spec, request, route_params)
        return _Response(HTTPStatus.NOT_FOUND)

    def _invoke_http(
        self, spec: HttpSpec, request: _Request, route_params: dict[str, str]
    ) -> _Response:
        http_request = func.HttpRequest(
            request.method,
            request.url,
            headers=request.headers,
            params=request.params,
            route_params=route_params,
            body=request.body,
        )
        try:
            result = self._invoker.invoke(
                spec,
                {spec.parameter: http_request},
                f"HTTP {request.method} {request.path}",
                describe=_describe_http_result,
            )
        except Exception:
            return _Response(HTTPStatus.INTERNAL_SERVER_ERROR)
        return _http_response(spec, result)

    def _eventgrid(self, request: _Request) -> _Response:
        if request.method == "OPTIONS":
            # CloudEvents abuse-protection handshake.
            origin = request.header("webhook-request-origin") or "*"
            return _Response(200, headers=[("WebHook-Allowed-Origin", origin)])
        if request.method != "POST":
            return _Response(HTTPStatus.METHOD_NOT_ALLOWED)
        if not self.keys.allows_system(EVENTGRID_SYSTEM_KEY, request.key):
            return _Response(HTTPStatus.UNAUTHORIZED)
        name = request.params.get("functionName", "")
        spec = self.eventgrid_functions.get(name)
        if spec is None:
            return _Response.text(404, f"No Event Grid trigger function named '{name}'.\n")
        try:
            document = json.loads(request.body or b"null")
        except ValueError:
            return _Response.text(400, "The body is not JSON.\n")
        events = document if isinstance(document, list) else [document]
        if not all(isinstance(e, dict) for e in events):
            return _Response.text(400, "Expected a JSON array of Event Grid events.\n")
        kind = (request.header("aeg-event-type") or "").lower()
        if kind == "subscriptionvalidation":
            return _validation_response(events, name)
        if kind == "unsubscribe":
            return _Response(HTTPStatus.ACCEPTED)
        if kind != "notification":
            return _Response.text(400, "Unknown or missing aeg-event-type header.\n")
        failed = 0
        for event in events:
            try:
                grid_event = _eventgrid_event(event)
            except (KeyError, TypeError, ValueError) as error:
                return _Response.text(400, f"Not an Event Grid schema event: {error!r}\n")
            try:
                self._invoker.invoke(
                    spec,
                    {spec.parameter: grid_event},
                    f"Event Grid {grid_event.event_type} {grid_event.subject} (id {grid_event.id})",
                )
            except Exception:
                failed += 1
        if failed:
            return _Response(HTTPStatus.INTERNAL_SERVER_ERROR)
        return _Response(HTTPStatus.OK)

    def _blob_events(self, request: _Request) -> _Response:
        """Storage events for Event Grid-source blob triggers: queued, then 202."""
        if request.method == "OPTIONS":
            origin = request.header("webhook-request-origin") or "*"
            return _Response(200, headers=[("WebHook-Allowed-Origin", origin)])
        if request.method != "POST":
            return _Response(HTTPStatus.METHOD_NOT_ALLOWED)
        if not self.keys.allows_system(BLOBS_SYSTEM_KEY, request.key):
            return _Response(HTTPStatus.UNAUTHORIZED)
        name = request.params.get("functionName", "").removeprefix("Host.Functions.")
        sink = self.blob_events
        if sink is None or name not in sink.functions:
            return _Response.text(
                404, f"No blob trigger with the Event Grid source named '{name}'.\n"
            )
        try:
            document = json.loads(request.body or b"null")
        except ValueError:
            return _Response.text(400, "The body is not JSON.\n")
        events = document if isinstance(document, list) else [document]
        if not all(isinstance(e, dict) for e in events):
            return _Response.text(400, "Expected a JSON array of events.\n")
        kind = (request.header("aeg-event-type") or "").lower()
        if kind == "subscriptionvalidation":
            return _validation_response(events, name)
        if kind == "unsubscribe":
            return _Response(HTTPStatus.ACCEPTED)
        if kind not in ("notification", ""):  # CloudEvents deliveries carry no header
            return _Response.text(400, "Unknown aeg-event-type header.\n")
        try:
            for event in events:
                sink.accept(name, event)
        except Exception:
            log.exception("Could not queue the blob events for 'Functions.%s'", name)
            return _Response(HTTPStatus.INTERNAL_SERVER_ERROR)  # Event Grid delivers again
        return _Response(HTTPStatus.ACCEPTED)

    def _admin(self, request: _Request, lowered: str) -> _Response:
        if not self.keys.is_master(request.key):
            return _Response(HTTPStatus.UNAUTHORIZED)
        if lowered == "/admin/host/status" and request.method == "GET":
            return _Response.json(200, self._status())
        prefix = "/admin/functions/"
        if lowered.startswith(prefix) and request.method == "POST":
            name = unquote(request.path.rstrip("/")[len(prefix) :])
            status, message = self._run_function(name)
            return _Response.text(status, message + "\n") if message else _Response(status)
        return _Response(HTTPStatus.NOT_FOUND)


def _validation_response(events: list[dict[str, Any]], name: str) -> _Response:
    """The Event Grid subscription handshake: echo the validation code."""
    for event in events:
        if event.get("eventType") == VALIDATION_EVENT:
            data = event.get("data")
            code = data.get("validationCode") if isinstance(data, dict) else None
            if isinstance(code, str):
                log.info("Event Grid subscription validated for 'Functions.%s'", name)
                return _Response.json(200, {"validationResponse": code})
    return _Response.text(400, "No subscription validation event with a code.\n")


def _eventgrid_event(event: Mapping[str, Any]) -> func.EventGridEvent:
    if "specversion" in event and "eventType" not in event:
        raise ValueError("CloudEvents schema events are not supported by the local host")
    time_text = event.get("eventTime")
    event_time = (
        dt.datetime.fromisoformat(str(time_text).replace("Z", "+00:00")) if time_text else None
    )
    return func.EventGridEvent(
        id=str(event["id"]),
        data=event.get("data"),  # type: ignore[arg-type]  # any JSON value, as the worker
        topic=str(event.get("topic", "")),
        subject=str(event["subject"]),
        event_type=str(event["eventType"]),
        event_time=event_time,
        data_version=str(event.get("dataVersion", "")),
    )


def _describe_http_result(result: Any) -> str:
    if isinstance(result, func.HttpResponse):
        return f" -> {result.status_code}"
    return ""


def _http_response(spec: HttpSpec, result: Any) -> _Response:
    if isinstance(result, func.HttpResponse):
        headers = [(str(k), str(v)) for k, v in result.headers.items()]
        if not any(k.lower() == "content-type" for k, _ in headers):
            mimetype = str(result.mimetype)
            text = mimetype.startswith("text/")
            content_type = f"{mimetype}; charset={result.charset}" if text else mimetype
            headers.append(("Content-Type", content_type))
        return _Response(int(result.status_code), bytes(result.get_body()), headers)
    if result is None:
        return _Response(HTTPStatus.NO_CONTENT)
    if isinstance(result, str | bytes):
        body = result.encode("utf-8") if isinstance(result, str) else result
        return _Response(200, body, [("Content-Type", "text/plain; charset=utf-8")])
    log.error(
        "Function 'Functions.%s' returned %s, not a func.HttpResponse", spec.name, type(result)
    )
    return _Response(HTTPStatus.INTERNAL_SERVER_ERROR)


class _Handler(BaseHTTPRequestHandler):
    owner: HttpFront
    protocol_version = "HTTP/1.1"
    server_version = "local-functions-host"

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self._send(_Response.text(400, "Bad request body.\n"))
            return
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        request = _Request(
            self.command,
            self.path,
            headers,
            body,
            headers.get("host") or f"{self.owner.host}:{self.owner.port}",
        )
        try:
            response = self.owner.dispatch(request)
        except Exception:
            log.exception("Unhandled error answering %s %s", self.command, self.path)
            response = _Response(HTTPStatus.INTERNAL_SERVER_ERROR)
        if response.status in (401, 404, 405, 503):
            log.info("%s %s -> %d", self.command, request.path, response.status)
        self._send(response)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline().split(b";", 1)[0].strip()
                size = int(size_line or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, QUERY, ...) is routed too, so it gets the host's
        # 404 for an undeclared method rather than http.server's 501.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)
