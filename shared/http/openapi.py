"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /api/openapi.json``.

Built from the same definitions the API uses (run states, the hyperparameter
allow-list, problem types, limits), so most of it cannot drift; the tests in
``tests/api`` keep the rest true: every route of ``function_app`` is here with
its method and auth level, and every response the route tests see validates
against the schema documented for its status.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from shared.datasets.report import ERROR_CODES
from shared.domain.hyperparameters import ALLOWED
from shared.domain.ledger import MAX_PAGE
from shared.domain.runs import CANCELLABLE, RunState
from shared.http import api
from shared.http.dashboard import FILES

VERSION = "0.1.0"
_SCHEMAS = "#/components/schemas/"
_RESPONSES = "#/components/responses/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _SCHEMAS + name}


def _response(name: str) -> dict[str, str]:
    return {"$ref": _RESPONSES + name}


def _json(schema: dict[str, Any], description: str, **headers: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {api.JSON: {"schema": schema}},
    }
    if headers:
        response["headers"] = headers
    return response


def _problem(description: str, **headers: Any) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {api.PROBLEM_JSON: {"schema": _ref("Problem")}},
    }
    if headers:
        response["headers"] = headers
    return response


_TEXT = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_LOCATION = {"description": "The run: `/api/runs/{id}`", "schema": {"type": "string"}}
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again, when the service said",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}


def _schemas() -> dict[str, Any]:
    hyperparameters = {
        name: {"type": ["string", "number"], "description": rule.describe}
        for name, rule in ALLOWED.items()
    }
    return {
        "RunState": {"type": "string", "enum": [s.value for s in RunState]},
        "StartRun": {
            "type": "object",
            "required": ["blob"],
            "additionalProperties": False,
            "properties": {
                "blob": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": api.MAX_BLOB_NAME,
                    "pattern": "^[^\\\\?#\\u0000-\\u001f\\u007f]+$",
                    "description": (
                        "A blob name within the dataset container (`DATASET_CONTAINER`), "
                        "e.g. `team/q3.jsonl`, or its full URL in the dataset storage account "
                        "(reduced to the name). No other host, account or container; no `..` "
                        "or `.` segments, leading `/`, backslashes, query or fragment. "
                        "Names the blob trigger skips (not `.jsonl`, `_autopilot/...`, "
                        "`*.validation.jsonl`) answer 422, as do names that are not valid "
                        "Unicode (a lone UTF-16 surrogate)."
                    ),
                },
                "hyperparameters": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": hyperparameters,
                    "description": (
                        "Overrides of the default hyperparameters for this run: the same "
                        "allow-list and checks as `finetune_<name>` blob metadata"
                    ),
                },
                "force": {
                    "type": "boolean",
                    "default": False,
                    "description": "Train again even if this content was trained before",
                },
            },
        },
        "StartRunAccepted": {
            "type": "object",
            "required": ["run_id", "state", "outcome", "detail"],
            "properties": {
                "run_id": _TEXT,
                "state": _ref("RunState"),
                "outcome": {
                    "type": "string",
                    "enum": ["accepted", "rejected", "duplicate", "seen"],
                    "description": (
                        "`accepted`: a new run; `rejected`: the dataset is invalid (the run "
                        "exists, REJECTED, with its report); `duplicate`: the same content "
                        "and configuration ran before (a DUPLICATE run points at it); "
                        "`seen`: this upload was handled before (that run)"
                    ),
                },
                "detail": _TEXT,
            },
        },
        "RunSummary": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "run_id",
                "state",
                "activity",
                "dataset_name",
                "created_at",
                "updated_at",
                "job_name",
                "deployment",
                "last_error",
            ],
            "properties": {
                "run_id": _TEXT,
                "state": _ref("RunState"),
                "activity": {**_TEXT, "description": "What the run is waiting on now"},
                "dataset_name": {**_TEXT, "description": "The blob the run came from"},
                "created_at": _TIME,
                "updated_at": _TIME,
                "job_name": _TEXT,
                "deployment": _TEXT,
                "last_error": _TEXT,
            },
        },
        "RunList": {
            "type": "object",
            "additionalProperties": False,
            "required": ["runs", "continuation"],
            "properties": {
                "runs": {"type": "array", "items": _ref("RunSummary"), "maxItems": MAX_PAGE},
                "continuation": {
                    "type": ["string", "null"],
                    "description": (
                        "Pass as `continuation` for the next page; null after the last. A "
                        "filtered page may hold fewer than `limit` runs before the last one."
                    ),
                },
            },
        },
        "Run": _run_schema(),
        "Approve": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "by": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": api.MAX_NAME,
                    "pattern": "\\S",
                    "description": (
                        "Who says they approve (or ask for a rollback): recorded as `claimed_by` "
                        "beside the name the function key stands for"
                    ),
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "service", "ledger"],
            "properties": {
                "status": {"const": "ok"},
                "service": _TEXT,
                "ledger": {"const": "reachable"},
            },
        },
        "FieldError": {
            "type": "object",
            "additionalProperties": False,
            "required": ["field", "in", "detail"],
            "properties": {
                "field": {
                    **_TEXT,
                    "description": (
                        "The field, dotted for nested ones (`hyperparameters.lora_r`); "
                        "empty for the body as a whole"
                    ),
                },
                "in": {"type": "string", "enum": ["body", "query", "path"]},
                "detail": _TEXT,
            },
        },
        "Problem": {
            "type": "object",
            "description": (
                "RFC 9457 problem details. Health problems add `service`, `ledger` "
                "(`unknown`, `unreachable` or `refused`); settings problems add `settings`."
            ),
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {
                    "type": "string",
                    "enum": [api.PROBLEM_TYPE + kind for kind in api.PROBLEMS],
                },
                "title": _TEXT,
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "detail": _TEXT,
                "errors": {"type": "array", "items": _ref("FieldError")},
                "settings": {"type": "array", "items": _TEXT},
                "service": _TEXT,
                "ledger": {"type": "string", "enum": ["unknown", "unreachable", "refused"]},
            },
        },
    }


