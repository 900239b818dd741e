"""The Azure ML port on the real ``azure-ai-ml`` client.

``azure.ai.ml`` costs seconds to import, so it is imported here, when the
adapter is first built, never on the import path of ``function_app``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from shared.adapters.azure_errors import translate
from shared.azureml import JobSpec, JobView

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

_TASKS = {"text": "TEXT_COMPLETION", "chat": "CHAT_COMPLETION"}


def _status(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


class AzureMLWorkspace:
    def __init__(
        self,
        credential: TokenCredential,
        subscription_id: str,
        resource_group: str,
        workspace: str,
    ) -> None:
        from azure.ai.ml import MLClient

        # No in-process retries: a throttled or failing call returns at once and
        # the reconciler retries on a later tick (honouring Retry-After), so no
        # invocation sits waiting on Azure.
        self._client: MLClient = MLClient(
            credential,
            subscription_id=subscription_id,
            resource_group_name=resource_group,
            workspace_name=workspace,
            retry_total=0,
        )

    def register_data(self, name: str, version: str, url: str, description: str) -> str:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data

        try:
            existing = self._client.data.get(name=name, version=version)
            return str(existing.id)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise translate(exc, f"looking up data asset {name}:{version}") from exc
        asset = Data(
            name=name, version=version, path=url, type=AssetTypes.URI_FILE, description=description
        )
        try:
            return str(self._client.data.create_or_update(asset).id)
        except AzureError as exc:
            raise translate(exc, f"registering data asset {name}:{version}") from exc

    def get_job(self, name: str) -> JobView | None:
        try:
            job = self._client.jobs.get(name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, f"reading job {name}") from exc
        return _view(job)

    def submit_job(self, spec: JobSpec) -> JobView:
        from azure.ai.ml.finetuning import FineTuningTaskType, create_finetuning_job

        job = create_finetuning_job(
            model=spec.base_model,
            task=getattr(FineTuningTaskType, _TASKS[spec.task]),
            training_data=spec.training_data,
            validation_data=spec.validation_data,
            output_model_name_prefix=spec.output_model_prefix,
            hyperparameters=dict(spec.hyperparameters),
            compute=spec.compute,
            instance_types=list(spec.instance_types) or None,
            name=spec.name,
            display_name=spec.name,
            experiment_name=spec.experiment_name,
            tags=dict(spec.tags),
        )
        try:
            return _view(self._client.jobs.create_or_update(job))
        except ResourceExistsError:
            pass  # submitted by a concurrent invocation: adopt it below
        except AzureError as exc:
            if getattr(exc, "status_code", None) != 409:
                raise translate(
                    exc, f"submitting job {spec.name}", conflict_is_retryable=False
                ) from exc
        adopted = self.get_job(spec.name)
        if adopted is None:
            raise translate(
                AzureError(f"job {spec.name} conflicted but cannot be found"), "submitting"
            )
        return adopted

    def cancel_job(self, name: str) -> None:
        try:
            self._client.jobs.begin_cancel(name)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise translate(exc, f"cancelling job {name}") from exc


def _view(job: Any) -> JobView:
    outputs = getattr(job, "outputs", None) or {}
    registered = outputs.get("registered_model") if hasattr(outputs, "get") else None
    return JobView(
        name=str(job.name),
        status=_status(job.status),
        output_model=str(getattr(registered, "name", "") or ""),
    )
