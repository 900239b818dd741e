"""The real app in the local Functions host, on Azurite and the Azure ML emulator."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from local.azureml_emulator import AzureMLEmulator
from local.azurite import Azurite
from local.functions_host import FunctionsHost
from local.ports import free_port
from tests.support.app import app_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def host_settings(azurite: Azurite, emulator: AzureMLEmulator) -> dict[str, str]:
    """App settings for a host run: fast timer, the emulator's identity and topic."""
    values = app_settings(
        azurite,
        ENDPOINT_NAME=f"ep-{uuid.uuid4().hex[:10]}",
        RECONCILE_SCHEDULE="*/1 * * * * *",
        JOB_POLL_SECONDS="0",
        DEPLOY_POLL_SECONDS="0",
        SMOKE_PROMPT_COUNT="2",
        **emulator.client_env(),
        **emulator.identity_env(),
    )
    BlobServiceClient.from_connection_string(values["DATASET_STORAGE"]).create_container(
        values["DATASET_CONTAINER"]
    )
    return values


def make_host(settings: dict[str, str], state_dir: Path) -> FunctionsHost:
    return FunctionsHost(
        ROOT, settings, free_port(), state_dir=state_dir, host_id="e2e", blob_scan_seconds=0.5
    )
