"""Test-side helpers to submit fine-tuning jobs through the real SDK and watch them.

Shared by the contract tests: fresh names, JSONL uploads to Azurite, data asset
registration, a fine-tuning job spec, and polling ``jobs.get`` to a terminal
status.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from azure.ai.ml import MLClient
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Data
from azure.ai.ml.finetuning import FineTuningTaskType, create_finetuning_job
from azure.storage.blob import ContainerClient

from tests.support.azureml import wait_until

BASE_MODEL = "azureml://registries/azureml/models/mistralai-Mistral-7B-v01/versions/19"
TERMINAL = {"Completed", "Failed", "Canceled"}


def unique(prefix: str) -> str:
    """A fresh resource name: letters first, 3-32 characters, safe for every kind."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def status_of(entity: Any) -> str:
    """The SDK's status enums compare as strings; keep plain strings for messages."""
    value = getattr(entity, "status", None) or getattr(entity, "provisioning_state", None)
    return str(getattr(value, "value", value))


def upload_jsonl(container: ContainerClient, blob_name: str, records: list[dict[str, Any]]) -> str:
    body = "\n".join(json.dumps(record, ensure_ascii=False) for record in records) + "\n"
    blob = container.get_blob_client(blob_name)
    blob.upload_blob(body.encode("utf-8"), overwrite=True)
    return str(blob.url)


def register_data(ml_client: MLClient, name: str, url: str, version: str = "1") -> Data:
    data = Data(name=name, version=version, path=url, type=AssetTypes.URI_FILE)
    registered: Data = ml_client.data.create_or_update(data)
    return registered


def finetuning_job(
    *,
    name: str,
    prefix: str,
    training: str | None,
    validation: str | None,
    task: str = FineTuningTaskType.TEXT_COMPLETION,
    experiment: str = "contract-tests",
    tags: dict[str, str] | None = None,
) -> Any:
    """A fine-tuning job spec. ``training``/``validation`` are data asset ids as the SDK
    types them (``Data.id`` is Optional); a registered asset always has one."""
    assert training is not None and validation is not None, "data asset without an id"
    return create_finetuning_job(
        model=BASE_MODEL,
        task=task,
        training_data=training,
        validation_data=validation,
        output_model_name_prefix=prefix,
        name=name,
        experiment_name=experiment,
        tags=tags or {"suite": "contract"},
    )


def wait_for_job(ml_client: MLClient, name: str) -> tuple[Any, list[str]]:
    """Poll ``jobs.get`` until the job is terminal; return it and the statuses seen."""
    seen: list[str] = []

    def probe() -> Any:
        job = ml_client.jobs.get(name)
        if not seen or seen[-1] != status_of(job):
            seen.append(status_of(job))
        return job

    job = wait_until(probe, lambda j: status_of(j) in TERMINAL, what=f"job {name} to finish")
    return job, seen