def _run_schema() -> dict[str, Any]:
    """The whole record (``Run.to_dict()`` without the reconciler's internals)."""
    obj: dict[str, Any] = {"type": "object"}
    integer = {"type": "integer", "minimum": 0}
    fields: dict[str, Any] = {
        "run_id": _TEXT,
        "state": _ref("RunState"),
        "created_at": _TIME,
        "updated_at": _TIME,
        "dataset": {
            "type": "object",
            "required": ["container", "name", "url", "etag", "size"],
            "properties": {
                "container": _TEXT,
                "name": _TEXT,
                "url": _TEXT,
                "etag": _TEXT,
                "size": integer,
            },
        },
        "sha256": _TEXT,
        "config": {**obj, "description": "The training configuration"},
        "validation": {
            **obj,
            "description": "The dataset's validation summary (the report of `python -m "
            "shared.datasets`); `errors` lists the first problems, each with a stable code",
            "properties": {
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["line", "code", "message"],
                        "additionalProperties": False,
                        "properties": {
                            "line": {
                                "type": "integer",
                                "minimum": 0,
                                "description": "1-based line; 0 for the file as a whole",
                            },
                            "code": {"type": "string", "enum": sorted(ERROR_CODES)},
                            "message": _TEXT,
                        },
                    },
                },
                "error_count": {"type": "integer", "minimum": 0},
            },
        },
        "report_url": {**_TEXT, "description": "A rejected dataset's report"},
        "training_data": _TEXT,
        "validation_data": _TEXT,
        "job_name": _TEXT,
        "job_status": _TEXT,
        "model_name": {**_TEXT, "description": "The output model's name, as the job reports it"},
        "model_id": _TEXT,
        "endpoint": _TEXT,
        "deployment": _TEXT,
        "smoke": {**obj, "description": "The smoke test's prompts, answers and verdict"},
        "evaluation": {
            **obj,
            "description": "Champion/challenger evaluation: progress, then both scores, the"
            " delta's bootstrap interval, the verdict and per-example scores",
        },
        "duplicate_of": _TEXT,
        "previous_deployments": {
            "type": "object",
            "additionalProperties": {"type": "integer"},
            "description": "Traffic before this run's rollout",
        },
        "plan": {
            **obj,
            "description": (
                "The preflight plan, computed at intake: `training_tokens` (and "
                "`tokens_source`), `gpu_hours`, `training_cost`, `deployment_cost_per_hour`, "
                "`rollout_cost`, `total` (training + rollout, in `currency`; null when an "
                "input is unknown), `max_run_cost`, `over_budget`, `missing` (the unknown "
                "inputs)"
            ),
        },
        "approval": {
            **obj,
            "description": (
                "Who let a run over MAX_RUN_COST go on: `by` (named from the function "
                "key's fingerprint by APPROVER_KEYS, else App Service's principal, else "
                "`unknown`), `at`, `key` (first 12 hex digits of the key's SHA-256; never "
                "the key), `claimed_by` (the name the request gave). Empty if not approved"
            ),
        },
        "replaced": {
            **obj,
            "description": (
                "Set when the run went LIVE: `deployment` (the one that served most "
                "before it), its `model` and `traffic`; what a rollback puts back. Empty "
                "for the first model on the endpoint"
            ),
        },
        "rolled_back_by": {
            **obj,
            "description": (
                "On a LIVE run: the rollback asked for it, `run_id` (the rollback run), "
                "`by`, `at`, `key`, `claimed_by` (named as for `approval`). Empty if none"
            ),
        },
        "adopted_deployment": {
            **_TEXT,
            "description": (
                "A rollback run's reused deployment (kept by KEEP_PREVIOUS_DEPLOYMENT): "
                "never removed by that run; empty otherwise"
            ),
        },
        "activity": _TEXT,
        "cancel_requested": {"type": "boolean"},
        "retries": integer,
        "attempts": integer,
        "last_error": _TEXT,
        "next_check_at": {
            **_TIME_OR_NULL,
            "description": "The earliest time the timer looks at the run again. In the past:"
            " due, and looked at by every sweep (a look that finds nothing new is not"
            " recorded, so this and updated_at stay where the last change put them)",
        },
        "timeline": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["state", "at", "detail"],
                "additionalProperties": False,
                "properties": {"state": _ref("RunState"), "at": _TIME, "detail": _TEXT},
            },
        },
    }
    return {
        "type": "object",
        "required": list(fields),
        "additionalProperties": False,
        "properties": fields,
    }


