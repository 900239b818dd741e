"""Contract: synchronous refusals of online endpoints and deployments, through the real SDK.

Two checks Azure makes at PUT time, before anything is provisioned:
endpoint names are unique across the whole region (every workspace, every
subscription), and a deployment that exceeds the subscription's quota is
refused with a generic 400 whose reason sits only in ``error.details``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.entities import ManagedOnlineEndpoint, Model
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpResponse
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.azurite import Azurite
from tests.support.azureml import EmulatorAdmin, StaticTokenCredential
from tests.support.finetuning import status_of, unique
from tests.support.serving import INSTANCE_TYPE, create_endpoint, deployment_spec, train_model

pytestmark = pytest.mark.integration

NOT_AVAILABLE = (
    "The specified endpoint name '{}' is not available. "
    "Endpoint names must be unique within the region."
)
TRAINING = [{"prompt": "What is the capital of France?", "completion": "Paris."}]


@pytest.fixture(scope="module")
def model(ml_client: MLClient, azurite: Azurite) -> Iterator[Model]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container: ContainerClient = service.create_container(f"online{uuid.uuid4().hex[:12]}")
        try:
            yield train_model(ml_client, container, TRAINING)
        finally:
            container.delete_container()


@pytest.fixture
def other_workspace(ml_client: MLClient) -> MLClient:
    """A client of another customer's workspace, in another subscription, same region."""
    return MLClient(
        StaticTokenCredential("another-customer"),
        subscription_id=str(uuid.uuid4()),
        resource_group_name="rg-elsewhere",
        workspace_name="mlw-elsewhere",
        retry_total=0,
    )


@pytest.fixture
def names(ml_client: MLClient, other_workspace: MLClient) -> Iterator[list[str]]:
    """Endpoint names a test uses; deleted from both workspaces afterwards."""
    used: list[str] = []
    yield used
    for client in (ml_client, other_workspace):
        for name in used:
            with contextlib.suppress(ResourceNotFoundError):
                client.online_endpoints.begin_delete(name=name).result()


def error_body(error: HttpResponseError) -> dict[str, Any]:
    assert isinstance(error.response, HttpResponse)
    body: dict[str, Any] = error.response.json()["error"]
    return body


# --- endpoint names are regional --------------------------------------------------------


def test_an_endpoint_name_held_in_another_workspace_is_refused(
    ml_client: MLClient, other_workspace: MLClient, names: list[str]
) -> None:
    name = unique("ep")
    names.append(name)
    create_endpoint(other_workspace, name)

    with pytest.raises(HttpResponseError) as refused:
        ml_client.online_endpoints.begin_create_or_update(
            ManagedOnlineEndpoint(name=name, auth_mode="key")
        )

    assert refused.value.status_code == 400
    assert refused.value.error is not None
    assert refused.value.error.code == "UserError"
    assert refused.value.error.message == NOT_AVAILABLE.format(name)
    body = error_body(refused.value)
    assert body["details"] == []
    assert isinstance(body["additionalInfo"], list) and body["additionalInfo"]
    with pytest.raises(ResourceNotFoundError):
        ml_client.online_endpoints.get(name)


def test_the_holder_can_still_update_its_endpoint(
    other_workspace: MLClient, names: list[str]
) -> None:
    name = unique("ep")
    names.append(name)
    create_endpoint(other_workspace, name)
    endpoint = other_workspace.online_endpoints.get(name)
    endpoint.description = "updated by its owner"

    updated = other_workspace.online_endpoints.begin_create_or_update(endpoint).result()

    assert status_of(updated) == "Succeeded"
    assert other_workspace.online_endpoints.get(name).description == "updated by its owner"


def test_a_reserved_endpoint_name_is_refused_until_freed(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, names: list[str]
) -> None:
    name = unique("ep")
    names.append(name)
    emulator_admin.reserve_endpoint_name(name)
    try:
        with pytest.raises(HttpResponseError) as refused:
            create_endpoint(ml_client, name)
        emulator_admin.clear_faults()  # reservations outlive fault clearing
        with pytest.raises(HttpResponseError):
            create_endpoint(ml_client, name)
    finally:
        emulator_admin.free_endpoint_names()

    assert refused.value.status_code == 400
    assert NOT_AVAILABLE.format(name) in str(refused.value)
    assert status_of(create_endpoint(ml_client, name)) == "Succeeded"


# --- deployment quota ----------------------------------------------------------------------


def test_a_deployment_over_quota_is_refused_at_once_with_the_reason_in_details(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, model: Model, names: list[str]
) -> None:
    endpoint = unique("ep")
    names.append(endpoint)
    create_endpoint(ml_client, endpoint)
    emulator_admin.fault_deployment("greedy", quota=True)

    with pytest.raises(HttpResponseError) as refused:
        ml_client.online_deployments.begin_create_or_update(
            deployment_spec(endpoint, "greedy", str(model.id))
        )

    error = refused.value
    assert error.status_code == 400
    assert error.error is not None
    assert error.error.code == "BadRequest"
    assert error.error.message == "The request is invalid."
    [detail] = error.error.details
    assert detail.code == "InferencingClientCreateDeploymentFailed"
    prefix = "InferencingClient HttpRequestException for InferencingClientCreateDeploymentFailed: "
    message = detail.message or ""
    assert message.startswith(prefix)
    problem = json.loads(message.removeprefix(prefix))
    assert problem["status"] == 400
    assert problem["title"] == "One or more validation errors occurred."
    [sentence] = problem["errors"]["VmSize"]
    assert sentence.startswith(
        f"Not enough quota available for {INSTANCE_TYPE} "
        f"in SubscriptionId {ml_client.subscription_id}."
    )
    assert "https://aka.ms/oe-tsg#error-outofquota" in sentence
    with pytest.raises(ResourceNotFoundError):  # nothing was created
        ml_client.online_deployments.get(name="greedy", endpoint_name=endpoint)


def test_a_quota_message_replaces_the_sentence(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, model: Model, names: list[str]
) -> None:
    endpoint = unique("ep")
    names.append(endpoint)
    create_endpoint(ml_client, endpoint)
    emulator_admin.fault_deployment("greedy", "No capacity for this SKU in eastus2.", quota=True)

    with pytest.raises(HttpResponseError) as refused:
        ml_client.online_deployments.begin_create_or_update(
            deployment_spec(endpoint, "greedy", str(model.id))
        )

    [detail] = error_body(refused.value)["details"]
    problem = json.loads(detail["message"].split(": ", 1)[1])
    assert problem["errors"]["VmSize"] == ["No capacity for this SKU in eastus2."]
