"""The HTTP API without Azure Functions types: a request's parts in, a ``Reply`` out.

Each route in ``function_app`` calls one function here with what the request
carried (body bytes, query parameters, the run id in the path) and
``get_services`` (``shared.composition.services``: settings are read and clients
built only when a request needs them), then turns the ``Reply`` into its
response. The rules live here as pure functions with unit tests: blob names
and URLs, request bodies, listing queries, paging tokens, problem details.
The OpenAPI document describing all of it is ``shared.http.openapi``.
The pipeline (``intake``, ``control``) is imported by the routes that start or
change runs, when they run: health, listing and reading a run load only the
ledger's side of the app, which keeps a new worker's first answer cheap.

Errors are RFC 9457 problem details (``application/problem+json``)::

    RequestInvalid: fields of the body or query          400, ``errors`` names each
    a body over MAX_BODY_BYTES                           413
    a blob name that is no dataset upload                422, ``errors`` names ``blob``
    RunNotFound, a malformed run id, a missing blob      404
    NotAllowedNow: the run's state forbids it            409
    SettingsError                                        500, naming every setting
    RetryableError: throttling, 5xx, unreachable         503, ``Retry-After`` if known
    PermanentError: a service refused                    502
    anything else (a bug)                                500, logged, no detail

A blob is named, never fetched by URL: a URL is accepted only if it points into
the configured container of the dataset storage account, and is reduced to the
blob name; the store then reads ``<container>/<name>`` exactly as it does for
the blob trigger. So the API cannot be used to make the app reach other hosts.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from shared.domain.approval import Approver
from shared.domain.errors import (
    InvalidInput,
    NotAllowedNow,
    PermanentError,
    RetryableError,
    RunNotFound,
    SettingsError,
)
from shared.domain.hyperparameters import ALLOWED
from shared.domain.ledger import MAX_PAGE, RunSummary
from shared.domain.ports import Services
from shared.domain.runs import Run, RunState
from shared.domain.settings import DATASET_CONNECTION, storage_connection
from shared.pipeline import health as liveness

log = logging.getLogger(__name__)

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE = "urn:finetune-autopilot:problem:"
MAX_BODY_BYTES = 64 << 10
MAX_BLOB_NAME = 1024  # Azure's limit on blob names
DEFAULT_PAGE = 20
START_FIELDS = ("blob", "hyperparameters", "force")
APPROVE_FIELDS = ("by",)
MAX_NAME = 200  # characters of a name an approver gives
KEY_HEADER = "x-functions-key"
KEY_PARAMETER = "code"
PRINCIPAL_HEADER = "x-ms-client-principal-name"  # App Service authentication's
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
INTERNAL_FIELDS = ("lease_owner", "lease_until", "published")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
_TOKEN_VERSION = "v1."
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
_MAX_TOKEN = 1024

# Every problem type this API answers: status and title (the same for every instance).
PROBLEMS: dict[str, tuple[int, str]] = {
    "invalid-request": (400, "The request is invalid"),
    "run-not-found": (404, "No such run"),
    "blob-not-found": (404, "No such blob in the dataset container"),
    "file-not-found": (404, "No such file of the dashboard"),
    "not-allowed-now": (409, "The run's state does not allow this request"),
    "body-too-large": (413, "The request body is too large"),
    "not-a-dataset": (422, "The blob is not a dataset upload"),
    "not-unicode": (422, "The request holds text that is not valid Unicode"),
    "settings-invalid": (500, "The app's settings are missing or invalid"),
    "internal-error": (500, "Internal error"),
    "dependency-failed": (502, "A service the app depends on refused the request"),
    "unavailable": (503, "A service the app depends on is unavailable; try again later"),
    "unhealthy": (503, "The app cannot serve requests"),
}


@dataclass(frozen=True)
class Reply:
    """What a route answers: status, JSON body, media type, extra headers; or, with
    ``content`` set, that text as is instead of the body (the dashboard's files)."""

    status: int
    body: Mapping[str, Any]
    media_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    content: str | None = None

    def text(self) -> str:
        return json.dumps(self.body) if self.content is None else self.content


@dataclass(frozen=True)
class FieldError:
    """One problem with one field; ``field`` is "" for the body as a whole."""

    field: str
    detail: str
    location: str = "body"  # "body", "query" or "path"

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "in": self.location, "detail": self.detail}


