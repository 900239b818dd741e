"""``/_emulator/...``: the emulator's own routes, for tests and demos.

- ``GET  /_emulator/state``: jobs, models, data, endpoints, deployments, settings.
- ``GET  /_emulator/events``: Azure ML events emitted, and their delivery counts.
- ``POST /_emulator/config``: ``{"speed", "webhook_url", <Timings fields>}``.
- ``POST /_emulator/faults/requests``: ``{"route", "status", "count" | "fraction",
  "retry_after", "latency_ms", "kinds"}``.
- ``POST /_emulator/faults/jobs``: ``{"name": glob, "outcome": "fail"|"stuck", "message"}``.
- ``POST /_emulator/faults/deployments``: ``{"name": glob, "message"}``.
- ``POST /_emulator/faults/scoring``: ``{"name": glob, "status": 500}`` or
  ``{"name": glob, "empty": true}``.
- ``DELETE /_emulator/faults``: clear every fault (the topic's too).

The Event Grid topic stand-in adds ``GET|DELETE /_emulator/topic`` and
``POST /_emulator/faults/topic`` (see ``local/azureml_emulator/topic.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from local.azureml_emulator.arm import bad_request, iso
from local.azureml_emulator.events import EventSink
from local.azureml_emulator.faults import Faults
from local.azureml_emulator.http import Request, Response, Router
from local.azureml_emulator.state import World


class AdminRoutes:
    def __init__(
        self,
        world: World,
        faults: Faults,
        events: EventSink,
        describe_jobs: Callable[[], list[dict[str, Any]]],
        on_clear_faults: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.world = world
        self.faults = faults
        self.events = events
        self.describe_jobs = describe_jobs
        # Faults kept elsewhere (the topic stand-in's), cleared along with these.
        self.on_clear_faults = tuple(on_clear_faults)

    def register(self, router: Router) -> None:
        router.add("GET", r"/_emulator/state", self.state, kind="admin")
        router.add("GET", r"/_emulator/events", self.list_events, kind="admin")
        router.add("POST", r"/_emulator/config", self.config, kind="admin")
        router.add("POST", r"/_emulator/faults/requests", self.fault_requests, kind="admin")
        router.add("POST", r"/_emulator/faults/jobs", self.fault_jobs, kind="admin")
        router.add("POST", r"/_emulator/faults/deployments", self.fault_deployments, kind="admin")
        router.add("POST", r"/_emulator/faults/scoring", self.fault_scoring, kind="admin")
        router.add("DELETE", r"/_emulator/faults", self.clear_faults, kind="admin")

    def state(self, request: Request) -> Response:
        with self.world.lock:
            body = {
                "now": iso(self.world.clock.now()),
                "speed": self.world.clock.speed,
                "timings": vars(self.world.timings),
                "jobs": self.describe_jobs(),
                "data": [r.envelope() for r in self.world.data.values()],
                "models": [r.envelope() for r in self.world.models.values()],
                "endpoints": [
                    {**e.resource.envelope(), "deleting": e.deleting}
                    for e in self.world.endpoints.values()
                ],
                "deployments": [
                    {
                        **d.resource.envelope(),
                        "endpoint": d.endpoint,
                        "failReason": d.fail_reason,
                        "deleting": d.deleting,
                    }
                    for d in self.world.deployments.values()
                ],
                "faults": self.faults.describe(),
            }
        return Response(200, body)

    def list_events(self, request: Request) -> Response:
        return Response(200, self.events.snapshot())

    def config(self, request: Request) -> Response:
        body = _object(request)
        if "speed" in body:
            try:
                self.world.clock.set_speed(float(body.pop("speed")))
            except (TypeError, ValueError) as exc:
                raise bad_request(f"Invalid speed: {exc}") from exc
        if "webhook_url" in body:
            self.events.webhook_url = body.pop("webhook_url") or None
        try:
            with self.world.lock:
                self.world.timings.update(body)
        except KeyError as exc:
            raise bad_request(f"Unknown setting {exc}.") from exc
        except ValueError as exc:
            raise bad_request(str(exc)) from exc
        return Response(200, {"speed": self.world.clock.speed, "timings": vars(self.world.timings)})

    def fault_requests(self, request: Request) -> Response:
        self.faults.add_request_fault(_object(request))
        return Response(201, self.faults.describe())

    def fault_jobs(self, request: Request) -> Response:
        body = _object(request)
        self.faults.set_job_fault(
            _name(body), str(body.get("outcome", "fail")), str(body.get("message", ""))
        )
        return Response(201, self.faults.describe())

    def fault_deployments(self, request: Request) -> Response:
        body = _object(request)
        message = str(body.get("message") or "Injected provisioning failure.")
        self.faults.set_deployment_fault(_name(body), message)
        return Response(201, self.faults.describe())

    def fault_scoring(self, request: Request) -> Response:
        body = _object(request)
        name = _name(body)
        self.faults.set_scoring_fault(name, {k: v for k, v in body.items() if k != "name"})
        return Response(201, self.faults.describe())

    def clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        for clear in self.on_clear_faults:
            clear()
        return Response(200, self.faults.describe())


def _object(request: Request) -> dict[str, Any]:
    body = request.json() if request.body else {}
    if not isinstance(body, dict):
        raise bad_request("The body must be a JSON object.")
    return body


def _name(body: dict[str, Any]) -> str:
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request("'name' (a name or glob pattern) is required.")
    return name
