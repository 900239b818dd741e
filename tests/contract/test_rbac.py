"""Contract: ARM authorisation failures, through the real SDK and real credentials.

Azure answers a caller without a role assignment covering an action with 403
``AuthorizationFailed`` naming the client, its object id, the action (in the
``Microsoft.MachineLearningServices/...`` form) and the scope. The emulator
grants everything until a deny rule takes a permission away from a principal:
a managed identity (tokens from the identity stand-in, through the real
``ManagedIdentityCredential``) or a static token's text.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.ai.ml import MLClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential

from local.azureml_emulator import AzureMLEmulator
from local.azureml_emulator.rbac import SYSTEM_ASSIGNED
from tests.support.azureml import EmulatorAdmin, StaticTokenCredential
from tests.support.finetuning import register_data, unique
from tests.support.serving import create_endpoint

pytestmark = pytest.mark.integration

PROVIDER = "Microsoft.MachineLearningServices"
DENIED = (
    "The client '{client}' with object id '{object}' does not have authorization to perform "
    "action '{action}' over scope '{scope}' or the scope is invalid. If access was recently "
    "granted, please refresh your credentials."
)
BLOB = "https://account.blob.core.windows.net/data/train.jsonl"


def client_of(ml_client: MLClient, credential: TokenCredential) -> MLClient:
    """Another client of the same workspace, authenticating with ``credential``."""
    return MLClient(
        credential,
        subscription_id=ml_client.subscription_id,
        resource_group_name=ml_client.resource_group_name,
        workspace_name=ml_client.workspace_name,
        retry_total=0,
    )


def workspace_scope(ml_client: MLClient) -> str:
    return (
        f"/subscriptions/{ml_client.subscription_id}/resourceGroups/"
        f"{ml_client.resource_group_name}/providers/{PROVIDER}/workspaces/"
        f"{ml_client.workspace_name}"
    )


def forbidden(error: HttpResponseError) -> str:
    """The 403's message, after checking the status and code."""
    assert error.status_code == 403
    assert error.error is not None
    assert error.error.code == "AuthorizationFailed"
    return str(error.error.message)