class RequestInvalid(InvalidInput):
    """Fields of a request break the contract; ``kind`` is the problem type."""

    def __init__(self, errors: Sequence[FieldError], kind: str = "invalid-request") -> None:
        self.errors = tuple(errors)
        self.kind = kind
        super().__init__("; ".join(_described(e) for e in self.errors))


def _described(error: FieldError) -> str:
    return f"{error.field}: {error.detail}" if error.field else error.detail


def problem(
    kind: str,
    detail: str,
    *,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Reply:
    """An RFC 9457 problem details reply of type ``kind`` (a key of ``PROBLEMS``)."""
    status, title = PROBLEMS[kind]
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + kind,
        "title": title,
        "status": status,
        "detail": detail,
        **extensions,
    }
    if errors:
        body["errors"] = [e.to_dict() for e in errors]
    return Reply(status, body, PROBLEM_JSON, dict(headers or {}))


def retry_after_header(seconds: float | None) -> dict[str, str]:
    """``Retry-After`` in whole seconds (at least 1), or nothing when not known."""
    if seconds is None or not math.isfinite(seconds):
        return {}
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


# -- blob names and URLs ---------------------------------------------------------------


def dataset_container_url(env: Mapping[str, str], container: str) -> str | None:
    """The URL of ``container`` in the dataset storage account (``DATASET_STORAGE``),
    resolved as the storage SDK resolves it; None if the setting names no account."""
    name = DATASET_CONNECTION
    endpoint: str | None = None
    raw = env.get(name, "").strip()
    if raw:
        parts = {
            key.strip().lower(): value.strip()
            for key, _, value in (p.partition("=") for p in raw.split(";"))
            if key.strip()
        }
        if parts.get("usedevelopmentstorage", "").lower() == "true":
            endpoint = "http://127.0.0.1:10000/devstoreaccount1"
        elif parts.get("blobendpoint"):
            endpoint = parts["blobendpoint"]
        elif parts.get("accountname"):
            protocol = parts.get("defaultendpointsprotocol") or "https"
            suffix = parts.get("endpointsuffix") or "core.windows.net"
            endpoint = f"{protocol}://{parts['accountname']}.blob.{suffix}"
    else:
        try:
            endpoint = storage_connection(env, name, "blob")[1]
        except SettingsError:
            return None
    if not endpoint:
        return None
    return f"{endpoint.rstrip('/')}/{container}"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a blob name in the dataset container, or None."""
    if not name:
        return "must not be empty"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return (
            "must be valid Unicode text: it holds a lone UTF-16 surrogate (not encodable as UTF-8)"
        )
    if len(name) > MAX_BLOB_NAME:
        return f"longer than {MAX_BLOB_NAME} characters"
    if _SCHEME.match(name):
        return "not a blob name, and not a URL of the dataset container"
    if name.startswith("/"):
        return "absolute paths are not allowed: give the name within the dataset container"
    if "\\" in name:
        return "backslashes are not allowed"
    if "?" in name or "#" in name:
        return "query strings and fragments are not allowed"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "control characters are not allowed"
    segments = name.split("/")
    if any(s in (".", "..") for s in segments):
        return "'.' and '..' path segments are not allowed"
    if "" in segments:
        return "empty path segments ('//' or a trailing '/') are not allowed"
    return None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _name_from_url(url: str, container_url: str | None) -> str:
    """The blob name a URL of the dataset container points at; ``ValueError`` otherwise."""
    if container_url is None:
        raise ValueError("URLs cannot be checked (no dataset storage account is configured)")
    expected = urlsplit(container_url)
    if "?" in url or "#" in url:
        raise ValueError("query strings and fragments are not allowed")
    if "\\" in url:
        raise ValueError("backslashes are not allowed")
    given = urlsplit(url)
    outside = ValueError(
        f"only blob names, or URLs of the dataset container ({container_url}/...), are accepted"
    )
    if given.scheme.lower() != expected.scheme.lower() or given.username or given.password:
        raise outside
    try:
        port = given.port or _default_port(given.scheme.lower())
    except ValueError:
        raise outside from None
    same_host = given.hostname == expected.hostname
    if not same_host or port != (expected.port or _default_port(expected.scheme.lower())):
        raise outside
    prefix = expected.path.rstrip("/") + "/"
    if not given.path.startswith(prefix):
        raise outside
    try:
        return unquote(given.path[len(prefix) :], errors="strict")
    except UnicodeDecodeError:
        raise ValueError("the URL's path is not valid percent-encoded UTF-8") from None


def blob_name(value: object, container_url: str | None) -> str:
    """The blob name ``value`` refers to: a name within the dataset container, or a URL
    of exactly that container; ``RequestInvalid`` naming ``blob`` for anything else."""
    if not isinstance(value, str):
        raise RequestInvalid([FieldError("blob", "must be a string: a blob name or its URL")])
    name = value
    if _SCHEME.match(value) and value.split(":", 1)[0].lower() in ("http", "https"):
        try:
            name = _name_from_url(value, container_url)
        except ValueError as exc:
            raise RequestInvalid([FieldError("blob", str(exc))]) from None
    why = name_problem(name)
    if why is not None:
        # Well-formed JSON can still carry a lone surrogate: no blob can have that
        # name, and nothing downstream can encode it (422, not a crash).
        kind = "not-unicode" if "surrogate" in why else "invalid-request"
        raise RequestInvalid([FieldError("blob", why)], kind=kind)
    return name


# -- request bodies ----------------------------------------------------------------------


@dataclass(frozen=True)
class StartRequest:
    blob: str
    hyperparameters: dict[str, str]
    force: bool


def _json_body(body: bytes) -> object:
    if len(body) > MAX_BODY_BYTES:
        raise RequestInvalid(
            [FieldError("", f"the body is over {MAX_BODY_BYTES} bytes")], kind="body-too-large"
        )

    def no_constants(token: str) -> object:
        raise ValueError(f"{token} is not JSON")

    try:
        return json.loads(body, parse_constant=no_constants)
    except (ValueError, RecursionError) as exc:
        raise RequestInvalid([FieldError("", f"the body is not JSON: {exc}")]) from None


def hyperparameter_errors(value: object) -> tuple[dict[str, str], list[FieldError]]:
    """Normalised hyperparameter overrides and one error per bad entry."""
    if not isinstance(value, dict):
        return {}, [FieldError("hyperparameters", "must be an object of name: value")]
    good: dict[str, str] = {}
    errors: list[FieldError] = []
    for name, raw in value.items():
        where = f"hyperparameters.{name[:100]}"
        rule = ALLOWED.get(name)
        if rule is None:
            allowed = ", ".join(sorted(ALLOWED))
            errors.append(FieldError(where, f"not an allowed hyperparameter (allowed: {allowed})"))
        elif isinstance(raw, bool) or not isinstance(raw, str | int | float):
            errors.append(FieldError(where, f"must be a string or a number: {rule.describe}"))
        else:
            try:
                good[name] = rule.check(str(raw))
            except ValueError:
                errors.append(FieldError(where, f"must be {rule.describe}, got {raw!r}"))
    return good, errors


def parse_start(body: bytes, container_url: str | None) -> StartRequest:
    """The body of ``POST /api/runs``, checked; ``RequestInvalid`` names every bad field
    (400), or ``blob`` alone when it names no dataset upload (422)."""
    document = _json_body(body)
    if not isinstance(document, dict):
        raise RequestInvalid([FieldError("", "the body must be a JSON object")])
    errors = [
        FieldError(key[:100], f"unknown field (allowed: {', '.join(START_FIELDS)})")
        for key in document
        if key not in START_FIELDS
    ]
    name = ""
    kind = "invalid-request"
    if "blob" not in document:
        errors.append(FieldError("blob", "required: a blob name in the dataset container"))
    else:
        try:
            name = blob_name(document["blob"], container_url)
        except RequestInvalid as exc:
            errors.extend(exc.errors)
            kind = exc.kind
    hyper, hyper_errors = hyperparameter_errors(document.get("hyperparameters", {}))
    errors.extend(hyper_errors)
    force = document.get("force", False)
    if not isinstance(force, bool):
        errors.append(FieldError("force", "must be true or false"))
    if errors:  # a 422 kind stands only when it is the one problem, like the skip rule
        raise RequestInvalid(errors, kind=kind if len(errors) == 1 else "invalid-request")
    from shared.pipeline.intake import skip_reason

    reason = skip_reason(name)
    if reason is not None:
        detail = f"{name} is not a dataset upload: {reason}"
        raise RequestInvalid([FieldError("blob", detail)], kind="not-a-dataset")
    return StartRequest(name, hyper, bool(force))


def parse_approve(body: bytes) -> str:
    """The body of ``POST /api/runs/{id}/approve`` (and ``.../rollback``): empty, or
    ``{"by": name}``; the name the caller gives ("" if none)."""
    if not body.strip():
        return ""
    document = _json_body(body)
    if not isinstance(document, dict):
        raise RequestInvalid([FieldError("", "the body must be a JSON object, or empty")])
    errors = [
        FieldError(key[:100], f"unknown field (allowed: {', '.join(APPROVE_FIELDS)})")
        for key in document
        if key not in APPROVE_FIELDS
    ]
    by = document.get("by", "")
    name = by.strip() if isinstance(by, str) else ""
    if (not name and "by" in document) or len(name) > MAX_NAME:
        errors.append(FieldError("by", f"must be a name: 1 to {MAX_NAME} characters"))
    if errors:
        raise RequestInvalid(errors)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        # Well-formed JSON can carry a lone surrogate; no log or record can hold it.
        why = [FieldError("by", "must be valid Unicode text")]
        raise RequestInvalid(why, kind="not-unicode") from None
    return name


def approver_of(
    headers: Mapping[str, str],
    params: Mapping[str, str],
    claimed_by: str,
    approver_keys: Mapping[str, str],
) -> Approver:
    """Who is approving: named from the function key the request presented (header,
    else ``code``), which is only fingerprinted, never kept (``shared.domain.approval``)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    key = lowered.get(KEY_HEADER) or params.get(KEY_PARAMETER) or ""
    principal = lowered.get(PRINCIPAL_HEADER, "")
    return Approver.identify(key, principal, approver_keys, claimed_by)


