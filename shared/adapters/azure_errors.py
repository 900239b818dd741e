"""Translate azure-core exceptions into the app's two error families.

Two answers get special care because the bare service text does not say what
to do: a 403 names the identity, the scope and the role to assign (from
``shared.domain.permissions``), and nested ``error.details[]`` (where Azure puts the
real reason of a "The request is invalid." 400, e.g. a quota shortfall) are
kept in the message.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.domain.errors import AutopilotError, PermanentError, PermissionDenied, RetryableError
from shared.domain.permissions import role_for_action

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
DETAILS_KEPT = 3  # nested error details quoted in a message, at most
_DENIED = re.compile(
    r"client '(?P<client>[^']*)'(?: with object id '(?P<object>[^']*)')?"
    r".*?perform action '(?P<action>[^']*)' over scope '(?P<scope>[^']*)'",
    re.DOTALL,
)
_WORKSPACE_SCOPE = re.compile(
    r"^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/[^/]+/[^/]+/[^/]+)", re.I
)


def retry_after(exc: HttpResponseError) -> float | None:
    """Seconds the service asked us to wait (``Retry-After``: seconds or HTTP date)."""
    response = exc.response
    if response is None:
        return None
    headers: Mapping[str, str] = getattr(response, "headers", {})
    for header in ("retry-after-ms", "x-ms-retry-after-ms"):
        raw = headers.get(header)
        if raw and raw.strip().isdigit():
            return int(raw) / 1000
    raw = headers.get("Retry-After")
    if not raw:
        return None
    raw = raw.strip()
    if raw.isdigit():
        return float(raw)
    try:
        moment = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(moment.timestamp()) - time.time())


def translate(exc: AzureError, doing: str, conflict_is_retryable: bool = True) -> AutopilotError:
    """The app error for an SDK error raised while ``doing`` something.

    Connection failures, timeouts, throttling and 5xx are retryable; other 4xx
    are permanent, with the service's message. A 409 is retryable by default
    (another writer got there first: look again), permanent when the caller
    says a conflict cannot resolve itself.
    """
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return RetryableError(f"{doing}: could not reach the service: {exc.message}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status == 403:
            return permission_denied(exc, doing)
        message = f"{doing}: {status} {_message(exc)}"
        if status in RETRYABLE_STATUS and (status != 409 or conflict_is_retryable):
            return RetryableError(message, retry_after(exc))
        return PermanentError(message)
    return RetryableError(f"{doing}: {exc.message}")


def permission_denied(exc: HttpResponseError, doing: str) -> PermissionDenied:
    """One actionable error for a 403: who was refused what, where, and the fix.

    ARM's ``AuthorizationFailed`` text names the client id, object id, action and
    scope; the role comes from ``shared.domain.permissions``. Retrying cannot help until
    someone assigns the role, so the error is permanent.
    """
    text = _message(exc)
    found = _DENIED.search(text)
    if found is None:
        return PermissionDenied(
            f"{doing}: 403 permission denied: {text}. The app's identity (AZURE_CLIENT_ID, or "
            "the Function App's managed identity) lacks a role; see shared/domain/permissions.py "
            "for the roles it needs"
        )
    client, principal = found["client"], found["object"] or found["client"]
    action, scope = found["action"], found["scope"]
    needed = role_for_action(action)
    where = _WORKSPACE_SCOPE.match(scope)
    assign_scope = where.group(1) if where else scope
    if needed is None:
        fix = f"assign it a role that allows {action} on {assign_scope}"
    else:
        scope_name, role = needed
        fix = (
            f"assign it the role '{role.name}' ({role.guid}) on {scope_name}: "
            f"az role assignment create --assignee-object-id {principal} "
            f'--assignee-principal-type ServicePrincipal --role "{role.name}" '
            f"--scope {assign_scope}"
        )
    return PermissionDenied(
        f"{doing}: 403 permission denied: identity {client} (object id {principal}) may not "
        f"perform {action} on {scope}; {fix}; then retry the run",
        identity=client,
        scope=assign_scope,
        role=needed[1].name if needed else "",
    )


def _message(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    if error is not None and getattr(error, "message", None):
        code = getattr(error, "code", "") or ""
        text = f"{code}: {error.message}" if code else str(error.message)
        details = [
            f"{getattr(d, 'code', '') or 'detail'}: {getattr(d, 'message', '')}"
            for d in (getattr(error, "details", None) or [])[:DETAILS_KEPT]
            if getattr(d, "message", None)
        ]
        return " | ".join([text, *details])
    return str(exc.message or exc.reason or "error").splitlines()[0]
