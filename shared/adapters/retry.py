"""In-call retries for Azure ML requests: only what the service asks to retry soon.

Two ways to wait out a refused call, and the app uses both, each where it fits:

- **In the call** (this policy): a 429 or 503 whose ``Retry-After`` is at most
  ``SHORT_WAIT_SECONDS`` is sent again after exactly that wait, at most
  ``SHORT_RETRIES`` times. A step makes up to ten Azure ML calls, and one refused
  call ends the try, so under steady throttling (say 30% of calls) a step
  almost never got through when every refusal ended it; a one-second wait in
  the call costs an invocation little.
- **Across reconciles** (``shared/pipeline/reconciler.py``): anything else
  (a longer ``Retry-After``, a 5xx without one, a timeout, a dropped
  connection) ends the try at once as a ``RetryableError``; the run's next
  check is set no sooner than the service asked, and no invocation sits
  waiting on Azure.

Retrying a refused request is safe: a 429 was not carried out, and the app's
writes are PUTs by deterministic name (or cancels), which Azure treats as
idempotent or answers "already exists", which the app adopts.
"""

from __future__ import annotations

from typing import Any

from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy

SHORT_WAIT_SECONDS = 2.0
SHORT_RETRIES = 2
_SOON = frozenset({429, 503})


class ShortWaitRetry(RetryPolicy):
    """A ``RetryPolicy`` that retries only 429/503 answers with a short ``Retry-After``."""

    def __init__(self) -> None:
        super().__init__(
            retry_total=SHORT_RETRIES,
            retry_status=SHORT_RETRIES,
            retry_connect=0,
            retry_read=0,
            retry_backoff_factor=0,
        )

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        if response.http_response.status_code not in _SOON or not settings["total"]:
            return False
        wait = self.get_retry_after(response)
        return wait is not None and 0 <= wait <= SHORT_WAIT_SECONDS

    def increment(
        self,
        settings: dict[str, Any],
        response: Any = None,
        error: Exception | None = None,
    ) -> bool:
        if error is not None:
            return False  # connection errors and timeouts go back to the reconciler
        return bool(super().increment(settings, response=response, error=error))
