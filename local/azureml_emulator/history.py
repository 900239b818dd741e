"""Run history: runs, their details and children, where Azure ML keeps why a job failed.

The ARM job resource (``jobs.get``) carries a job's status but not why it
failed. The error lives in the run-history service, which the SDK reaches
through ``ml_client.jobs._runs_operations`` (``RunOperations``):

    GET {api}/history/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/
        Microsoft.MachineLearningServices/workspaces/{ws}/runs/{runId}[/details|/children]

- ``.../runs/{id}/details``: ``get_run_details(id)``, a ``RunDetails`` (also
  what the public ``jobs.stream`` reads);
- ``.../runs/{id}``: ``get_run(id)``, a ``Run``;
- ``.../runs/{id}/children``: ``get_run_children(id)``, which the public
  ``jobs.list(parent_job_name=id)`` calls after a ``jobs.get(id)``: a
  ``PaginatedRunList`` of ``Run`` objects, turned into ``_BaseJob`` entities.

``{api}`` is the ``api`` entry of the workspace's discovery document (see
``workspace.py``). Run ids are job names for parents and
``<job>_<step>_step`` for the pipeline's child steps (``pipeline.py``).

A fine-tuning job is a pipeline, so a failed parent's ``error`` is the generic
"User errors were found in at least one of the child runs."; the failed
child's ``error`` has the reason. Both are ``{"error": {"code": "UserError",
"message": ...}}`` (a ``RunHistoryErrorResponse`` around its root error).

Routes are of the ``history`` kind: bearer token and RBAC as for ARM, no
``api-version`` (older azure-ai-ml releases send none).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from local.azureml_emulator.arm import iso
from local.azureml_emulator.http import Request, Response, Router
from local.azureml_emulator.pipeline import TERMINAL
from local.azureml_emulator.state import ChildRun, Job, World
from local.azureml_emulator.workspace import WS, ws_key

RUN = r"/history/v1\.0" + WS + r"/runs/(?P<run>[^/]+)"
CHILD_FAILED = "User errors were found in at least one of the child runs."


class HistoryRoutes:
    def __init__(self, world: World) -> None:
        self.world = world

    def register(self, router: Router) -> None:
        router.add("GET", RUN + r"/details", self.get_run_details, kind="history")
        router.add("GET", RUN + r"/children", self.get_children, kind="history")
        router.add("GET", RUN, self.get_run, kind="history")

    def get_run_details(self, request: Request) -> Response:
        with self.world.lock:
            found = self._find(request)
            if found is None:
                return Response(404, _not_found(request.params["run"]))
            return Response(200, run_details(*found))

    def get_run(self, request: Request) -> Response:
        with self.world.lock:
            found = self._find(request)
            if found is None:
                return Response(404, _not_found(request.params["run"]))
            return Response(200, run(*found))

    def get_children(self, request: Request) -> Response:
        with self.world.lock:
            found = self._find(request)
            if found is None:
                return Response(404, _not_found(request.params["run"]))
            job, child = found
            children = [] if child is not None else sorted(job.children, key=lambda c: c.created)
            top = request.query.get("$top")
            if top and top.isdigit():
                children = children[: int(top)]
            value = [run(job, c) for c in children]
        return Response(200, {"value": value, "continuationToken": None, "nextLink": None})

    def _find(self, request: Request) -> tuple[Job, ChildRun | None] | None:
        """The run named in the path: a job, or one of its child steps."""
        workspace, run_id = ws_key(request), request.params["run"].lower()
        job = self.world.jobs.get((workspace, run_id))
        if job is not None:
            return job, None
        for (ws, _), candidate in self.world.jobs.items():
            if ws != workspace:
                continue
            for child in candidate.children:
                if child.name.lower() == run_id:
                    return candidate, child
        return None


def _uuid(job: Job, child: ChildRun | None = None) -> str:
    key = job.resource.id.lower() + (f"/{child.name.lower()}" if child else "")
    return str(uuid.uuid5(uuid.NAMESPACE_URL, key))


def _error(message: str, when: dt.datetime | None) -> dict[str, Any]:
    return {
        "error": {
            "code": "UserError",
            "message": message,
            "messageParameters": {},
            "details": [],
        },
        "time": iso(when) if when else None,
    }


def _common(job: Job, child: ChildRun | None) -> dict[str, Any]:
    """Fields ``Run`` and ``RunDetails`` share; call with ``world.lock`` held."""
    props = job.resource.properties
    if child is None:
        status, created = job.status, job.resource.created
        ended = job.phase_started if job.status in TERMINAL else None
        error = CHILD_FAILED if job.status == "Failed" else ""
    else:
        status, created, ended = child.status, child.created, child.ended
        error = child.error if child.status == "Failed" else ""
    common: dict[str, Any] = {
        "runId": child.name if child else job.resource.name,
        "runUuid": _uuid(job, child),
        "rootRunId": job.resource.name,
        "rootRunUuid": _uuid(job),
        "status": status,
        "createdTimeUtc": iso(created),
        "startTimeUtc": iso(created),
        "warnings": [],
        "tags": {} if child else _strings(props.get("tags")),
        "properties": _strings(props.get("properties"))
        if child is None
        else {"azureml.nodeid": child.step, "azureml.pipelinerunid": job.resource.name},
        "parameters": {},
        "services": {},
    }
    if child is not None:
        common["parentRunId"] = job.resource.name
        common["parentRunUuid"] = _uuid(job)
    if ended is not None:
        common["endTimeUtc"] = iso(ended)
    if error:
        common["error"] = _error(error, ended)
    return common


def run_details(job: Job, child: ChildRun | None = None) -> dict[str, Any]:
    """A run as ``RunDetails``; call with ``world.lock`` held."""
    return {**_common(job, child), "logFiles": {}}


def run(job: Job, child: ChildRun | None = None) -> dict[str, Any]:
    """A run as ``Run`` (what ``get_run`` and the children list answer)."""
    common = _common(job, child)
    common["createdUtc"] = common.pop("createdTimeUtc")
    common["startTimeUtc"] = common["createdUtc"]
    experiment = job.resource.properties.get("experimentName") or "Default"
    # The same experiment id the run's Event Grid events carry (events.py).
    workspace = job.resource.id.rsplit("/jobs/", 1)[0]
    experiment_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{workspace}/{experiment}")
    return {
        **common,
        "name": child.step if child else job.resource.name,
        "displayName": child.step if child else job.resource.properties.get("displayName"),
        "experimentId": str(experiment_id),
        "runType": "azureml.StepRun" if child else "azureml.PipelineRun",
        "target": "serverless",
    }


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
