"""Fine-tuning jobs: submit, observe, cancel, and their simulated lifecycle.

A job walks NotStarted -> Queued -> Running -> Completed on the emulated clock
(``Timings``). On completion the emulator "trains": it reads the training data
asset's blob and registers the output model named by
``outputs.registered_model.assetName``, carrying a stand-in model built from
that data (see ``standin``). Unreadable data fails the job with the reason.
Injected faults can make a named job fail or stay Running for ever.

As on Azure, the ARM job resource carries the status but not why a job failed:
the failure reason (``Job.error``) is served by run history (``history.py``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from local.azureml_emulator import operations
from local.azureml_emulator.arm import (
    ArmError,
    Resource,
    bad_request,
    check_name,
    not_found,
    require,
)
from local.azureml_emulator.events import EventSink
from local.azureml_emulator.faults import Faults
from local.azureml_emulator.http import Request, Response, Router
from local.azureml_emulator.standin import StandInModel, TrainingDataError, train
from local.azureml_emulator.state import Job, World
from local.azureml_emulator.workspace import (
    REGISTRY_MODEL,
    WS,
    parse_asset_ref,
    register_model,
    workspace_of,
    ws_key,
)

log = logging.getLogger("azureml_emulator.jobs")

TERMINAL = {"Completed", "Failed", "Canceled"}
TASK_TYPES = {"textCompletion": "text", "chatCompletion": "chat"}

# Reads a data asset's URI into JSONL lines: the emulator's access to storage.
DataReader = Callable[[str], list[bytes]]


class JobRoutes:
    def __init__(
        self,
        world: World,
        faults: Faults,
        events: EventSink,
        read_data: DataReader,
        models: dict[str, StandInModel],
        base_url: str,
    ) -> None:
        self.base_url = base_url
        self.world = world
        self.faults = faults
        self.events = events
        self.read_data = read_data
        # Stand-in models by registered model id (lower-cased), for scoring.
        self.models = models

    def register(self, router: Router) -> None:
        router.add("PUT", WS + r"/jobs/(?P<name>[^/]+)", self.put_job)
        router.add("GET", WS + r"/jobs/(?P<name>[^/]+)", self.get_job)
        router.add("POST", WS + r"/jobs/(?P<name>[^/]+)/cancel", self.cancel_job)

    # -- routes ------------------------------------------------------------------

    def put_job(self, request: Request) -> Response:
        name = request.params["name"]
        check_name("job", name)
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
        require(body, "properties", "outputs", "registered_model", "assetName")
        check_name("output model", props["outputs"]["registered_model"]["assetName"])
        key = (ws_key(request), name.lower())
        with self.world.lock:
            self._check_model(request, require(details, "model", "uri"))
            self._data_uri(request, require(details, "trainingData", "uri"), "trainingData")
            if details.get("validationData"):
                self._data_uri(request, require(details, "validationData", "uri"), "validationData")
            if key in self.world.jobs:
                raise ArmError(
                    409,
                    "UserError",
                    f"A job named '{name}' already exists in this workspace; job names are unique.",
                )
            now = self.world.clock.now()
            properties = {
                **props,
                "status": "NotStarted",
                "services": {},
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
            fault = self.faults.job_outcome(name)
            if fault is not None:
                outcome, message = fault
                job.outcome = "Failed" if outcome == "fail" else ""
                job.error = message or "Injected failure."
            self.world.jobs[key] = job
            self._event(job)
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
                self._set_status(job, "CancelRequested")
        headers = operations.headers(
            self.base_url,
            ws_id,
            operation,
            speed=self.world.clock.speed,
            async_op=False,
            location=True,
        )
        return Response(202, None, headers)

    # -- lifecycle ------------------------------------------------------------------

    def advance(self) -> None:
        """Move every job on as far as the emulated clock allows."""
        finishing: list[Job] = []
        with self.world.lock:
            timings = self.world.timings
            for job in self.world.jobs.values():
                waited = self.world.elapsed(job.phase_started)
                if job.status == "NotStarted" and waited >= timings.job_queue_seconds / 2:
                    self._set_status(job, "Queued")
                elif job.status == "Queued" and waited >= timings.job_queue_seconds / 2:
                    self._set_status(job, "Running")
                elif job.status == "CancelRequested" and waited >= timings.delete_seconds:
                    self._set_status(job, "Canceled")
                elif (
                    job.status == "Running"
                    and job.outcome
                    and not job.finishing
                    and waited >= timings.job_run_seconds
                ):
                    job.finishing = True
                    finishing.append(job)
        for job in finishing:
            # "Training" reads storage: off the ticker, so other lifecycles keep time.
            threading.Thread(target=self._finish, args=(job,), daemon=True).start()

    def _finish(self, job: Job) -> None:
        model: StandInModel | None = None
        if job.outcome == "Completed":
            details = job.resource.properties["fineTuningDetails"]
            try:
                model = train(self.read_data(self._stored_data_uri(job, details)))
            except TrainingDataError as exc:
                job.outcome, job.error = "Failed", str(exc)
        with self.world.lock:
            if job.status != "Running":  # cancelled meanwhile
                return
            if model is not None:
                ws_id = job.resource.id.rsplit("/jobs/", 1)[0]
                prefix = job.resource.properties["outputs"]["registered_model"]["assetName"]
                registered = register_model(
                    self.world,
                    ws_id,
                    prefix,
                    job.resource.name,
                    {"task": model.task, "examples": len(model.prompts)},
                )
                self.models[registered.id.lower()] = model
                job.outputs_model = registered.id
            self._set_status(job, job.outcome)

    def _set_status(self, job: Job, status: str) -> None:
        if status in TERMINAL:
            operations.finish(self.world, ("job", job.resource.id.lower()), "Succeeded")
        job.status = status
        job.phase_started = self.world.clock.now()
        job.resource.properties["status"] = status
        log.info("job %s is %s", job.resource.name, status)
        self._event(job)

    def _event(self, job: Job) -> None:
        props = job.resource.properties
        common: dict[str, Any] = {
            "workspace_id": job.resource.id.rsplit("/jobs/", 1)[0],
            "experiment_name": props.get("experimentName") or "Default",
            "tags": props.get("tags") or {},
        }
        self.events.run_event(
            run_id=job.resource.name,
            run_type="azureml.PipelineRun",
            status=job.status,
            completed=job.status == "Completed",
            **common,
        )
        if job.status == "Running":
            # Fine-tuning runs as a pipeline: its steps raise events of their own.
            self.events.run_event(
                run_id=f"{job.resource.name}_finetune_step",
                run_type="azureml.StepRun",
                status="Running",
                completed=False,
                **{**common, "tags": {}},
            )

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

    def _data_uri(self, request: Request, uri: str, field: str) -> str:
        ref = parse_asset_ref(uri)
        if ref is None:
            raise bad_request(f"{field} '{uri}' is not a data asset reference.", code="UserError")
        resource = self.world.data.get((ws_key(request), ref[0].lower(), ref[1]))
        if resource is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"{field} refers to data asset {ref[0]}:{ref[1]}, which does not exist.",
            )
        return str(resource.properties["dataUri"])

    def _stored_data_uri(self, job: Job, details: dict[str, Any]) -> str:
        ref = parse_asset_ref(details["trainingData"]["uri"])
        ws_id = job.resource.id.rsplit("/jobs/", 1)[0].lower()
        with self.world.lock:
            resource = self.world.data.get((ws_id, ref[0].lower(), ref[1])) if ref else None
        if resource is None:
            raise TrainingDataError("the training data asset no longer exists")
        return str(resource.properties["dataUri"])

    def describe(self) -> list[dict[str, Any]]:
        with self.world.lock:
            return [
                {
                    "name": job.resource.name,
                    "status": job.status,
                    "error": job.error if job.status == "Failed" else "",
                    "model": job.outputs_model,
                    "experiment": job.resource.properties.get("experimentName"),
                    "tags": job.resource.properties.get("tags") or {},
                    "fineTuningDetails": job.resource.properties["fineTuningDetails"],
                }
                for job in self.world.jobs.values()
            ]