# -- listing queries and paging tokens -----------------------------------------------------


@dataclass(frozen=True)
class ListQuery:
    state: RunState | None = None
    limit: int = DEFAULT_PAGE
    position: str | None = None  # the ledger's continuation


def encode_continuation(position: str) -> str:
    """An opaque, URL-safe token for the ledger's continuation ``position``."""
    data = base64.urlsafe_b64encode(position.encode("utf-8")).decode("ascii").rstrip("=")
    return _TOKEN_VERSION + data


def decode_continuation(token: str) -> str:
    """The ledger's position in ``token``; ``ValueError`` if this API never gave it out."""
    invalid = ValueError("not a continuation token from a previous page")
    data = token[len(_TOKEN_VERSION) :]
    if len(token) > _MAX_TOKEN or not token.startswith(_TOKEN_VERSION):
        raise invalid
    if not _TOKEN_CHARS.match(data):
        raise invalid
    try:
        position = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if encode_continuation(position) != token:  # only the canonical spelling
        raise invalid
    return position


def parse_listing(params: Mapping[str, str]) -> ListQuery:
    """The query of ``GET /api/runs``; unknown parameters (e.g. ``code``) are ignored."""
    errors: list[FieldError] = []
    state = None
    if "state" in params:
        try:
            state = RunState(params["state"])
        except ValueError:
            states = ", ".join(s.value for s in RunState)
            errors.append(FieldError("state", f"must be one of {states}", "query"))
    limit = DEFAULT_PAGE
    if "limit" in params:
        raw = params["limit"]
        if re.fullmatch(r"[1-9][0-9]{0,2}", raw) and int(raw) <= MAX_PAGE:
            limit = int(raw)
        else:
            errors.append(FieldError("limit", f"must be an integer from 1 to {MAX_PAGE}", "query"))
    position = None
    if "continuation" in params:
        try:
            position = decode_continuation(params["continuation"])
        except ValueError as exc:
            errors.append(FieldError("continuation", str(exc), "query"))
    if errors:
        raise RequestInvalid(errors)
    return ListQuery(state, limit, position)


