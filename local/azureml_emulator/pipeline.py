"""A fine-tuning job's lifecycle: a pipeline of child steps on the emulated clock.

On Azure a fine-tuning job is a pipeline (``azureml.PipelineType:
FineTuning``). Its steps are child runs with run ids of their own: they raise
Event Grid events of their own and carry the real reason a job failed, while
the parent's run-history error only says that a child failed. The emulator
runs the same shape (``Timings`` set the pace)::

    <job>                      NotStarted -> Queued -> Running ...............-> Completed
    <job>_model_import_step                            Running -> Completed
    <job>_data_import_step                             Running -> Completed | Failed
    <job>_finetune_step                                           Running -> Completed | Failed
    <job>_register_model_step                                                 Running -> Completed

The data import reads the training data (``inputs.source``) off the ticker
thread, so other lifecycles keep time; unreadable data fails that step with the
reason. The fine-tune step runs ``job_run_seconds``. Injected job faults act on
it: ``fail`` fails it with the message, ``stuck`` keeps it Running for ever,
``not_responding`` turns the job (and the step) NotResponding for a while
halfway through, then Running again. The register step registers the output
model under ``Job.model_name``; with ``model_late`` the registration lands
only some emulated seconds after the job reports Completed.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from local.azureml_emulator import inputs, operations
from local.azureml_emulator.events import EventSink
from local.azureml_emulator.standin import StandInModel, TrainingDataError, train, untrained
from local.azureml_emulator.state import ChildRun, Job, World
from local.azureml_emulator.workspace import register_model

log = logging.getLogger("azureml_emulator.jobs")

TERMINAL = {"Completed", "Failed", "Canceled"}
TASK_TYPES = {"textCompletion": "text", "chatCompletion": "chat"}
STEPS = ("model_import", "data_import", "finetune", "register_model")

# Reads a blob URL into JSONL lines: the emulator's access to storage.
DataReader = Callable[[str], list[bytes]]


def child_name(job_name: str, step: str) -> str:
    return f"{job_name}_{step}_step"


def workspace_id(job: Job) -> str:
    return job.resource.id.rsplit("/jobs/", 1)[0]


class Pipeline:
    """Moves jobs and their child steps on; the ticker calls ``advance``."""

    def __init__(
        self,
        world: World,
        events: EventSink,
        read_data: DataReader,
        models: dict[str, StandInModel],
    ) -> None:
        self.world = world
        self.events = events
        self.read_data = read_data
        # Stand-in models by registered model id (lower-cased), for scoring.
        self.models = models

    def advance(self) -> None:
        """Move every job on as far as the emulated clock allows."""
        imports: list[tuple[Job, inputs.Source]] = []
        with self.world.lock:
            for job in list(self.world.jobs.values()):
                self._advance(job, imports)
        for job, source in imports:
            threading.Thread(target=self._import_data, args=(job, source), daemon=True).start()

    def _advance(self, job: Job, imports: list[tuple[Job, inputs.Source]]) -> None:
        timings = self.world.timings
        now = self.world.clock.now()
        if job.model_due is not None and now >= job.model_due:
            job.model_due = None
            self._register(job)
        waited = self.world.elapsed(job.phase_started)
        if job.status == "NotStarted" and waited >= timings.job_queue_seconds / 2:
            self.set_status(job, "Queued")
        elif job.status == "Queued" and waited >= timings.job_queue_seconds / 2:
            self.set_status(job, "Running")
            self._set_child(job, "model_import", "Running")
            self._set_child(job, "model_import", "Completed")
            self._set_child(job, "data_import", "Running")
            job.stage, job.stage_started = "data_import", now
            details = job.resource.properties["fineTuningDetails"]
            uri = str(details["trainingData"]["uri"])
            imports.append((job, inputs.source(self.world, workspace_id(job).lower(), uri)))
        elif job.status == "CancelRequested" and waited >= timings.delete_seconds:
            self.set_status(job, "Canceled")
            for child in job.children:
                if child.status not in TERMINAL:
                    self._set_child(job, child.step, "Canceled")
            job.stage = "done"
        elif job.status in {"Running", "NotResponding"}:
            self._step(job, waited)

    def _step(self, job: Job, waited: float) -> None:
        if job.stage == "data_import" and job.data_ready:
            if job.data_error:
                job.error, job.failed_step = job.data_error, "data_import"
                self._set_child(job, "data_import", "Failed", job.error)
                self._finish(job, "Failed")
                return
            self._set_child(job, "data_import", "Completed")
            self._set_child(job, "finetune", "Running")
            job.stage, job.stage_started = "finetune", self.world.clock.now()
            return
        if job.stage != "finetune" or job.stage_started is None:
            return
        if job.status == "NotResponding":
            if waited >= job.not_responding_seconds:
                job.responded = True
                job.stage_started = self.world.clock.now()
                self.set_status(job, "Running")
                self._set_child(job, "finetune", "Running")
            return
        run_seconds = self.world.timings.job_run_seconds
        ran = self.world.elapsed(job.stage_started)
        if job.not_responding_seconds and not job.responded and ran >= run_seconds / 2:
            self.set_status(job, "NotResponding")
            self._set_child(job, "finetune", "NotResponding")
            return
        if not job.outcome or ran < (run_seconds / 2 if job.responded else run_seconds):
            return  # stuck for ever, or still training
        if job.outcome == "Failed":
            job.failed_step = "finetune"
            self._set_child(job, "finetune", "Failed", job.error)
            self._finish(job, "Failed")
            return
        self._set_child(job, "finetune", "Completed")
        self._set_child(job, "register_model", "Running")
        if job.model_delay_seconds:
            job.model_due = self.world.clock.now() + dt.timedelta(seconds=job.model_delay_seconds)
        else:
            self._register(job)
        self._set_child(job, "register_model", "Completed")
        self._finish(job, "Completed")

    def _finish(self, job: Job, status: str) -> None:
        job.stage = "done"
        self.set_status(job, status)

    def _import_data(self, job: Job, source: inputs.Source) -> None:
        """The data-import step: read and "train" (off the ticker thread)."""
        task = TASK_TYPES.get(job.resource.properties["fineTuningDetails"]["taskType"], "text")
        model: StandInModel | None = None
        error = ""
        try:
            if source.missing:
                raise TrainingDataError(source.missing)
            model = untrained(task, source.unread) if source.unread else None
            if model is None:
                model = train(self.read_data(source.url))
        except TrainingDataError as exc:
            error = str(exc)
        with self.world.lock:
            job.trained, job.data_error, job.data_ready = model, error, True

    def _register(self, job: Job) -> None:
        if job.trained is None:
            return
        registered = register_model(
            self.world,
            workspace_id(job),
            job.model_name,
            job.resource.name,
            {"task": job.trained.task, "examples": len(job.trained.prompts)},
        )
        self.models[registered.id.lower()] = job.trained
        job.outputs_model = registered.id
        log.info("job %s registered model %s", job.resource.name, registered.id)

    # -- statuses and events ----------------------------------------------------------

    def set_status(self, job: Job, status: str) -> None:
        """Move the parent run to ``status`` and raise its event; hold ``world.lock``."""
        if status in TERMINAL:
            operations.finish(self.world, ("job", job.resource.id.lower()), "Succeeded")
        job.status = status
        job.phase_started = self.world.clock.now()
        job.resource.properties["status"] = status
        log.info("job %s is %s", job.resource.name, status)
        self.announce(job)

    def announce(self, job: Job) -> None:
        """Raise the parent run's status event; hold ``world.lock``."""
        self.events.run_event(
            run_id=job.resource.name,
            run_type="azureml.PipelineRun",
            status=job.status,
            completed=job.status == "Completed",
            **self._event_context(job),
        )

    def _set_child(self, job: Job, step: str, status: str, error: str = "") -> None:
        now = self.world.clock.now()
        child = next((c for c in job.children if c.step == step), None)
        if child is None:
            child = ChildRun(step, child_name(job.resource.name, step), status, now)
            job.children.append(child)
        child.status, child.error = status, error
        child.ended = now if status in TERMINAL else None
        self.events.run_event(
            run_id=child.name,
            run_type="azureml.StepRun",
            status=status,
            completed=status == "Completed",
            **{**self._event_context(job), "tags": {}},
        )

    @staticmethod
    def _event_context(job: Job) -> dict[str, Any]:
        props = job.resource.properties
        return {
            "workspace_id": workspace_id(job),
            "experiment_name": props.get("experimentName") or "Default",
            "tags": props.get("tags") or {},
        }
