"""Reading a fine-tuning job costs one request (the sweep reads every training run's job).

``MLClient.jobs.get`` sends two GETs for a fine-tuning job (2024-01-01-preview, then
2024-10-01-preview); the adapter sends the second alone and must see what the SDK
sees: status, and the output model's name as the job reports it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests.adapters
from azure.ai.ml import MLClient
from azure.storage.blob import BlobServiceClient

from shared.adapters.azureml import AzureMLWorkspace, _view
from shared.domain.azureml import JobView
from tests.support.azureml import EmulatorAdmin, StaticTokenCredential, wait_until
from tests.support.finetuning import (
    finetuning_job,
    register_data,
    status_of,
    unique,
    upload_jsonl,
    wait_for_job,
)

pytestmark = pytest.mark.integration

TRAINING = [{"prompt": "What is the capital of Peru?", "completion": "Lima."}]


@pytest.fixture
def workspace(ml_client: MLClient) -> AzureMLWorkspace:
    """The adapter on the same workspace as ``ml_client``."""
    return AzureMLWorkspace(
        StaticTokenCredential(),
        ml_client.subscription_id,
        ml_client.resource_group_name,
        str(ml_client.workspace_name),
    )


@pytest.fixture
def training_data(ml_client: MLClient, blob_service: BlobServiceClient) -> Iterator[str]:
    container = blob_service.create_container(f"jobreads{uuid.uuid4().hex[:12]}")
    url = upload_jsonl(container, "train.jsonl", TRAINING)
    yield str(register_data(ml_client, unique("data"), url).id)
    container.delete_container()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every (method, url) this process sends from now on."""
    seen: list[tuple[str, str]] = []
    original = requests.adapters.HTTPAdapter.send

    def send(adapter: requests.adapters.HTTPAdapter, request: Any, *args: Any, **kw: Any) -> Any:
        seen.append((str(request.method), str(request.url)))
        return original(adapter, request, *args, **kw)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return seen


def _submit(ml_client: MLClient, name: str, prefix: str, data: str) -> None:
    ml_client.jobs.create_or_update(
        finetuning_job(name=name, prefix=prefix, training=data, validation=data)
    )


def _job_requests(sent: list[tuple[str, str]], name: str) -> list[tuple[str, str, str]]:
    found = []
    for method, url in sent:
        parts = urlsplit(url)
        if parts.path.endswith(f"/jobs/{name}"):
            version = parse_qs(parts.query).get("api-version", [""])[0]
            found.append((method, parts.path, version))
    return found


def test_a_running_job_is_read_in_one_request_as_the_sdk_shows_it(
    ml_client: MLClient,
    emulator_admin: EmulatorAdmin,
    workspace: AzureMLWorkspace,
    training_data: str,
    sent: list[tuple[str, str]],
) -> None:
    name, prefix = unique("job"), unique("model")
    emulator_admin.fault_job(name, "stuck")
    _submit(ml_client, name, prefix, training_data)
    job = wait_until(
        lambda: ml_client.jobs.get(name), lambda j: status_of(j) == "Running", what="Running"
    )
    sent.clear()

    view = workspace.get_job(name)

    assert _job_requests(sent, name) == [("GET", urlsplit(sent[0][1]).path, "2024-10-01-preview")]
    assert len(sent) == 1
    assert view == _view(job) == JobView(name, "Running", prefix)


def test_a_completed_job_names_the_model_it_registered(
    ml_client: MLClient,
    emulator_admin: EmulatorAdmin,
    workspace: AzureMLWorkspace,
    training_data: str,
    sent: list[tuple[str, str]],
) -> None:
    name, prefix = unique("job"), unique("model")
    renamed = f"{prefix}-ft-0a1b2c"
    emulator_admin.fault_job(name, "model_renamed", model_name=renamed)
    _submit(ml_client, name, prefix, training_data)
    job, _ = wait_for_job(ml_client, name)
    sent.clear()

    view = workspace.get_job(name)

    assert len(_job_requests(sent, name)) == 1 and len(sent) == 1
    assert view == _view(job) == JobView(name, "Completed", renamed)


def test_a_job_that_does_not_exist_is_none(
    workspace: AzureMLWorkspace, sent: list[tuple[str, str]]
) -> None:
    name = unique("job")

    assert workspace.get_job(name) is None
    assert len(_job_requests(sent, name)) == 1
