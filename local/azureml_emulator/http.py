"""HTTP plumbing: requests, responses, routing and the threaded TLS server.

Route kinds decide what the dispatcher checks before a handler runs:

- ``arm``: the management API. Needs a bearer token and an ``api-version``
  query parameter, like ARM; RBAC deny rules (``rbac.py``) and injected
  faults apply.
- ``history``: run history, a data-plane API the SDK calls with a bearer
  token but, in older releases, no ``api-version``. Bearer token, RBAC and
  faults as for ``arm``; no ``api-version`` check.
- ``scoring``: an endpoint's scoring routes. Key auth is the handler's job;
  injected faults apply.
- ``admin``: ``/_emulator/...`` routes for tests and demos. No auth, no faults.

Anything unrouted answers an ARM error naming the method and path, never a
silent 200.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from local.azureml_emulator.arm import ArmError

if TYPE_CHECKING:
    from local.azureml_emulator.requestlog import RequestLog

log = logging.getLogger("azureml_emulator")

RouteKind = Literal["arm", "history", "scoring", "admin"]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        if not self.body:
            raise ArmError(400, "BadRequest", "The request body is empty; JSON was expected.")
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ArmError(400, "BadRequest", f"The request body is not valid JSON: {exc}") from exc

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        self.headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return json.dumps(self.body).encode()


Handler = Callable[[Request], Response]
# Called before routing for arm and scoring requests: returns a response to
# answer instead (an injected fault) or None to go on.
FaultHook = Callable[[RouteKind, Request], Response | None]
# Called for authenticated (arm, history) requests: raises the 403 ArmError
# when the caller may not do this, returns otherwise.
AuthorizeHook = Callable[[Request], None]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    kind: RouteKind


class Router:
    """Method + regular-expression routes; paths match case-insensitively like ARM.

    Captured path segments are percent-decoded: the SDK quotes names it puts in
    URLs, and handlers validate and store the names, not their URL spelling.
    """

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, kind: RouteKind = "arm") -> None:
        self._routes.append(
            Route(method, re.compile(f"^{pattern}/?$", re.IGNORECASE), handler, kind)
        )

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        path_matched = False
        for route in self._routes:
            found = route.pattern.match(path)
            if found is None:
                continue
            path_matched = True
            if route.method == method:
                return route, {key: unquote(value) for key, value in found.groupdict().items()}
        if path_matched:
            raise ArmError(
                405, "MethodNotAllowed", f"The Azure ML emulator does not serve {method} {path}."
            )
        raise ArmError(
            400,
            "UnsupportedRoute",
            f"The Azure ML emulator does not serve {method} {path}: "
            "this route is not part of the emulated API subset.",
        )


class Dispatcher:
    """Turns a raw request into a response: routing, auth, faults, errors."""

    def __init__(
        self,
        router: Router,
        fault_hook: FaultHook | None = None,
        authorize: AuthorizeHook | None = None,
        after_hook: FaultHook | None = None,
        request_log: RequestLog | None = None,
    ) -> None:
        self.router = router
        self.fault_hook = fault_hook
        self.authorize = authorize
        # Called once a non-admin request was handled: a response replacing its reply.
        self.after_hook = after_hook
        # Non-admin requests with their times, so tests can see when clients came back.
        self.request_log = request_log

    def __call__(self, request: Request) -> Response:
        arrived = time.time()
        kind, response, injected = self._answer(request)
        if kind != "admin" and self.request_log is not None:
            self.request_log.record(
                kind, request, response, arrived=arrived, replied=time.time(), injected=injected
            )
        return response

    def _answer(self, request: Request) -> tuple[RouteKind | None, Response, bool]:
        """The route's kind (None: unrouted), the reply, and whether a fault made it."""
        kind: RouteKind | None = None
        try:
            route, params = self.router.match(request.method, request.path)
            kind = route.kind
            request.params = params
            if route.kind in ("arm", "history"):
                require_bearer(request)
            if route.kind == "arm":
                self._check_api_version(request)
            if route.kind in ("arm", "history") and self.authorize is not None:
                self.authorize(request)
            if route.kind != "admin" and self.fault_hook is not None:
                injected = self.fault_hook(route.kind, request)
                if injected is not None:
                    return kind, injected, True
        except ArmError as err:
            return kind, Response(err.status, err.body(), dict(err.headers)), False
        response = self._handle(route.handler, request)
        if route.kind != "admin" and self.after_hook is not None:
            # The request was carried out; an "after" fault loses its reply.
            lost = self.after_hook(route.kind, request)
            if lost is not None:
                return kind, lost, True
        return kind, response, False

    @staticmethod
    def _handle(handler: Handler, request: Request) -> Response:
        try:
            return handler(request)
        except ArmError as err:
            return Response(err.status, err.body(), dict(err.headers))
        except Exception as exc:  # a bug in the emulator: say so, loudly
            log.exception("emulator handler crashed on %s %s", request.method, request.path)
            return Response(
                500,
                {"error": {"code": "EmulatorBug", "message": f"{type(exc).__name__}: {exc}"}},
            )

    @staticmethod
    def _check_api_version(request: Request) -> None:
        if not request.query.get("api-version"):
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )


def bearer_token(request: Request) -> str:
    """The request's bearer token, or "" when it has none."""
    auth = request.header("Authorization") or ""
    if not auth.startswith("Bearer "):
        return ""
    return auth[len("Bearer ") :].strip()


def require_bearer(request: Request) -> None:
    """Like Azure: a request without a bearer token (any value) is 401."""
    if not bearer_token(request):
        raise ArmError(
            401,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing a bearer token.",
        )


def _make_handler(dispatch: Dispatcher) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "AzureMLEmulator/1.0"
        # The headers and the body go out in two writes; with Nagle's algorithm on,
        # the body waits for the client to acknowledge the headers, which it delays
        # (40 ms on Linux): every answer would take 40 ms more than Azure's own time
        # to answer, and a benchmark's added latency would be mostly this.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers=_HeaderView(self.headers),
                body=body,
            )
            response = dispatch(request)
            payload = response.encode()
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-ms-request-id", threading.current_thread().name)
            self.end_headers()
            self.wfile.write(payload)
            log.debug("%s %s -> %s", self.command, self.path, response.status)

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            # Requests are logged at debug level by _serve; keep stderr quiet.
            return

    return _Handler


class _HeaderView(Mapping[str, str]):
    """Case-insensitive read-only view of the request headers."""

    def __init__(self, message: Any) -> None:
        self._message = message

    def __getitem__(self, key: str) -> str:
        value = self._message.get(key)
        if value is None:
            raise KeyError(key)
        return str(value)

    def __iter__(self) -> Any:
        return iter(self._message.keys())

    def __len__(self) -> int:
        return len(self._message.keys())


class TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def make_server(host: str, port: int, dispatch: Dispatcher, cert: str, key: str) -> TlsServer:
    """Bind a threaded HTTPS server; ``serve_forever`` is the caller's to run."""
    server = TlsServer((host, port), _make_handler(dispatch))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
