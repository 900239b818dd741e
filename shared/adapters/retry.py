"""Short waits taken in the call: only what the service asks to retry soon.

Two ways to wait out a refused Azure ML call, and the app uses both, each where
it fits:

- **In the call** (``ShortWaitRetries``, around the Azure ML port): a refusal
  that asks for a wait of at most ``SHORT_WAIT_SECONDS`` (a 429 or 503 with a
  short ``Retry-After``) is waited out and the port call made again, at most
  ``SHORT_RETRIES`` times. A step makes up to ten Azure ML calls and one refused
  call ends the try, so under steady throttling (say 30% of calls) a step
  almost never got through when every refusal ended it; a one-second wait costs
  an invocation little.
- **Across reconciles** (``shared/pipeline/reconciler.py``): anything else
  (a longer ``Retry-After``, a 5xx without one, a timeout, a dropped
  connection) ends the try at once as a ``RetryableError``; the run's next
  check is set no sooner than the service asked, and no invocation sits
  waiting on Azure.

Repeating a port call is safe: every one is idempotent (reads; creates by
deterministic name that look before they create or adopt "already exists";
cancels and deletes). The SDK's own retry policy stays off (``retry_total=0``):
azure-ai-ml hands one policy object to every pipeline it builds, and a policy
instance shared between pipelines links each to the last one's next policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from shared.domain.azureml import (
    AzureML,
    DeploymentSpec,
    DeploymentView,
    EndpointView,
    JobSpec,
    JobView,
    ModelView,
)
from shared.domain.errors import RetryableError

SHORT_WAIT_SECONDS = 2.0
SHORT_RETRIES = 2

T = TypeVar("T")


class ShortWaitRetries:
    """The Azure ML port, with short service-requested waits taken in the call."""

    def __init__(self, inner: AzureML, sleep: Callable[[float], None] = time.sleep) -> None:
        self._inner = inner
        self._sleep = sleep

    def _patiently(self, call: Callable[[], T]) -> T:
        for _ in range(SHORT_RETRIES):
            try:
                return call()
            except RetryableError as exc:
                wait = exc.retry_after
                if wait is None or not 0 <= wait <= SHORT_WAIT_SECONDS:
                    raise
                self._sleep(wait)
        return call()

    def register_data(self, name: str, version: str, url: str, description: str) -> str:
        return self._patiently(lambda: self._inner.register_data(name, version, url, description))

    def get_job(self, name: str) -> JobView | None:
        return self._patiently(lambda: self._inner.get_job(name))

    def submit_job(self, spec: JobSpec) -> JobView:
        return self._patiently(lambda: self._inner.submit_job(spec))

    def cancel_job(self, name: str) -> None:
        self._patiently(lambda: self._inner.cancel_job(name))

    def job_error(self, name: str) -> str:
        return self._patiently(lambda: self._inner.job_error(name))

    def latest_model(self, name: str) -> ModelView | None:
        return self._patiently(lambda: self._inner.latest_model(name))

    def get_endpoint(self, name: str) -> EndpointView | None:
        return self._patiently(lambda: self._inner.get_endpoint(name))

    def begin_create_endpoint(self, name: str, description: str) -> None:
        self._patiently(lambda: self._inner.begin_create_endpoint(name, description))

    def endpoint_key(self, name: str) -> str:
        return self._patiently(lambda: self._inner.endpoint_key(name))

    def get_deployment(self, endpoint: str, name: str) -> DeploymentView | None:
        return self._patiently(lambda: self._inner.get_deployment(endpoint, name))

    def list_deployments(self, endpoint: str) -> list[DeploymentView]:
        return self._patiently(lambda: self._inner.list_deployments(endpoint))

    def begin_create_deployment(self, spec: DeploymentSpec) -> None:
        self._patiently(lambda: self._inner.begin_create_deployment(spec))

    def deployment_error(self, endpoint: str, name: str) -> str:
        return self._patiently(lambda: self._inner.deployment_error(endpoint, name))

    def begin_set_traffic(self, endpoint: str, traffic: Mapping[str, int]) -> None:
        self._patiently(lambda: self._inner.begin_set_traffic(endpoint, traffic))

    def begin_delete_deployment(self, endpoint: str, name: str) -> None:
        self._patiently(lambda: self._inner.begin_delete_deployment(endpoint, name))
