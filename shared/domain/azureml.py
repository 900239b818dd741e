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
    # Transient: "the only state exempt from strict transition orders; a run can
    # go from NotResponding to any of the previous states" (the REST spec).
    "NotResponding",
}
JOB_FAILED = {"Failed"}
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
    output_model: str = ""  # the output model's name as the job reports it, once known
    error: str = ""


@dataclass(frozen=True)
class ModelView:
    id: str
    name: str
    version: str


@dataclass(frozen=True)
class EndpointView:
    name: str
    provisioning_state: str  # Creating, Updating, Succeeded, Failed, Deleting, Canceled
    scoring_uri: str
    traffic: Mapping[str, int]


@dataclass(frozen=True)
class DeploymentView:
    name: str
    endpoint: str
    provisioning_state: str  # Creating, Updating, Scaling, Succeeded, Failed, Deleting
    model: str


@dataclass(frozen=True)
class DeploymentSpec:
    endpoint: str
    name: str
    model_id: str
    instance_type: str
    instance_count: int
    liveness_initial_delay: int  # seconds
    readiness_initial_delay: int
    request_timeout_ms: int
    tags: Mapping[str, str] = field(default_factory=dict)


SUCCEEDED = "Succeeded"
PROVISIONING = {"Creating", "Updating", "Scaling"}


class AzureML(Protocol):
    def register_data(self, name: str, version: str, url: str, description: str) -> str:
        """Register (or find) a ``uri_file`` data asset pointing at ``url``; returns its id."""
        ...

    def get_job(self, name: str) -> JobView | None: ...

    def submit_job(self, spec: JobSpec) -> JobView:
        """Submit the job, or adopt the existing one with the same name."""
        ...

    def cancel_job(self, name: str) -> None: ...

    def job_error(self, name: str) -> str:
        """The error message of a failed job, or "" when the service gives none."""
        ...

    def latest_model(self, name: str) -> ModelView | None:
        """The newest version of model ``name`` (by creation time), if any."""
        ...

    # Endpoints and deployments: ``begin_*`` start a long operation and return
    # at once; progress is observed through ``get_*`` on later reconciles.

    def get_endpoint(self, name: str) -> EndpointView | None: ...

    def begin_create_endpoint(self, name: str, description: str) -> None: ...

    def endpoint_key(self, name: str) -> str: ...

    def get_deployment(self, endpoint: str, name: str) -> DeploymentView | None: ...

    def list_deployments(self, endpoint: str) -> list[DeploymentView]: ...

    def begin_create_deployment(self, spec: DeploymentSpec) -> None: ...

    def deployment_error(self, endpoint: str, name: str) -> str:
        """Why a deployment failed, as far as the service says (the tail of its logs)."""
        ...

    def begin_set_traffic(self, endpoint: str, traffic: Mapping[str, int]) -> None: ...

    def begin_delete_deployment(self, endpoint: str, name: str) -> None: ...