# -- runs as the API shows them -------------------------------------------------------------


def public_record(run: Run) -> dict[str, Any]:
    """The whole run record without the reconciler's internals (lease, outbox)."""
    record = run.to_dict()
    for name in INTERNAL_FIELDS:
        record.pop(name, None)
    return record


def run_location(run_id: str) -> str:
    return f"/api/runs/{quote(run_id, safe='')}"


def _check_run_id(run_id: str) -> None:
    if not RUN_ID.match(run_id):
        raise RunNotFound(f"run {run_id[:130]!r} does not exist")


# -- the routes ---------------------------------------------------------------------------


GetServices = Callable[[], Services]


def start_run(
    get_services: GetServices, body: bytes, env: Mapping[str, str] | None = None
) -> Reply:
    """``POST /api/runs``: start a run from a blob of the dataset container."""

    from shared.pipeline.intake import accept_upload

    def call() -> Reply:
        services = get_services()
        container = services.settings.dataset_container
        container_url = dataset_container_url(os.environ if env is None else env, container)
        request = parse_start(body, container_url)
        result = accept_upload(services, request.blob, request.hyperparameters, request.force)
        if result.run_id is None:  # names were checked above: the blob is not there
            return problem("blob-not-found", f"{request.blob} does not exist in {container}")
        stored = services.ledger.get(result.run_id)
        if stored is None:
            raise RunNotFound(f"run {result.run_id} vanished after it was recorded")
        log.info("api started run %s from %s: %s", result.run_id, request.blob, result.outcome)
        return Reply(
            202,
            {
                "run_id": result.run_id,
                "state": stored.run.state.value,
                "outcome": result.outcome,
                "detail": result.detail,
            },
            headers={"Location": run_location(result.run_id)},
        )

    return _answer(call)


