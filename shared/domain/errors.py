"""The two error families, named for what happens next.

::

    AutopilotError
    ├── RetryableError        try again later; the run stays where it was
    │   └── ConcurrencyConflict   lost a compare-and-swap race on the ledger
    └── PermanentError        retrying cannot help; the run ends with the message
        ├── SettingsError         app settings missing or invalid (all named at once)
        ├── InvalidInput          a request or dataset that breaks the contract
        │   ├── RunNotFound           no run with that id
        │   └── NotAllowedNow         the run's state forbids the request
        └── PermissionDenied      a 403: names the identity, the scope and the role

Adapters translate SDK exceptions into these (``raise ... from exc``), so no
Azure SDK exception type leaks past them. Throttling, 5xx and timeouts are
retryable and may carry the service's ``Retry-After``; a 4xx that cannot
succeed on retry is permanent.
"""

from __future__ import annotations


class AutopilotError(Exception):
    """Base of every error this app raises on purpose."""


class RetryableError(AutopilotError):
    """A transient failure: throttling, 5xx, timeouts, a lost race."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConcurrencyConflict(RetryableError):
    """Someone else changed the record first (ETag mismatch or insert race)."""


class PermanentError(AutopilotError):
    """Retrying cannot help; the message says why."""


class SettingsError(PermanentError):
    """App settings are missing or invalid. The message lists every problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} app setting problem(s):\n{lines}")


class InvalidInput(PermanentError):
    """Input that breaks the contract: a bad request field, a bad metadata value."""


class RunNotFound(InvalidInput):
    """No run with that id."""


class NotAllowedNow(InvalidInput):
    """The run's state forbids the request (HTTP 409)."""


class PermissionDenied(PermanentError):
    """Azure refused the app's identity (403); the message says which role to assign where."""

    def __init__(self, message: str, identity: str = "", scope: str = "", role: str = "") -> None:
        super().__init__(message)
        self.identity = identity
        self.scope = scope
        self.role = role
