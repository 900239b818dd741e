"""Fine-tuning jobs: submit, observe, cancel.

A submitted job runs as a pipeline of child steps (``pipeline.py``); when it
completes, its stand-in model (built from the training data, see
``standin``) is registered under ``properties._outputModelName``, which is
``outputs.registered_model.assetName`` unless a ``model_renamed`` fault says
otherwise, as Azure's registration step may sanitise or suffix the name.

As on Azure, the ARM job resource carries the status but not why a job failed:
run history (``history.py``) has the reason, on the failed child step.

A PUT of an existing job name is refused the way the service refuses it: 400
``UserError`` "A job with this name already exists..." with an
``Immutable``/``JobPropertyImmutable`` inner error, not 409, so the SDK raises
a plain ``HttpResponseError`` rather than ``ResourceExistsError``.
"""

from __future__ import annotations

from typing import Any

from local.azureml_emulator import inputs, operations
from local.azureml_emulator.arm import (
    Resource,
    bad_request,
    check_name,
    mfe_user_error,
    not_found,
    require,
)
from local.azureml_emulator.faults import Faults
from local.azureml_emulator.http import Request, Response, Router
from local.azureml_emulator.pipeline import TASK_TYPES, TERMINAL, Pipeline
from local.azureml_emulator.state import Job, World
from local.azureml_emulator.workspace import (
    REGISTRY_MODEL,
    WS,
    parse_asset_ref,
    workspace_of,
    ws_key,
)

DUPLICATE_JOB = (
    "A job with this name already exists. If you are trying to create a new job, use a "
    "different name. If you are trying to update an existing job, the existing job's "
    "Settings, Inputs, Outputs, Jobs, InputBindings, OutputBindings cannot be changed. "
    "Please include the same Settings, Inputs, Outputs, Jobs, InputBindings, OutputBindings "
    "as the existing job."
)


class JobRoutes:
    def __init__(self, world: World, faults: Faults, pipeline: Pipeline, base_url: str) -> None:
        self.base_url = base_url
        self.world = world
        self.faults = faults
        self.pipeline = pipeline

    def register(self, router: Router) -> None:
        router.add("PUT", WS + r"/jobs/(?P<name>[^/]+)", self.put_job)
        router.add("GET", WS + r"/jobs/(?P<name>[^/]+)", self.get_job)
        router.add("POST", WS + r"/jobs/(?P<name>[^/]+)/cancel", self.cancel_job)

    def advance(self) -> None:
        self.pipeline.advance()

    # -- routes ------------------------------------------------------------------

    def put_job(self, request: Request) -> Response:
        name = request.params["name"]
        check_name("job", name)
        key = (ws_key(request), name.lower())
        with self.world.lock:
            if key in self.world.jobs:
                raise mfe_user_error(DUPLICATE_JOB, "Immutable", "JobPropertyImmutable")
        body = request.json()
        props = require(body, "properties")
        if props.get("jobType") != "FineTuning":
            raise bad_request(
                f"The emulator only runs fine-tuning jobs; got jobType '{props.get('jobType')}'.",
                code="UserError",
            )
        details = require(body, "properties", "fineTuningDetails")
        task = require(body, "properties", "fineTuningDetails", "taskType")
        if task not in TASK_TYPES:
            raise bad_request(f"Unsupported fine-tuning taskType '{task}'.", code="UserError")
        asset_name = require(body, "properties", "outputs", "registered_model", "assetName")
        check_name("output model", asset_name)
        fault = self.faults.job_fault(name)
        with self.world.lock:
            self._check_model(request, require(details, "model", "uri"))
            inputs.check(
                self.world, key[0], require(details, "trainingData", "uri"), "trainingData"
            )
            if details.get("validationData"):
                uri = require(details, "validationData", "uri")
                inputs.check(self.world, key[0], uri, "validationData")
            if key in self.world.jobs:  # submitted meanwhile
                raise mfe_user_error(DUPLICATE_JOB, "Immutable", "JobPropertyImmutable")
            now = self.world.clock.now()
            model_name = asset_name
            if fault is not None and fault.outcome == "model_renamed":
                model_name = fault.model_name
            properties = {
                **props,
                "status": "NotStarted",
                "services": {},
                "properties": {
                    **(props.get("properties") or {}),
                    "azureml.PipelineType": "FineTuning",
                    "PipelineType": "FineTuning",
                    "_outputModelName": model_name,
                },
                "fineTuningDetails": {"modelProvider": "Custom", **details},
            }
            resource = Resource(
                type="Microsoft.MachineLearningServices/workspaces/jobs",
                id=f"{workspace_of(request).id}/jobs/{name}",
                name=name,
                properties=properties,
                created=now,
            )
            job = Job(resource=resource, status="NotStarted", phase_started=now)
            job.model_name = model_name
            if fault is not None:
                if fault.outcome == "fail":
                    job.outcome, job.error = "Failed", fault.message or "Injected failure."
                elif fault.outcome == "stuck":
                    job.outcome = ""
                elif fault.outcome == "not_responding":
                    job.not_responding_seconds = fault.seconds
                elif fault.outcome == "model_late":
                    job.model_delay_seconds = fault.seconds
            self.world.jobs[key] = job
            self.pipeline.announce(job)
        return Response(201, resource.envelope())

    def get_job(self, request: Request) -> Response:
        job = self._job(request)
        with self.world.lock:
            return Response(200, job.resource.envelope())

    def cancel_job(self, request: Request) -> Response:
        job = self._job(request)
        ws_id = workspace_of(request).id
        with self.world.lock:
            operation = operations.start(self.world, ("job", job.resource.id.lower()), "cancel")
            if job.status in TERMINAL:
                operations.finish(self.world, ("job", job.resource.id.lower()), "Succeeded")
            else:
                self.pipeline.set_status(job, "CancelRequested")
        headers = operations.headers(
            self.base_url,
            ws_id,
            operation,
            speed=self.world.clock.speed,
            async_op=False,
            location=True,
        )
        return Response(202, None, headers)

    # -- lookups ------------------------------------------------------------------------

    def _job(self, request: Request) -> Job:
        with self.world.lock:
            job = self.world.jobs.get((ws_key(request), request.params["name"].lower()))
        if job is None:
            raise not_found("Job", request.params["name"])
        return job

    def _check_model(self, request: Request, uri: str) -> None:
        if REGISTRY_MODEL.match(uri):
            return  # a catalog model: the emulator takes any registry model as a base
        ref = parse_asset_ref(uri)
        if ref is None:
            raise bad_request(f"Model reference '{uri}' is not a valid model id.", code="UserError")
        if (ws_key(request), ref[0].lower(), ref[1]) not in self.world.models:
            raise not_found("Model", f"{ref[0]}:{ref[1]}")

    def describe(self) -> list[dict[str, Any]]:
        with self.world.lock:
            return [
                {
                    "name": job.resource.name,
                    "status": job.status,
                    "error": job.error if job.status == "Failed" else "",
                    "failedStep": job.failed_step,
                    "model": job.outputs_model,
                    "outputModelName": job.model_name,
                    "experiment": job.resource.properties.get("experimentName"),
                    "tags": job.resource.properties.get("tags") or {},
                    "fineTuningDetails": job.resource.properties["fineTuningDetails"],
                    "children": [
                        {"name": c.name, "step": c.step, "status": c.status, "error": c.error}
                        for c in job.children
                    ],
                }
                for job in self.world.jobs.values()
            ]