def list_runs(get_services: GetServices, params: Mapping[str, str]) -> Reply:
    """``GET /api/runs``: a page of runs, newest first."""

    def call() -> Reply:
        query = parse_listing(params)
        services = get_services()
        try:
            summaries, position = services.ledger.list_runs(
                query.state, query.limit, query.position
            )
        except InvalidInput as exc:
            raise RequestInvalid([FieldError("continuation", str(exc), "query")]) from exc
        token = encode_continuation(position) if position is not None else None
        return Reply(200, {"runs": [s.to_dict() for s in summaries], "continuation": token})

    return _answer(call)


def get_run(get_services: GetServices, run_id: str) -> Reply:
    """``GET /api/runs/{id}``: the whole record."""

    def call() -> Reply:
        _check_run_id(run_id)
        stored = get_services().ledger.get(run_id)
        if stored is None:
            raise RunNotFound(f"run {run_id} does not exist")
        return Reply(200, public_record(stored.run))

    return _answer(call)


def cancel_run(get_services: GetServices, run_id: str) -> Reply:
    """``POST /api/runs/{id}/cancel``."""
    from shared.pipeline.control import request_cancel

    return _answer(lambda: _requested(get_services, run_id, request_cancel, "cancel"))


def retry_run(get_services: GetServices, run_id: str) -> Reply:
    """``POST /api/runs/{id}/retry``."""
    from shared.pipeline.control import request_retry

    return _answer(lambda: _requested(get_services, run_id, request_retry, "retry"))