@pytest.fixture
def identity_env(emulator: AzureMLEmulator) -> Iterator[None]:
    """The emulator as the platform's managed-identity endpoint (as on a Function App)."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in emulator.identity_env().items():
            env.setenv(name, value)
        yield


# --- static tokens ----------------------------------------------------------------------


def test_a_denied_token_gets_authorization_failed_for_that_action_only(
    ml_client: MLClient, emulator_admin: EmulatorAdmin
) -> None:
    token = f"rbac-{uuid.uuid4().hex[:8]}"
    caller = client_of(ml_client, StaticTokenCredential(token))
    emulator_admin.deny(token, f"{PROVIDER}/workspaces/data/*/write")
    name = unique("data")

    with pytest.raises(HttpResponseError) as denied:
        register_data(caller, name, BLOB)
    registered = register_data(ml_client, name, BLOB)  # another caller is not affected
    read = caller.data.get(name=name, version="1")  # reading is still allowed

    message = forbidden(denied.value)
    assert message.startswith(f"The client '{token}' with object id '")
    assert f"action '{PROVIDER}/workspaces/data/versions/write'" in message
    scope = f"{workspace_scope(ml_client)}/data/{name}/versions/1"
    assert f"over scope '{scope}'" in message
    assert read.id == registered.id


def test_clearing_rules_restores_access(ml_client: MLClient, emulator_admin: EmulatorAdmin) -> None:
    token = f"rbac-{uuid.uuid4().hex[:8]}"
    caller = client_of(ml_client, StaticTokenCredential(token))
    name = unique("data")
    register_data(ml_client, name, BLOB)

    emulator_admin.deny(token)
    with pytest.raises(HttpResponseError) as denied:
        caller.data.get(name=name, version="1")
    emulator_admin.clear_rbac()
    after_clear_rbac = caller.data.get(name=name, version="1")
    emulator_admin.deny("*")
    with pytest.raises(HttpResponseError):
        ml_client.data.get(name=name, version="1")  # "*" denies every caller
    emulator_admin.clear_faults()  # clears the rules too
    after_clear_faults = caller.data.get(name=name, version="1")

    assert f"action '{PROVIDER}/workspaces/data/versions/read'" in forbidden(denied.value)
    assert after_clear_rbac.name == after_clear_faults.name == name


def test_run_history_is_authorized_too(ml_client: MLClient, emulator_admin: EmulatorAdmin) -> None:
    token = f"rbac-{uuid.uuid4().hex[:8]}"
    caller = client_of(ml_client, StaticTokenCredential(token))
    emulator_admin.deny(token, f"{PROVIDER}/workspaces/experiments/runs/*")
    run_id = unique("job")

    with pytest.raises(HttpResponseError) as denied:
        caller.jobs._runs_operations.get_run_details(run_id)

    message = forbidden(denied.value)
    assert f"action '{PROVIDER}/workspaces/experiments/runs/read'" in message
    assert f"over scope '{workspace_scope(ml_client)}/runs/{run_id}/details'" in message


# --- managed identities --------------------------------------------------------------------


def test_a_user_assigned_identity_is_known_by_its_client_id(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, identity_env: None
) -> None:
    client_id = str(uuid.uuid4())
    caller = client_of(ml_client, ManagedIdentityCredential(client_id=client_id))
    system = client_of(ml_client, ManagedIdentityCredential())
    endpoint = unique("ep")
    create_endpoint(ml_client, endpoint)
    try:
        emulator_admin.deny(client_id, f"{PROVIDER}/workspaces/onlineEndpoints/listKeys/*")

        with pytest.raises(HttpResponseError) as denied:
            caller.online_endpoints.get_keys(endpoint)  # its GET passes, listKeys does not
        keys = system.online_endpoints.get_keys(endpoint)  # another identity
    finally:
        ml_client.online_endpoints.begin_delete(name=endpoint).result()

    message = forbidden(denied.value)
    assert message.startswith(f"The client '{client_id}' with object id '")
    assert f"action '{PROVIDER}/workspaces/onlineEndpoints/listKeys/action'" in message
    scope = f"{workspace_scope(ml_client)}/onlineEndpoints/{endpoint}/listKeys"
    assert f"over scope '{scope}'" in message
    assert keys.primary_key


def test_the_system_assigned_identity_has_fixed_ids(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, identity_env: None
) -> None:
    caller = client_of(ml_client, ManagedIdentityCredential())
    emulator_admin.deny(SYSTEM_ASSIGNED.client_id, f"{PROVIDER}/workspaces/jobs/cancel/action")
    job = unique("job")

    with pytest.raises(HttpResponseError) as denied:
        caller.jobs.begin_cancel(job)
    with pytest.raises(HttpResponseError) as not_found:
        caller.jobs.get(job)  # reading jobs is still allowed

    expected = DENIED.format(
        client=SYSTEM_ASSIGNED.client_id,
        object=SYSTEM_ASSIGNED.object_id,
        action=f"{PROVIDER}/workspaces/jobs/cancel/action",
        scope=f"{workspace_scope(ml_client)}/jobs/{job}/cancel",
    )
    assert forbidden(denied.value) == expected
    assert not_found.value.status_code == 404
    assert emulator_admin.rbac()["system_assigned"]["client_id"] == SYSTEM_ASSIGNED.client_id


def test_an_identity_can_be_denied_by_object_id(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, identity_env: None
) -> None:
    object_id = str(uuid.uuid4())
    caller = client_of(
        ml_client, ManagedIdentityCredential(identity_config={"object_id": object_id})
    )
    emulator_admin.deny(object_id, f"{PROVIDER}/workspaces/data/*")

    with pytest.raises(HttpResponseError) as denied:
        caller.data.get(name=unique("data"), version="1")

    assert f"with object id '{object_id}'" in forbidden(denied.value)
