"""Shared pytest fixtures for the local stand-ins of Azure services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from local.azurite import Azurite

# --- Azurite ---
# One Azurite process for the whole session: start-up costs about a second, and
# tests isolate themselves by using their own container and table names. Its data
# lives in a temporary directory that is deleted when the session ends.


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A running Azurite with free ports and throw-away storage."""
    # The context manager stops Azurite however the session ends (failures, Ctrl-C).
    with Azurite() as instance:
        yield instance


@pytest.fixture
def blob_service(azurite: Azurite) -> Iterator[BlobServiceClient]:
    """A Blob client for the session's Azurite, with the SDK's default settings."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as client:
        yield client


@pytest.fixture
def table_service(azurite: Azurite) -> Iterator[TableServiceClient]:
    """A Table client for the session's Azurite."""
    with TableServiceClient.from_connection_string(azurite.connection_string) as client:
        yield client


# --- Azure ML emulator ---
# One emulator for the whole session, on a fast clock (a fine-tuning job takes
# about 0.3 s of wall time, a deployment about 0.2 s). The real azure-ai-ml
# client reaches it through the environment alone: MLClient reads
# AZUREML_DEV_URL_MFE when it is constructed (azure/ai/ml/_ml_client.py via
# _get_base_url_from_metadata(is_local_mfe=True)), not at import, and requests
# reads REQUESTS_CA_BUNDLE on every call. So the variables are set before any
# client exists and stay set until the emulator stops.

from typing import TYPE_CHECKING  # noqa: E402

from local.azureml_emulator import AzureMLEmulator  # noqa: E402
from tests.support.azureml import EmulatorAdmin, StaticTokenCredential  # noqa: E402

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

EMULATOR_SPEED = 10.0  # emulated seconds per wall-clock second
SUBSCRIPTION_ID = "00000000-0000-0000-0000-00000000c0de"
RESOURCE_GROUP = "rg-finetune-contract"
WORKSPACE = "mlw-finetune-contract"


@pytest.fixture(scope="session")
def emulator() -> Iterator[AzureMLEmulator]:
    """A running Azure ML emulator, with the client environment pointing at it."""
    with (
        AzureMLEmulator(speed=EMULATOR_SPEED) as instance,
        pytest.MonkeyPatch.context() as env,
    ):
        for name, value in instance.client_env().items():
            env.setenv(name, value)
        yield instance


@pytest.fixture
def emulator_admin(emulator: AzureMLEmulator) -> Iterator[EmulatorAdmin]:
    """The emulator's admin routes; faults and settings are reset after the test."""
    admin = EmulatorAdmin(emulator.base_url, emulator.ca_bundle)
    settings = admin.state()
    try:
        yield admin
    finally:
        admin.clear_faults()
        admin.config(speed=settings["speed"], webhook_url=None, **settings["timings"])
        admin.close()


@pytest.fixture(scope="session")
def ml_client(emulator: AzureMLEmulator) -> MLClient:
    """The real workspace MLClient, reaching the emulator through the environment only."""
    from azure.ai.ml import MLClient  # after `emulator` set the environment

    return MLClient(
        StaticTokenCredential(),
        subscription_id=SUBSCRIPTION_ID,
        resource_group_name=RESOURCE_GROUP,
        workspace_name=WORKSPACE,
        retry_total=0,  # surface throttling and 5xx at once instead of retrying
    )


# --- The app on the local stack ---
# The app authenticates with DefaultAzureCredential, as on a Function App; the
# emulator serves the platform's managed identity endpoint, so the same
# credential code gets its tokens locally.


@pytest.fixture(scope="session")
def app_identity(emulator: AzureMLEmulator) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in emulator.identity_env().items():
            env.setenv(name, value)
        yield