def approve_run(
    get_services: GetServices,
    run_id: str,
    body: bytes,
    headers: Mapping[str, str],
    params: Mapping[str, str],
) -> Reply:
    """``POST /api/runs/{id}/approve``: let a run held over MAX_RUN_COST go on."""
    from shared.pipeline.control import request_approve

    def call() -> Reply:
        _check_run_id(run_id)
        claimed_by = parse_approve(body)
        services = get_services()
        approver = approver_of(headers, params, claimed_by, services.settings.approver_keys)
        run = request_approve(services, run_id, approver)
        log.info(
            "api approve request for run %s by %s (key %s): now %s",
            run_id,
            approver.by,
            approver.key or "none",
            run.state,
        )
        return Reply(200, public_record(run), headers={"Location": run_location(run_id)})

    return _answer(call)


def rollback_run(
    get_services: GetServices,
    run_id: str,
    body: bytes,
    headers: Mapping[str, str],
    params: Mapping[str, str],
) -> Reply:
    """``POST /api/runs/{id}/rollback``: put back the model a LIVE run replaced. Answers
    the rollback run: 202 while it works, 200 once LIVE (asked before), ``Location`` it."""
    from shared.pipeline.control import request_rollback

    def call() -> Reply:
        _check_run_id(run_id)
        claimed_by = parse_approve(body)
        services = get_services()
        requester = approver_of(headers, params, claimed_by, services.settings.approver_keys)
        run = request_rollback(services, run_id, requester)
        log.info(
            "api rollback request for run %s by %s (key %s): rollback run %s is %s",
            run_id,
            requester.by,
            requester.key or "none",
            run.run_id,
            run.state,
        )
        status = 200 if run.state is RunState.LIVE else 202
        return Reply(
            status, RunSummary.of(run).to_dict(), headers={"Location": run_location(run.run_id)}
        )

    return _answer(call)


def _requested(
    get_services: GetServices,
    run_id: str,
    request: Callable[[Services, str], Run],
    what: str,
) -> Reply:
    _check_run_id(run_id)
    run = request(get_services(), run_id)
    log.info("api recorded a %s request for run %s (now %s)", what, run_id, run.state)
    return Reply(202, RunSummary.of(run).to_dict(), headers={"Location": run_location(run_id)})


def health(get_services: GetServices) -> Reply:
    """``GET /api/health``: up, and able to reach the run ledger. Never raises."""
    service = liveness.SERVICE
    try:
        get_services().ledger.ping()
    except SettingsError as exc:
        return problem(
            "unhealthy", str(exc), service=service, ledger="unknown", settings=exc.problems
        )
    except RetryableError as exc:
        headers = retry_after_header(exc.retry_after)
        return problem(
            "unhealthy", str(exc), headers=headers, service=service, ledger="unreachable"
        )
    except PermanentError as exc:
        return problem("unhealthy", str(exc), service=service, ledger="refused")
    except Exception as exc:  # a health check answers whatever went wrong
        log.exception("health check failed")
        detail = f"unexpected {type(exc).__name__}; see the app's logs"
        return problem("unhealthy", detail, service=service, ledger="unknown")
    return Reply(200, {**liveness.health(), "ledger": "reachable"})


def _answer(call: Callable[[], Reply]) -> Reply:
    """``call()``, with every error it raises turned into its problem reply."""
    try:
        return call()
    except RequestInvalid as exc:
        return problem(exc.kind, str(exc), errors=exc.errors)
    except RunNotFound as exc:
        return problem("run-not-found", str(exc))
    except NotAllowedNow as exc:
        return problem("not-allowed-now", str(exc))
    except SettingsError as exc:
        log.error("request failed on app settings: %s", exc)
        return problem("settings-invalid", str(exc), settings=exc.problems)
    except InvalidInput as exc:
        return problem("invalid-request", str(exc))
    except RetryableError as exc:
        log.warning("request failed, retryable: %s", exc)
        return problem("unavailable", str(exc), headers=retry_after_header(exc.retry_after))
    except PermanentError as exc:
        log.error("request refused by a dependency: %s", exc)
        return problem("dependency-failed", str(exc))
    except Exception:
        log.exception("request failed unexpectedly")
        return problem("internal-error", "an unexpected error; see the app's logs")
