"""Injected faults, set through the admin routes and consulted by the handlers.

Request faults (throttling, 5xx, added latency) apply to management and scoring
requests whose ``METHOD /path`` matches a regular expression, either on the
next ``count`` matching requests or on a ``fraction`` of them. Resource faults
are keyed by name patterns (``fnmatch`` globs) and decided when the resource is
created: a job that fails or never finishes, a deployment whose provisioning
fails, a deployment that answers scoring with 500 or empty text.
"""

from __future__ import annotations

import fnmatch
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

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


@dataclass
class Faults:
    requests: list[RequestFault] = field(default_factory=list)
    jobs: dict[str, tuple[str, str]] = field(default_factory=dict)  # glob -> (outcome, message)
    deployments: dict[str, str] = field(default_factory=dict)  # glob -> failure reason
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
                kinds=tuple(body.get("kinds", ["arm", "scoring"])),
            )
        except (TypeError, ValueError, re.error) as exc:
            raise bad_request(f"Invalid request fault: {exc}") from exc
        if fault.status and not 400 <= fault.status <= 599:
            raise bad_request("A request fault's status must be 4xx or 5xx (or 0 for latency).")
        with self._lock:
            self.requests.append(fault)

    def set_job_fault(self, name: str, outcome: str, message: str) -> None:
        if outcome not in {"fail", "stuck"}:
            raise bad_request("A job fault's outcome is 'fail' or 'stuck'.")
        with self._lock:
            self.jobs[name] = (outcome, message)

    def set_deployment_fault(self, name: str, message: str) -> None:
        with self._lock:
            self.deployments[name] = message

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
                    }
                    for f in self.requests
                ],
                "jobs": {k: {"outcome": o, "message": m} for k, (o, m) in self.jobs.items()},
                "deployments": dict(self.deployments),
                "scoring": dict(self.scoring),
            }

    # -- lookups (handlers) ------------------------------------------------------

    def on_request(self, kind: RouteKind, request: Request) -> Response | None:
        """The injected answer for this request, if a fault hits it (after any latency)."""
        target = f"{request.method} {request.path}"
        delay_ms, hit = 0, None
        with self._lock:
            for fault in list(self.requests):
                if kind not in fault.kinds or not fault.route.search(target):
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

    def job_outcome(self, name: str) -> tuple[str, str] | None:
        with self._lock:
            return _first(self.jobs, name)

    def deployment_failure(self, name: str) -> str | None:
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
