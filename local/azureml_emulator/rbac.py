"""Who is calling, and whether ARM lets them: a switchable stand-in for Azure RBAC.

Azure authorises every management call against the caller's role assignments
and answers 403 ``AuthorizationFailed`` naming the action and scope when none
grants it. The emulator grants everything unless a deny rule says otherwise,
so a test can take a permission away and watch the app cope.

Callers are principals, known from their bearer token:

- a token issued by the managed-identity stand-in (``identity.py``) belongs to
  the identity it was asked for: a user-assigned one by ``client_id`` (or
  ``object_id``/``principal_id``/``mi_res_id``), else the system-assigned
  identity, whose ids are ``SYSTEM_ASSIGNED`` below;
- any other token (tests' static tokens) is its own principal: its client id
  is the token text, its object id a UUID derived from it.

A deny rule names a principal (a client id or object id, or ``*`` for every
caller) and an ``fnmatch`` glob over the action, e.g.
``Microsoft.MachineLearningServices/workspaces/onlineEndpoints/*``. Actions are
derived from the method and path in the provider's own form
(``action_of``). Rules apply to ``arm`` and ``history`` routes only: never to
scoring (key auth), admin or identity routes. The admin routes that set them
are in ``admin.py``.
"""

from __future__ import annotations

import fnmatch
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from local.azureml_emulator.arm import WORKSPACE_PROVIDER, ArmError
from local.azureml_emulator.http import Request, bearer_token

HISTORY_PREFIX = "/history/v1.0"
RUN_READ = f"{WORKSPACE_PROVIDER}/workspaces/experiments/runs/read"
_VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}


@dataclass(frozen=True)
class Principal:
    client_id: str
    object_id: str


# The Function App's system-assigned identity, as the identity stand-in issues it.
SYSTEM_ASSIGNED = Principal(
    client_id="5a5a5a5a-0000-4000-8000-00000000c11e",
    object_id="5a5a5a5a-0000-4000-8000-0000000000b1",
)


def _derived(kind: str, value: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"azureml-emulator/{kind}/{value}"))


def principal_for_identity(query: dict[str, str]) -> Principal:
    """The identity a managed-identity token request asks for (App Service protocol).

    msal sends ``client_id``, ``object_id`` or ``mi_res_id``; App Service also
    documents ``principal_id`` as the older name of ``object_id``.
    """
    if query.get("client_id"):
        client_id = query["client_id"]
        return Principal(client_id, _derived("object-of-client", client_id.lower()))
    object_id = query.get("object_id") or query.get("principal_id")
    if object_id:
        return Principal(_derived("client-of-object", object_id.lower()), object_id)
    if query.get("mi_res_id"):
        resource = query["mi_res_id"].lower()
        return Principal(_derived("client-of-resource", resource), _derived("object", resource))
    return SYSTEM_ASSIGNED


def action_of(method: str, path: str) -> tuple[str, str]:
    """``(action, scope)`` of a management or run-history request.

    ``PUT .../workspaces/w/data/x/versions/1`` is
    ``Microsoft.MachineLearningServices/workspaces/data/versions/write``; a POST
    to a trailing verb (``.../onlineEndpoints/e/listKeys``) is
    ``.../workspaces/onlineEndpoints/listKeys/action``; run history is
    ``.../workspaces/experiments/runs/read``. The scope is the path, without
    the run-history prefix.
    """
    if path.startswith(HISTORY_PREFIX):
        return RUN_READ, path.removeprefix(HISTORY_PREFIX)
    scope = path
    _, found, rest = scope.partition(f"/providers/{WORKSPACE_PROVIDER}/")
    if not found:
        return f"{WORKSPACE_PROVIDER}/{_VERBS.get(method, 'action')}", scope
    segments = [s for s in rest.split("/") if s]
    types = segments[0::2]
    if method == "POST":
        if len(segments) % 2 == 1:  # a trailing verb: listKeys, cancel, getLogs...
            return f"{WORKSPACE_PROVIDER}/{'/'.join(types)}/action", scope
        return f"{WORKSPACE_PROVIDER}/{'/'.join(types)}/write", scope
    return f"{WORKSPACE_PROVIDER}/{'/'.join(types)}/{_VERBS.get(method, 'action')}", scope


@dataclass(frozen=True)
class DenyRule:
    principal: str  # client id, object id, or "*"
    actions: str  # fnmatch glob over the action

    def matches(self, who: Principal, action: str) -> bool:
        wanted = self.principal.lower()
        if wanted != "*" and wanted not in (who.client_id.lower(), who.object_id.lower()):
            return False
        return fnmatch.fnmatchcase(action.lower(), self.actions.lower())


class Rbac:
    """Issued tokens, deny rules, and the check the dispatcher runs on arm/history routes."""

    def __init__(self) -> None:
        self._tokens: dict[str, Principal] = {}
        self._rules: list[DenyRule] = []
        self._lock = threading.Lock()

    # -- principals --------------------------------------------------------------------

    def remember(self, token: str, principal: Principal) -> None:
        """Record who a token issued by the identity stand-in belongs to."""
        with self._lock:
            self._tokens[token] = principal

    def principal_of(self, token: str) -> Principal:
        with self._lock:
            known = self._tokens.get(token)
        return known or Principal(token, _derived("token", token))

    # -- rules -------------------------------------------------------------------------

    def deny(self, principal: str, actions: str = "*") -> None:
        with self._lock:
            self._rules.append(DenyRule(principal, actions))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            rules = [{"principal": r.principal, "actions": r.actions} for r in self._rules]
        return {
            "rules": rules,
            "system_assigned": {
                "client_id": SYSTEM_ASSIGNED.client_id,
                "object_id": SYSTEM_ASSIGNED.object_id,
            },
        }

    def authorize(self, request: Request) -> None:
        """Raise ARM's 403 if a deny rule covers this caller and action."""
        with self._lock:
            rules = list(self._rules)
        if not rules:
            return
        who = self.principal_of(bearer_token(request))
        action, scope = action_of(request.method, request.path)
        if any(rule.matches(who, action) for rule in rules):
            raise ArmError(
                403,
                "AuthorizationFailed",
                f"The client '{who.client_id}' with object id '{who.object_id}' does not "
                f"have authorization to perform action '{action}' over scope '{scope}' or "
                "the scope is invalid. If access was recently granted, please refresh your "
                "credentials.",
            )