def _responses() -> dict[str, Any]:
    return {
        "BadRequest": _problem("A body or query field is invalid; `errors` names each"),
        "RunNotFound": _problem("No run with that id"),
        "NotAllowedNow": _problem("The run's state does not allow this request"),
        "Unauthorized": {
            "description": (
                "Missing or wrong function key: answered by the Functions host, not the app"
            )
        },
        "SettingsInvalid": _problem(
            "The app's settings are missing or invalid (`settings` lists each problem), "
            "or an unexpected error"
        ),
        "DependencyFailed": _problem("Storage or Azure ML refused the request"),
        "Unavailable": _problem(
            "Storage or Azure ML is throttling, failing or unreachable; try again later",
            **{"Retry-After": _RETRY_AFTER},
        ),
    }


def _failures(*extra: tuple[str, str]) -> dict[str, Any]:
    """The responses every keyed operation may give, plus ``extra`` (status, response)."""
    responses = {status: _response(name) for status, name in extra}
    responses.update(
        {
            "401": _response("Unauthorized"),
            "500": _response("SettingsInvalid"),
            "502": _response("DependencyFailed"),
            "503": _response("Unavailable"),
        }
    )
    return responses


_RUN_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": api.RUN_ID.pattern},
    "description": "The run id (unknown or malformed ids answer 404)",
}
_ANONYMOUS: list[dict[str, list[str]]] = []


