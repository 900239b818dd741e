"""Injected faults, set through the admin routes and consulted by the handlers.

Request faults (throttling, 5xx, added latency) apply to management,
run-history and scoring requests whose ``METHOD /path`` (or ``METHOD
/path?query``) matches a regular expression, either on the next ``count``
matching requests or on a ``fraction`` of them. An ``after`` fault lets the
request be carried out and replaces only its reply: a lost response, after
which the client cannot tell whether its PUT happened.

Resource faults are keyed by name patterns (``fnmatch`` globs) and decided
when the resource is created: a job that fails, never finishes, stops
responding for a while or registers its model late or under another name; a
deployment whose provisioning fails (asynchronously) or whose PUT is refused
for quota (synchronously); a deployment that answers scoring with 500 or
empty text.
"""

from __future__ import annotations

import fnmatch
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlencode

from local.azureml_emulator.arm import bad_request
from local.azureml_emulator.http import Request, Response, RouteKind

_T = TypeVar("_T")


@dataclass
class RequestFault:
    route: re.Pattern[str]
    status: int  # 0: no error, only latency
    count: int | None  # remaining matching requests to hit; None: unlimited
    fraction: float  # share of matching requests hit, when count is None
    retry_after: int | None
    latency_ms: int
    kinds: tuple[str, ...]
    after: bool = False  # carry the request out, then answer the fault instead

    def matches(self, kind: RouteKind, request: Request) -> bool:
        if kind not in self.kinds:
            return False
        target = f"{request.method} {request.path}"
        if self.route.search(target):
            return True
        return bool(request.query) and bool(
            self.route.search(f"{target}?{urlencode(request.query)}")
        )


JOB_OUTCOMES = ("fail", "stuck", "not_responding", "model_late", "model_renamed")


@dataclass(frozen=True)
class JobFault:
    """What happens to a job: ``outcome`` is one of ``JOB_OUTCOMES``.

    ``message`` is the failure reason (``fail``), ``seconds`` how long, in
    emulated seconds, the job stops responding or its model lags
    (``not_responding``, ``model_late``), ``model_name`` the name the pipeline
    registers the model under (``model_renamed``).
    """

    outcome: str
    message: str = ""
    seconds: float = 0.0
    model_name: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message": self.message,
            "seconds": self.seconds,
            "model_name": self.model_name,
        }


@dataclass(frozen=True)
class DeploymentFault:
    """A deployment refused at PUT for quota (``quota``) or failing to provision."""

    message: str
    quota: bool = False


