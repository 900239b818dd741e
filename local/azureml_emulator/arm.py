"""Azure Resource Manager conventions the emulator speaks.

Errors use ARM's body shape ``{"error": {"code", "message"}}`` so the real SDK
raises the same exception types it would against Azure (404 becomes
``ResourceNotFoundError``, 409 ``ResourceExistsError``, others
``HttpResponseError``).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

WORKSPACE_PROVIDER = "Microsoft.MachineLearningServices"
LOCATION = "eastus2"  # the one region the emulator pretends to be

# ARM names: the service's own rule for endpoints and deployments (3-32
# characters, letters, digits and hyphens, starting with a letter) and its
# looser rule for assets and jobs.
ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class ArmError(Exception):
    """An error answered to the client as an ARM error body.

    ``details`` and ``additional_info`` are added to the body only when given:
    most emulated errors are flat, while the ones a client must be able to dig
    into (quota, duplicate jobs, endpoint names) carry the nesting Azure uses.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        additional_info: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details
        self.additional_info = additional_info

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        if self.additional_info is not None:
            error["additionalInfo"] = self.additional_info
        return {"error": error}


def mfe_user_error(message: str, *inner_codes: str) -> ArmError:
    """A 400 ``UserError`` shaped like Azure ML's management front end answers it.

    Real bodies (azure-sdk-assets recordings) carry ``details: []`` and an
    ``additionalInfo`` list naming the component, correlation ids, environment,
    location and time, plus an ``InnerError`` chain when the service has finer
    codes (``inner_codes``, outermost first).
    """
    info: list[dict[str, Any]] = [
        {"type": "ComponentName", "info": {"value": "managementfrontend"}},
        {
            "type": "Correlation",
            "info": {"value": {"operation": uuid.uuid4().hex, "request": uuid.uuid4().hex[:16]}},
        },
        {"type": "Environment", "info": {"value": LOCATION}},
        {"type": "Location", "info": {"value": LOCATION}},
        {"type": "Time", "info": {"value": iso(dt.datetime.now(dt.UTC))}},
    ]
    if inner_codes:
        inner: dict[str, Any] | None = None
        for code in reversed(inner_codes):
            inner = {"code": code, "innerError": inner}
        info.append({"type": "InnerError", "info": {"value": inner}})
    return ArmError(
        400,
        "UserError",
        message,
        {"x-ms-response-type": "error"},
        details=[],
        additional_info=info,
    )


def not_found(kind: str, name: str) -> ArmError:
    return ArmError(404, "ResourceNotFound", f"{kind} '{name}' was not found in this workspace.")


def bad_request(message: str, code: str = "BadRequest") -> ArmError:
    return ArmError(400, code, message)


def check_name(kind: str, name: str, pattern: re.Pattern[str] = ASSET_NAME) -> None:
    if not pattern.match(name):
        raise bad_request(
            f"Invalid {kind} name '{name}': it must match {pattern.pattern}.",
            code="InvalidResourceName",
        )


def iso(moment: dt.datetime) -> str:
    """ARM timestamps: ISO 8601 UTC with a ``Z`` suffix."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def require(body: dict[str, Any], *path: str) -> Any:
    """Return ``body[path[0]][path[1]]...`` or raise the 400 the service would."""
    node: Any = body
    walked: list[str] = []
    for key in path:
        walked.append(key)
        if not isinstance(node, dict) or node.get(key) in (None, ""):
            raise bad_request(
                f"The request is invalid: required field '{'.'.join(walked)}' is missing.",
                code="UserError",
            )
        node = node[key]
    return node


@dataclass(frozen=True)
class Workspace:
    """The one workspace the emulator pretends to host (any ids are accepted)."""

    subscription: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{WORKSPACE_PROVIDER}/workspaces/{self.name}"
        )


@dataclass
class Resource:
    """A stored ARM resource: its id pieces, properties and bookkeeping."""

    type: str
    id: str
    name: str
    properties: dict[str, Any]
    created: dt.datetime
    extra: dict[str, Any] = field(default_factory=dict)

    def envelope(self) -> dict[str, Any]:
        """The resource as ARM answers it (``id``, ``name``, ``type``, ``properties``...)."""
        created = iso(self.created)
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "properties": self.properties,
            "systemData": {
                "createdAt": created,
                "createdBy": "emulator",
                "createdByType": "User",
                "lastModifiedAt": created,
            },
            **self.extra,
        }
