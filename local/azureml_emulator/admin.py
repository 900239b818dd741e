"""``/_emulator/...``: the emulator's own routes, for tests and demos.

No auth, no injected faults. Globs are ``fnmatch`` patterns, matched
case-insensitively. Bodies and answers are JSON.

State and settings:

- ``GET  /_emulator/state``: jobs (with their child steps), models, data,
  endpoints, deployments, settings, faults, reserved endpoint names, scoring
  contracts, datastore mappings.
- ``GET  /_emulator/events``: Azure ML events emitted, and their delivery counts.
- ``GET  /_emulator/requests[?contains=TEXT]``: the management, run-history and
  scoring requests answered, oldest first, with arrival and reply times
  (``time.time()``), status, ``Retry-After`` and whether a fault answered
  (see ``requestlog.py``); only those whose path contains TEXT when given.
- ``POST /_emulator/config``: ``{"speed", "webhook_url", <Timings fields>}``.

Faults (all cleared by ``DELETE /_emulator/faults``):

- ``POST /_emulator/faults/requests``: ``{"route", "status", "count" | "fraction",
  "retry_after", "latency_ms", "kinds", "after"}``: ``route`` is a regular
  expression searched in ``METHOD /path`` and in ``METHOD /path?query``;
  ``kinds`` defaults to ``["arm", "history", "scoring"]``; ``"after": true``
  carries the request out and answers the fault instead of its reply.
- ``POST /_emulator/faults/jobs``: ``{"name": glob, "outcome", ...}`` (201) where
  ``outcome`` is ``"fail"`` (+ ``"message"``: the fine-tune step fails with it),
  ``"stuck"`` (Running for ever), ``"not_responding"`` (+ ``"seconds"``:
  NotResponding that many emulated seconds once Running, then Running again,
  then Completed), ``"model_late"`` (+ ``"seconds"``: Completed, the model
  registered that many emulated seconds later) or ``"model_renamed"``
  (+ ``"model_name"``: the model is registered, and
  ``properties._outputModelName`` set, under that name).
- ``POST /_emulator/faults/deployments``: ``{"name": glob, "message"}``: the
  deployment's provisioning fails asynchronously with ``message``; with
  ``"quota": true`` the PUT is refused at once with Azure's 400
  ``InferencingClientCreateDeploymentFailed`` body (``message``, if given,
  replaces the quota sentence) and nothing is created.
- ``POST /_emulator/faults/scoring``: ``{"name": glob, "status": 500}`` or
  ``{"name": glob, "empty": true}``.
- ``POST /_emulator/rbac``: ``{"principal": <client id> | <object id> | "*",
  "actions": glob over ARM actions (default "*")}`` adds a deny rule (201):
  that caller's ARM and run-history requests for a matching action answer 403
  ``AuthorizationFailed`` (see ``rbac.py``). ``GET /_emulator/rbac`` lists
  the rules and the system-assigned identity's ids; ``DELETE /_emulator/rbac``
  clears the rules.
- ``DELETE /_emulator/faults``: clear every fault above, RBAC deny rules,
  scoring contracts, and the topic's faults. Not reserved endpoint names, not
  datastore mappings.

Region and container behaviour:

- ``POST /_emulator/endpoint-names``: ``{"name"}`` reserves an endpoint name as
  if another customer held it (201): creating it answers 400.
  ``DELETE /_emulator/endpoint-names`` frees every reserved name.
- ``POST /_emulator/scoring-contract``: ``{"name": deployment glob, "contract":
  "openai" | "mlflow"}`` (201): which routes and body shapes deployments serve
  (see ``scoring.py``). ``DELETE /_emulator/scoring-contract`` resets all to
  ``openai``.
- ``POST /_emulator/datastores``: ``{"name": datastore, "url": blob container
  URL}`` (201): jobs given ``azureml://datastores/<name>/paths/<p>`` read
  ``<url>/<p>`` (see ``inputs.py``). ``DELETE /_emulator/datastores`` forgets
  the mappings.

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
from local.azureml_emulator.rbac import Rbac
from local.azureml_emulator.requestlog import RequestLog
from local.azureml_emulator.scoring import CONTRACTS
from local.azureml_emulator.state import World


class AdminRoutes:
    def __init__(
        self,
        world: World,
        faults: Faults,
        events: EventSink,
        rbac: Rbac,
        describe_jobs: Callable[[], list[dict[str, Any]]],
        on_clear_faults: Sequence[Callable[[], None]] = (),
        request_log: RequestLog | None = None,
    ) -> None:
        self.world = world
        self.faults = faults
        self.events = events
        self.rbac = rbac
        self.describe_jobs = describe_jobs
        # Faults kept elsewhere (the topic stand-in's), cleared along with these.
        self.on_clear_faults = tuple(on_clear_faults)
        self.request_log = request_log or RequestLog()

    def register(self, router: Router) -> None:
        router.add("GET", r"/_emulator/state", self.state, kind="admin")
        router.add("GET", r"/_emulator/events", self.list_events, kind="admin")
        router.add("GET", r"/_emulator/requests", self.list_requests, kind="admin")
        router.add("POST", r"/_emulator/config", self.config, kind="admin")
        router.add("POST", r"/_emulator/faults/requests", self.fault_requests, kind="admin")
        router.add("POST", r"/_emulator/faults/jobs", self.fault_jobs, kind="admin")
        router.add("POST", r"/_emulator/faults/deployments", self.fault_deployments, kind="admin")
        router.add("POST", r"/_emulator/faults/scoring", self.fault_scoring, kind="admin")
        router.add("DELETE", r"/_emulator/faults", self.clear_faults, kind="admin")
        router.add("GET", r"/_emulator/rbac", self.get_rbac, kind="admin")
        router.add("POST", r"/_emulator/rbac", self.deny, kind="admin")
        router.add("DELETE", r"/_emulator/rbac", self.clear_rbac, kind="admin")
        router.add("POST", r"/_emulator/endpoint-names", self.reserve_name, kind="admin")
        router.add("DELETE", r"/_emulator/endpoint-names", self.free_names, kind="admin")
        router.add("POST", r"/_emulator/scoring-contract", self.set_contract, kind="admin")
        router.add("DELETE", r"/_emulator/scoring-contract", self.reset_contracts, kind="admin")
        router.add("POST", r"/_emulator/datastores", self.map_datastore, kind="admin")
        router.add("DELETE", r"/_emulator/datastores", self.forget_datastores, kind="admin")

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
                "rbac": self.rbac.describe(),
                **self._region(),
            }
        return Response(200, body)

    def _region(self) -> dict[str, Any]:
        with self.world.lock:
            return {
                "reserved_endpoint_names": sorted(self.world.reserved_endpoint_names),
                "scoring_contracts": dict(self.world.scoring_contracts),
                "datastores": dict(self.world.datastores),
            }

    def list_events(self, request: Request) -> Response:
        return Response(200, self.events.snapshot())

    def list_requests(self, request: Request) -> Response:
        contains = request.query.get("contains", "")
        return Response(200, {"requests": self.request_log.snapshot(contains)})

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
        self.faults.set_job_fault(_name(body), body)
        return Response(201, self.faults.describe())

    def fault_deployments(self, request: Request) -> Response:
        body = _object(request)
        quota = bool(body.get("quota"))
        message = str(body.get("message") or ("" if quota else "Injected provisioning failure."))
        self.faults.set_deployment_fault(_name(body), message, quota)
        return Response(201, self.faults.describe())

    def fault_scoring(self, request: Request) -> Response:
        body = _object(request)
        name = _name(body)
        self.faults.set_scoring_fault(name, {k: v for k, v in body.items() if k != "name"})
        return Response(201, self.faults.describe())

    def clear_faults(self, request: Request) -> Response:
        self.faults.clear()
        self.rbac.clear()
        with self.world.lock:
            self.world.scoring_contracts.clear()
        for clear in self.on_clear_faults:
            clear()
        return Response(200, self.faults.describe())

    # -- RBAC --------------------------------------------------------------------------

    def get_rbac(self, request: Request) -> Response:
        return Response(200, self.rbac.describe())

    def deny(self, request: Request) -> Response:
        body = _object(request)
        principal, actions = body.get("principal"), body.get("actions", "*")
        if not isinstance(principal, str) or not principal:
            raise bad_request("'principal' (a client id, object id or '*') is required.")
        if not isinstance(actions, str) or not actions:
            raise bad_request("'actions' must be a non-empty glob over ARM actions.")
        self.rbac.deny(principal, actions)
        return Response(201, self.rbac.describe())

    def clear_rbac(self, request: Request) -> Response:
        self.rbac.clear()
        return Response(200, self.rbac.describe())

    # -- region and containers ---------------------------------------------------------

    def reserve_name(self, request: Request) -> Response:
        name = _name(_object(request))
        with self.world.lock:
            self.world.reserved_endpoint_names.add(name.lower())
        return Response(201, self._region())

    def free_names(self, request: Request) -> Response:
        with self.world.lock:
            self.world.reserved_endpoint_names.clear()
        return Response(200, self._region())

    def set_contract(self, request: Request) -> Response:
        body = _object(request)
        name, contract = _name(body), body.get("contract")
        if contract not in CONTRACTS:
            raise bad_request(f"'contract' is one of {', '.join(CONTRACTS)}.")
        with self.world.lock:
            self.world.scoring_contracts.pop(name, None)  # a re-set glob moves to the end
            self.world.scoring_contracts[name] = str(contract)
        return Response(201, self._region())

    def reset_contracts(self, request: Request) -> Response:
        with self.world.lock:
            self.world.scoring_contracts.clear()
        return Response(200, self._region())

    def map_datastore(self, request: Request) -> Response:
        body = _object(request)
        name, url = _name(body), body.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise bad_request("'url' must be the http(s) URL of a blob container.")
        with self.world.lock:
            self.world.datastores[name.lower()] = url
        return Response(201, self._region())

    def forget_datastores(self, request: Request) -> Response:
        with self.world.lock:
            self.world.datastores.clear()
        return Response(200, self._region())


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
