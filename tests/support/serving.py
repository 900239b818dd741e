"""Test-side helpers to train a model on the emulator and serve it, through the real SDK.

Shared by the contract tests and the scoring tests: fine-tune on a few records
(the emulator's stand-in then answers with their completions), create a key-auth
endpoint, deploy a model to it, set its traffic. Every call waits for its
long-running operation: fine in tests, never in the app.
"""

from __future__ import annotations

from typing import Any

from azure.ai.ml import MLClient
from azure.ai.ml.entities import (
    ManagedOnlineDeployment,
    ManagedOnlineEndpoint,
    Model,
    OnlineRequestSettings,
    ProbeSettings,
)
from azure.ai.ml.finetuning import FineTuningTaskType
from azure.storage.blob import ContainerClient

from tests.support.finetuning import (
    finetuning_job,
    register_data,
    status_of,
    unique,
    upload_jsonl,
    wait_for_job,
)

INSTANCE_TYPE = "Standard_NC24ads_A100_v4"


def train_model(
    ml_client: MLClient,
    container: ContainerClient,
    records: list[dict[str, Any]],
    *,
    task: str = FineTuningTaskType.TEXT_COMPLETION,
) -> Model:
    """Upload, register, fine-tune and return the registered model (version 1)."""
    data_name = unique("data")
    data = register_data(
        ml_client, data_name, upload_jsonl(container, f"{data_name}.jsonl", records)
    )
    prefix = unique("model")
    name = unique("job")
    ml_client.jobs.create_or_update(
        finetuning_job(name=name, prefix=prefix, training=data.id, validation=data.id, task=task)
    )
    job, _ = wait_for_job(ml_client, name)
    assert status_of(job) == "Completed"
    model: Model = ml_client.models.get(name=prefix, version="1")
    return model


def create_endpoint(ml_client: MLClient, name: str) -> ManagedOnlineEndpoint:
    poller = ml_client.online_endpoints.begin_create_or_update(
        ManagedOnlineEndpoint(name=name, auth_mode="key", description="test endpoint")
    )
    endpoint: ManagedOnlineEndpoint = poller.result()
    return endpoint


def deployment_spec(endpoint: str, name: str, model_id: str | None) -> ManagedOnlineDeployment:
    """``model_id``: a model's id as the SDK types it (``Model.id`` is Optional)."""
    assert model_id is not None, "model without an id"
    return ManagedOnlineDeployment(
        name=name,
        endpoint_name=endpoint,
        model=model_id,
        instance_type=INSTANCE_TYPE,
        instance_count=1,
        liveness_probe=ProbeSettings(initial_delay=600),
        request_settings=OnlineRequestSettings(request_timeout_ms=90000),
    )


def deploy(
    ml_client: MLClient, endpoint: str, name: str, model_id: str | None
) -> ManagedOnlineDeployment:
    poller = ml_client.online_deployments.begin_create_or_update(
        deployment_spec(endpoint, name, model_id)
    )
    deployment: ManagedOnlineDeployment = poller.result()
    return deployment


def set_traffic(
    ml_client: MLClient, endpoint_name: str, traffic: dict[str, int]
) -> ManagedOnlineEndpoint:
    endpoint = ml_client.online_endpoints.get(endpoint_name)
    endpoint.traffic = traffic
    updated: ManagedOnlineEndpoint = ml_client.online_endpoints.begin_create_or_update(
        endpoint
    ).result()
    return updated
