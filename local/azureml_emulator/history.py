"""Run history: a job's run details, where Azure ML keeps a failed job's error.

The ARM job resource (``jobs.get``) carries a job's status but not why it
failed. The error lives in the run-history service, which the SDK reaches with
``ml_client.jobs._runs_operations.get_run_details(name)`` (and the public
``ml_client.jobs.stream(name)``, which raises it for a failed job):

    GET {api}/history/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/
        Microsoft.MachineLearningServices/workspaces/{ws}/runs/{runId}/details
        ?api-version=v1.0

``{api}`` is the ``api`` entry of the workspace's discovery document (see
``workspace.py``); the run id is the job name. The answer is a ``RunDetails``;
a failed run's ``error`` is a ``RunHistoryErrorResponse`` whose ``error`` is the
root error: ``{"error": {"error": {"code": "UserError", "message": ...}}}``.

Auth: a bearer token, like the ARM routes. ``api-version`` is not required,
since older azure-ai-ml releases call this route without one; that is why the
route is registered with the ``scoring`` kind (the handler authenticates,
injected request faults still apply) rather than ``arm``.
"""

from __future__ import annotations

import uuid
from typing import Any

from local.azureml_emulator.arm import iso
from local.azureml_emulator.http import Request, Response, Router, require_bearer
from local.azureml_emulator.jobs import TERMINAL
from local.azureml_emulator.state import Job, World
from local.azureml_emulator.workspace import WS, ws_key

RUN_DETAILS = r"/history/v1\.0" + WS + r"/runs/(?P<run>[^/]+)/details"


class HistoryRoutes:
    def __init__(self, world: World) -> None:
        self.world = world

    def register(self, router: Router) -> None:
        router.add("GET", RUN_DETAILS, self.get_run_details, kind="scoring")

    def get_run_details(self, request: Request) -> Response:
        require_bearer(request)
        run_id = request.params["run"]
        with self.world.lock:
            job = self.world.jobs.get((ws_key(request), run_id.lower()))
            if job is None:
                return Response(404, _not_found(run_id))
            return Response(200, run_details(job))


def run_details(job: Job) -> dict[str, Any]:
    """A job as run history describes it; call with ``world.lock`` held."""
    resource = job.resource
    props = resource.properties
    details: dict[str, Any] = {
        "runId": resource.name,
        "runUuid": str(uuid.uuid5(uuid.NAMESPACE_URL, resource.id.lower())),
        "rootRunId": resource.name,
        "status": job.status,
        "createdTimeUtc": iso(resource.created),
        "warnings": [],
        "tags": _strings(props.get("tags")),
        "properties": _strings(props.get("properties")),
        "parameters": {},
        "services": {},
        "logFiles": {},
    }
    if job.status in TERMINAL:
        details["endTimeUtc"] = iso(job.phase_started)
    if job.status == "Failed":
        details["error"] = {
            "error": {
                "code": "UserError",
                "message": job.error,
                "messageParameters": {},
                "details": [],
            },
            "time": iso(job.phase_started),
        }
    return details


def _strings(values: Any) -> dict[str, str]:
    """Run history's tags and properties are string maps."""
    if not isinstance(values, dict):
        return {}
    return {str(key): "" if value is None else str(value) for key, value in values.items()}


def _not_found(run_id: str) -> dict[str, Any]:
    return {
        "error": {
            "code": "UserError",
            "message": f"Run {run_id} was not found",
            "innerError": {"code": "NotFoundError"},
        }
    }
