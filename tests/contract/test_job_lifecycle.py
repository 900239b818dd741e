"""Contract: fine-tuning job behaviours of the real service, through the real SDK.

Duplicate names (400, not 409), the transient NotResponding status, the data
references a job accepts (data assets, datastore paths, https, wasbs/abfss),
and the output model: its name in ``properties._outputModelName``, a
registration that lands after the job reports Completed, and one registered
under another name than the requested prefix.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Data
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.core.rest import HttpResponse
from azure.storage.blob import BlobServiceClient, ContainerClient

from tests.support.azureml import EmulatorAdmin, wait_until
from tests.support.finetuning import (
    finetuning_job,
    register_data,
    status_of,
    unique,
    upload_jsonl,
    wait_for_job,
)

pytestmark = pytest.mark.integration

TRAINING = [
    {"prompt": "What is the capital of France?", "completion": "Paris."},
    {"prompt": "What is the capital of Japan?", "completion": "Tokyo."},
    {"prompt": "What is the capital of Peru?", "completion": "Lima."},
]
DUPLICATE = "A job with this name already exists."
EXAMPLES = "azureml.emulator.examples"  # how many examples the stand-in model learned


@pytest.fixture
def container(blob_service: BlobServiceClient) -> Iterator[ContainerClient]:
    client = blob_service.create_container(f"lifecycle{uuid.uuid4().hex[:12]}")
    yield client
    client.delete_container()


@pytest.fixture
def training_url(container: ContainerClient) -> str:
    return upload_jsonl(container, "train.jsonl", TRAINING)


@pytest.fixture
def training_data(ml_client: MLClient, training_url: str) -> str:
    return str(register_data(ml_client, unique("data"), training_url).id)


def submit(ml_client: MLClient, name: str, prefix: str, training: str, validation: str) -> Any:
    return ml_client.jobs.create_or_update(
        finetuning_job(name=name, prefix=prefix, training=training, validation=validation)
    )


# --- duplicate names ----------------------------------------------------------------------


def test_a_duplicate_job_name_is_a_400_user_error_not_a_conflict(
    ml_client: MLClient, training_data: str
) -> None:
    name = unique("job")
    submit(ml_client, name, unique("model"), training_data, training_data)

    with pytest.raises(HttpResponseError) as duplicate:
        submit(ml_client, name, unique("model"), training_data, training_data)

    error = duplicate.value
    assert not isinstance(error, ResourceExistsError)
    assert error.status_code == 400
    assert error.error is not None
    assert error.error.code == "UserError"
    assert (error.error.message or "").startswith(DUPLICATE)
    assert isinstance(error.response, HttpResponse)
    body = error.response.json()["error"]
    assert body["details"] == []
    [inner] = [i for i in body["additionalInfo"] if i["type"] == "InnerError"]
    assert inner["info"]["value"] == {
        "code": "Immutable",
        "innerError": {"code": "JobPropertyImmutable", "innerError": None},
    }
    assert status_of(ml_client.jobs.get(name)) != "Failed"  # the first job is untouched


# --- NotResponding ------------------------------------------------------------------------


def test_a_not_responding_job_recovers_and_completes(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, training_data: str
) -> None:
    name, prefix = unique("job"), unique("model")
    emulator_admin.fault_job(name, "not_responding", seconds=10)
    submit(ml_client, name, prefix, training_data, training_data)

    quiet = wait_until(
        lambda: ml_client.jobs.get(name),
        lambda job: status_of(job) == "NotResponding",
        what=f"job {name} to stop responding",
    )
    job, seen = wait_for_job(ml_client, name)

    assert status_of(quiet) == "NotResponding"
    assert status_of(job) == "Completed"
    assert seen[-1] == "Completed"
    # Polling may miss the short Running phase on a busy machine; the status events
    # record every change, so the order is checked there.
    statuses = [
        e["data"]["runStatus"]
        for e in emulator_admin.events()
        if e["data"]["runId"] == name and "runStatus" in e["data"]
    ]
    assert statuses[statuses.index("Running") :] == [
        "Running",
        "NotResponding",
        "Running",
        "Completed",
    ]
    assert ml_client.models.get(name=prefix, version="1").name == prefix


# --- data references ----------------------------------------------------------------------


def test_datastore_and_https_uris_are_accepted_and_read(
    ml_client: MLClient,
    emulator_admin: EmulatorAdmin,
    container: ContainerClient,
    training_url: str,
) -> None:
    datastore = unique("store").replace("-", "")
    emulator_admin.map_datastore(datastore, container.url)
    name, prefix = unique("job"), unique("model")
    try:
        created = submit(
            ml_client,
            name,
            prefix,
            f"azureml://datastores/{datastore}/paths/train.jsonl",
            training_url,
        )
        job, _ = wait_for_job(ml_client, name)
    finally:
        emulator_admin.forget_datastores()

    assert created.training_data.path == f"azureml://datastores/{datastore}/paths/train.jsonl"
    assert created.validation_data.path == training_url
    assert status_of(job) == "Completed"
    model = ml_client.models.get(name=prefix, version="1")
    assert model.properties[EXAMPLES] == str(len(TRAINING))  # the datastore blob was read


def test_unreadable_storage_uris_are_accepted_and_train_on_nothing(
    ml_client: MLClient, training_url: str
) -> None:
    name, prefix = unique("job"), unique("model")
    submit(
        ml_client,
        name,
        prefix,
        "azureml://datastores/workspaceblobstore/paths/unmapped/train.jsonl",
        "abfss://data@account.dfs.core.windows.net/valid.jsonl",
    )
    wasbs_name = unique("job")
    submit(
        ml_client,
        wasbs_name,
        unique("model"),
        "wasbs://data@account.blob.core.windows.net/train.jsonl",
        training_url,
    )

    for job_name in (name, wasbs_name):
        assert status_of(wait_for_job(ml_client, job_name)[0]) == "Completed"
    assert ml_client.models.get(name=prefix, version="1").properties[EXAMPLES] == "0"


def test_a_wasbs_data_asset_is_accepted(ml_client: MLClient) -> None:
    name = unique("data")
    path = "wasbs://data@account.blob.core.windows.net/folder/train.jsonl"

    created = ml_client.data.create_or_update(
        Data(name=name, version="1", path=path, type=AssetTypes.URI_FILE)
    )

    assert created.path == path


def test_an_unsupported_data_reference_is_a_400(ml_client: MLClient) -> None:
    with pytest.raises(HttpResponseError) as refused:
        submit(ml_client, unique("job"), unique("model"), "ftp://host/train.jsonl", "ftp://x/y")

    assert refused.value.status_code == 400


# --- the output model ---------------------------------------------------------------------


def test_the_output_model_name_is_in_the_job_properties(
    ml_client: MLClient, training_data: str
) -> None:
    name, prefix = unique("job"), unique("model")

    created = submit(ml_client, name, prefix, training_data, training_data)
    job, _ = wait_for_job(ml_client, name)

    for entity in (created, job):
        assert entity.properties["_outputModelName"] == prefix
        assert entity.outputs["registered_model"].name == prefix
    assert ml_client.models.get(name=prefix, version="1").name == prefix


def test_a_late_model_is_registered_after_the_job_completed(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, training_data: str
) -> None:
    name, prefix = unique("job"), unique("model")
    emulator_admin.fault_job(name, "model_late", seconds=10)
    submit(ml_client, name, prefix, training_data, training_data)

    job, _ = wait_for_job(ml_client, name)
    with pytest.raises(ResourceNotFoundError):
        ml_client.models.get(name=prefix, version="1")  # Completed, and no model yet

    assert status_of(job) == "Completed"
    model = wait_until(
        lambda: [m for m in ml_client.models.list(name=prefix)],
        bool,
        what=f"model {prefix} to be registered",
    )
    assert [m.version for m in model] == ["1"]


def test_a_renamed_model_is_named_by_the_job_properties(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, training_data: str
) -> None:
    name, prefix = unique("job"), unique("model")
    renamed = f"{prefix}-ft-0a1b2c"
    emulator_admin.fault_job(name, "model_renamed", model_name=renamed)

    created = submit(ml_client, name, prefix, training_data, training_data)
    job, _ = wait_for_job(ml_client, name)

    assert status_of(job) == "Completed"
    assert created.properties["_outputModelName"] == renamed
    assert job.properties["_outputModelName"] == renamed
    assert job.outputs["registered_model"].name == prefix  # what was asked for
    assert ml_client.models.get(name=renamed, version="1").name == renamed
    with pytest.raises(ResourceNotFoundError):
        ml_client.models.get(name=prefix, version="1")