@dataclass
class Faults:
    requests: list[RequestFault] = field(default_factory=list)
    jobs: dict[str, JobFault] = field(default_factory=dict)  # glob -> fault
    deployments: dict[str, DeploymentFault] = field(default_factory=dict)  # glob -> fault
    scoring: dict[str, dict[str, Any]] = field(default_factory=dict)  # glob -> behaviour
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _random: random.Random = field(default_factory=lambda: random.Random(7))

    # -- configuration (admin routes) ------------------------------------------

    def add_request_fault(self, body: dict[str, Any]) -> None:
        try:
            fault = RequestFault(
                route=re.compile(str(body.get("route", ".*")), re.IGNORECASE),
                status=int(body.get("status", 0)),
                count=None if body.get("count") is None else int(body["count"]),
                fraction=float(body.get("fraction", 1.0)),
                retry_after=None if body.get("retry_after") is None else int(body["retry_after"]),
                latency_ms=int(body.get("latency_ms", 0)),
                kinds=tuple(body.get("kinds", ["arm", "history", "scoring"])),
                after=bool(body.get("after", False)),
            )
        except (TypeError, ValueError, re.error) as exc:
            raise bad_request(f"Invalid request fault: {exc}") from exc
        if fault.status and not 400 <= fault.status <= 599:
            raise bad_request("A request fault's status must be 4xx or 5xx (or 0 for latency).")
        with self._lock:
            self.requests.append(fault)

    def set_job_fault(self, name: str, body: dict[str, Any]) -> None:
        outcome = str(body.get("outcome", "fail"))
        if outcome not in JOB_OUTCOMES:
            raise bad_request(f"A job fault's outcome is one of {', '.join(JOB_OUTCOMES)}.")
        try:
            seconds = float(body.get("seconds") or 0)
        except (TypeError, ValueError) as exc:
            raise bad_request(f"Invalid 'seconds': {exc}") from exc
        model_name = str(body.get("model_name") or "")
        if outcome in {"not_responding", "model_late"} and seconds <= 0:
            raise bad_request(f"A '{outcome}' job fault needs 'seconds' > 0.")
        if outcome == "model_renamed" and not model_name:
            raise bad_request("A 'model_renamed' job fault needs 'model_name'.")
        fault = JobFault(outcome, str(body.get("message") or ""), seconds, model_name)
        with self._lock:
            self.jobs[name] = fault

    def set_deployment_fault(self, name: str, message: str, quota: bool = False) -> None:
        with self._lock:
            self.deployments[name] = DeploymentFault(message, quota)

    def set_scoring_fault(self, name: str, behaviour: dict[str, Any]) -> None:
        if not behaviour.get("status") and not behaviour.get("empty"):
            raise bad_request("A scoring fault needs 'status' (e.g. 500) or 'empty': true.")
        with self._lock:
            self.scoring[name] = behaviour

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self.jobs.clear()
            self.deployments.clear()
            self.scoring.clear()

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": [
                    {
                        "route": f.route.pattern,
                        "status": f.status,
                        "count": f.count,
                        "fraction": f.fraction,
                        "retry_after": f.retry_after,
                        "latency_ms": f.latency_ms,
                        "after": f.after,
                    }
                    for f in self.requests
                ],
                "jobs": {k: f.describe() for k, f in self.jobs.items()},
                "deployments": {
                    k: {"message": f.message, "quota": f.quota} for k, f in self.deployments.items()
                },
                "scoring": dict(self.scoring),
            }

    # -- lookups (handlers) ------------------------------------------------------

    def on_request(self, kind: RouteKind, request: Request) -> Response | None:
        """The injected answer for this request, if a fault hits it (after any latency)."""
        return self._inject(kind, request, after=False)

    def on_response(self, kind: RouteKind, request: Request) -> Response | None:
        """The injected answer replacing a carried-out request's reply (``after`` faults)."""
        return self._inject(kind, request, after=True)

    def _inject(self, kind: RouteKind, request: Request, *, after: bool) -> Response | None:
        target = f"{request.method} {request.path}"
        delay_ms, hit = 0, None
        with self._lock:
            for fault in list(self.requests):
                if fault.after != after or not fault.matches(kind, request):
                    continue
                delay_ms = max(delay_ms, fault.latency_ms)
                if not fault.status or hit is not None:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.requests.remove(fault)
                    hit = fault
                elif self._random.random() < fault.fraction:
                    hit = fault
        if delay_ms:
            time.sleep(delay_ms / 1000)
        if hit is None:
            return None
        headers = {"Retry-After": str(hit.retry_after)} if hit.retry_after is not None else {}
        code = "TooManyRequests" if hit.status == 429 else "InjectedFault"
        message = f"Injected fault: {hit.status} for {target}."
        return Response(hit.status, {"error": {"code": code, "message": message}}, headers)

    def job_fault(self, name: str) -> JobFault | None:
        with self._lock:
            return _first(self.jobs, name)

    def deployment_fault(self, name: str) -> DeploymentFault | None:
        with self._lock:
            return _first(self.deployments, name)

    def scoring_behaviour(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return _first(self.scoring, name)


def _first(patterns: dict[str, _T], name: str) -> _T | None:
    for pattern, value in patterns.items():
        if fnmatch.fnmatchcase(name.lower(), pattern.lower()):
            return value
    return None
