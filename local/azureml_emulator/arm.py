"""Azure Resource Manager conventions the emulator speaks.

Errors use ARM's body shape ``{"error": {"code", "message"}}`` so the real SDK
raises the same exception types it would against Azure (404 becomes
``ResourceNotFoundError``, 409 ``ResourceExistsError``, others
``HttpResponseError``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

WORKSPACE_PROVIDER = "Microsoft.MachineLearningServices"

# ARM names: the service's own rule for endpoints and deployments (3-32
# characters, letters, digits and hyphens, starting with a letter) and its
# looser rule for assets and jobs.
ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
ASSET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class ArmError(Exception):
    """An error answered to the client as an ARM error body."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


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