def _paths() -> dict[str, Any]:
    summary_accepted = _json(
        _ref("RunSummary"), "Request recorded; the run as it is now", Location=_LOCATION
    )
    return {
        "/api/runs": {
            "post": {
                "operationId": "start_run",
                "summary": "Start a run from a blob in the dataset container",
                "description": (
                    "Validates the blob as the blob trigger does and records a run. An "
                    "invalid dataset also answers 202: the run exists, REJECTED, with its "
                    "report (`outcome` is `rejected`)."
                ),
                "requestBody": {
                    "required": True,
                    "content": {api.JSON: {"schema": _ref("StartRun")}},
                },
                "responses": {
                    "202": _json(
                        _ref("StartRunAccepted"),
                        "A run was recorded (accepted, rejected, duplicate or seen before)",
                        Location=_LOCATION,
                    ),
                    "404": _problem("The blob does not exist in the dataset container"),
                    "413": _problem(f"The body is over {api.MAX_BODY_BYTES} bytes"),
                    "422": _problem(
                        "The blob is no dataset upload (not .jsonl, the app's own "
                        "`_autopilot/` prefix, or a `*.validation.jsonl` file), or its name "
                        "is not valid Unicode; `errors` names `blob` and why"
                    ),
                    **_failures(("400", "BadRequest")),
                },
            },
            "get": {
                "operationId": "list_runs",
                "summary": "List runs, newest first",
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": _ref("RunState"),
                        "description": "Only runs in this state",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_PAGE,
                            "default": api.DEFAULT_PAGE,
                        },
                    },
                    {
                        "name": "continuation",
                        "in": "query",
                        "schema": {"type": "string"},
                        "description": "The `continuation` of the previous page",
                    },
                ],
                "responses": {
                    "200": _json(_ref("RunList"), "A page of runs"),
                    **_failures(("400", "BadRequest")),
                },
            },
        },
        "/api/runs/{id}": {
            "parameters": [_RUN_ID],
            "get": {
                "operationId": "get_run",
                "summary": "The whole record of a run",
                "responses": {
                    "200": _json(_ref("Run"), "The run"),
                    **_failures(("404", "RunNotFound")),
                },
            },
        },
        "/api/runs/{id}/cancel": {
            "parameters": [_RUN_ID],
            "post": {
                "operationId": "cancel_run",
                "summary": "Cancel a run (until traffic starts moving)",
                "description": (
                    "Cancels the job or removes the run's deployment at 0% traffic; the run "
                    "ends CANCELED. Runs in "
                    + ", ".join(s.value for s in RunState if s in CANCELLABLE)
                    + " can be cancelled."
                ),
                "responses": {
                    "202": summary_accepted,
                    **_failures(("404", "RunNotFound"), ("409", "NotAllowedNow")),
                },
            },
        },
        "/api/runs/{id}/retry": {
            "parameters": [_RUN_ID],
            "post": {
                "operationId": "retry_run",
                "summary": "Retry a failed run from the step that failed",
                "description": (
                    "TRAINING_FAILED resumes with a new job (`<id>-r<n>`) on the same data "
                    "assets; DEPLOY_FAILED and ROLLED_BACK with a new deployment of the same "
                    "model; FAILED where it failed."
                ),
                "responses": {
                    "202": summary_accepted,
                    **_failures(("404", "RunNotFound"), ("409", "NotAllowedNow")),
                },
            },
        },
        "/api/runs/{id}/approve": {
            "parameters": [_RUN_ID],
            "post": {
                "operationId": "approve_run",
                "summary": "Let a run waiting for approval (over MAX_RUN_COST) go on",
                "description": (
                    "Records who approved and when (`approval`) on a run in "
                    "AWAITING_APPROVAL, then moves it on to its job at once. Approving an "
                    "approved run changes nothing (the first approval stands); a run in any "
                    "other state answers 409. The approver is named from the function key "
                    "the request presents (see `approval` in the record); the body is "
                    "optional."
                ),
                "requestBody": {
                    "required": False,
                    "content": {api.JSON: {"schema": _ref("Approve")}},
                },
                "responses": {
                    "200": _json(_ref("Run"), "Approved: the run as it is now", Location=_LOCATION),
                    "413": _problem(f"The body is over {api.MAX_BODY_BYTES} bytes"),
                    "422": _problem("`by` is not valid Unicode text (a lone UTF-16 surrogate)"),
                    **_failures(
                        ("400", "BadRequest"), ("404", "RunNotFound"), ("409", "NotAllowedNow")
                    ),
                },
            },
        },
        "/api/runs/{id}/rollback": {
            "parameters": [_RUN_ID],
            "post": {
                "operationId": "rollback_run",
                "summary": "Put back the model a LIVE run replaced",
                "description": (
                    "For a LIVE run serving 100% of its endpoint that replaced another "
                    "model (`replaced`): a new run `<id>-rb<n>` (`config.kind` `rollback`) "
                    "deploys that model again (reusing its deployment if it was kept), "
                    "smoke tests it at 0% and shifts all traffic to it, retiring the "
                    "rolled-back deployment unless KEEP_PREVIOUS_DEPLOYMENT. The LIVE run "
                    "stays LIVE as a record and gets `rolled_back_by`. Asking again while "
                    "the rollback run is active answers it (202), and once it is LIVE, "
                    "200. Any other run, or one with nothing to roll back to, answers 409. "
                    "Who asked is named as for approve; the body is optional."
                ),
                "requestBody": {
                    "required": False,
                    "content": {api.JSON: {"schema": _ref("Approve")}},
                },
                "responses": {
                    "200": _json(
                        _ref("RunSummary"),
                        "Rolled back before: the rollback run, LIVE",
                        Location=_LOCATION,
                    ),
                    "202": _json(
                        _ref("RunSummary"),
                        "The rollback run, as it is now (`Location` is its record)",
                        Location=_LOCATION,
                    ),
                    "413": _problem(f"The body is over {api.MAX_BODY_BYTES} bytes"),
                    "422": _problem("`by` is not valid Unicode text (a lone UTF-16 surrogate)"),
                    **_failures(
                        ("400", "BadRequest"), ("404", "RunNotFound"), ("409", "NotAllowedNow")
                    ),
                },
            },
        },
        "/api/health": {
            "get": {
                "operationId": "health",
                "summary": "Up, and able to reach the run ledger",
                "security": _ANONYMOUS,
                "responses": {
                    "200": _json(_ref("Health"), "Up, and the ledger answers"),
                    "503": _problem(
                        "Settings missing or invalid, or the ledger unreachable; `detail` says "
                        "which",
                        **{"Retry-After": _RETRY_AFTER},
                    ),
                },
            },
        },
        "/api/ui/{file}": {
            "get": {
                "operationId": "dashboard",
                "summary": "The dashboard: a page of runs to watch and act on",
                "description": (
                    "`GET /api/ui` is the page itself (index.html); its script and styles "
                    "are the other files. Anonymous: the page holds no secret, it asks for "
                    "a function key and sends it with each API call. Every answer carries a "
                    "Content-Security-Policy allowing this origin only."
                ),
                "security": _ANONYMOUS,
                "parameters": [
                    {
                        "name": "file",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": sorted(n for n in FILES if n)},
                        "description": "A file of the dashboard (none: the page)",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file",
                        "content": {
                            media: {"schema": {"type": "string"}}
                            for media in sorted({media for _, media in FILES.values()})
                        },
                    },
                    "404": _problem("No such file"),
                },
            },
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": _ANONYMOUS,
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document")},
            },
        },
    }


@functools.cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "finetune-autopilot",
            "version": VERSION,
            "description": (
                "Start fine-tuning runs by hand and see what every run is doing. Errors "
                "are RFC 9457 problem details (`application/problem+json`)."
            ),
        },
        "security": [{"functionKeyHeader": []}, {"functionKeyQuery": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "securitySchemes": {
                "functionKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "A function key (or the host key)",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "A function key (or the host key)",
                },
            },
        },
    }


def document() -> dict[str, Any]:
    """The document (built once; a fresh copy each call, so callers may change it)."""
    return copy.deepcopy(_document())


def reply() -> api.Reply:
    """``GET /api/openapi.json``: the document (this module uses ``api``, never the reverse)."""
    return api.Reply(200, document())
