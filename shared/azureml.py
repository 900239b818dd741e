"""The Azure ML port: what the app needs from a workspace, shaped for this app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

JOB_ACTIVE = {
    "NotStarted",
    "Starting",
    "Provisioning",
    "Preparing",
    "Queued",
    "Running",
    "Finalizing",
    "CancelRequested",
}
JOB_FAILED = {"Failed", "NotResponding"}
JOB_CANCELED = {"Canceled"}


@dataclass(frozen=True)
class JobSpec:
    """Everything ``create_finetuning_job`` needs; names derive from the run id."""

    name: str
    experiment_name: str
    base_model: str
    task: str  # "text" or "chat"
    training_data: str  # data asset id
    validation_data: str
    output_model_prefix: str
    compute: str | None
    instance_types: tuple[str, ...]
    hyperparameters: Mapping[str, str]
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobView:
    name: str
    status: str  # the service's status string, e.g. "Running", "Completed"
    output_model: str = ""  # registered output model name, once known
    error: str = ""


class AzureML(Protocol):
    def register_data(self, name: str, version: str, url: str, description: str) -> str:
        """Register (or find) a ``uri_file`` data asset pointing at ``url``; returns its id."""
        ...

    def get_job(self, name: str) -> JobView | None: ...

    def submit_job(self, spec: JobSpec) -> JobView:
        """Submit the job, or adopt the existing one with the same name."""
        ...

    def cancel_job(self, name: str) -> None: ...
