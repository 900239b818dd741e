"""Translate azure-core exceptions into the app's two error families."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import AutopilotError, PermanentError, RetryableError

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


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
        message = f"{doing}: {status} {_message(exc)}"
        if status in RETRYABLE_STATUS and (status != 409 or conflict_is_retryable):
            return RetryableError(message, retry_after(exc))
        return PermanentError(message)
    return RetryableError(f"{doing}: {exc.message}")


def _message(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    if error is not None and getattr(error, "message", None):
        code = getattr(error, "code", "") or ""
        return f"{code}: {error.message}" if code else str(error.message)
    return str(exc.message or exc.reason or "error").splitlines()[0]
