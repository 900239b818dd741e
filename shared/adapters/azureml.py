"""The Azure ML port on the real ``azure-ai-ml`` client.

``azure.ai.ml`` costs seconds to import, so it is imported here, when the
adapter is first built, never on the import path of ``function_app``.

Long operations (``begin_*``) send their first request and return: the SDK's
``LROPoller`` keeps polling on its own daemon thread, but nothing here waits
on it; the reconciler observes provisioning state on later ticks.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from shared.adapters.azure_errors import translate
from shared.azureml import (
    DeploymentSpec,
    DeploymentView,
    EndpointView,
    JobSpec,
    JobView,
    ModelView,
)
from shared.errors import PermanentError

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

log = logging.getLogger(__name__)

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

    def job_error(self, name: str) -> str:
        # The ARM job resource has no error text; run history does. azure-ai-ml
        # reaches it only through this private operations object (the public
        # jobs.stream() uses the same call). Best effort: the status alone
        # still ends the run, so any failure here yields "".
        try:
            details = self._client.jobs._runs_operations.get_run_details(name)
        except Exception as exc:  # private API: never let it break a reconcile
            log.warning("job %s: error details unavailable: %s", name, exc)
            return ""
        error = getattr(details, "error", None)
        root = getattr(error, "error", None)
        message = getattr(root, "message", None) or getattr(error, "message", None)
        code = getattr(root, "code", None)
        if not message:
            return ""
        return f"{code}: {message}" if code else str(message)

    # -- models, endpoints, deployments ------------------------------------------------

    def latest_model(self, name: str) -> ModelView | None:
        from azure.ai.ml.exceptions import ValidationException

        try:
            model = self._client.models.get(name=name, label="latest")
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, f"reading model {name}") from exc
        except ValidationException as exc:  # what the SDK raises for label="latest" on no model
            if "does not exist" in str(exc):
                return None
            raise PermanentError(f"reading model {name}: {exc}") from exc
        return ModelView(id=str(model.id), name=str(model.name), version=str(model.version))

    def get_endpoint(self, name: str) -> EndpointView | None:
        try:
            endpoint = self._client.online_endpoints.get(name)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, f"reading endpoint {name}") from exc
        return EndpointView(
            name=str(endpoint.name),
            provisioning_state=_status(endpoint.provisioning_state),
            scoring_uri=str(endpoint.scoring_uri or ""),
            traffic={str(k): int(v) for k, v in (endpoint.traffic or {}).items()},
        )

    def begin_create_endpoint(self, name: str, description: str) -> None:
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        endpoint = ManagedOnlineEndpoint(name=name, auth_mode="key", description=description)
        try:
            self._client.online_endpoints.begin_create_or_update(endpoint)
        except AzureError as exc:
            raise translate(exc, f"creating endpoint {name}", conflict_is_retryable=True) from exc

    def endpoint_key(self, name: str) -> str:
        try:
            keys = self._client.online_endpoints.get_keys(name)
        except AzureError as exc:
            raise translate(exc, f"reading keys of endpoint {name}") from exc
        return str(getattr(keys, "primary_key", "") or "")

    def get_deployment(self, endpoint: str, name: str) -> DeploymentView | None:
        try:
            deployment = self._client.online_deployments.get(name=name, endpoint_name=endpoint)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, f"reading deployment {endpoint}/{name}") from exc
        return _deployment_view(deployment, endpoint)

    def list_deployments(self, endpoint: str) -> list[DeploymentView]:
        try:
            found = list(self._client.online_deployments.list(endpoint_name=endpoint))
        except ResourceNotFoundError:
            return []
        except AzureError as exc:
            raise translate(exc, f"listing deployments of {endpoint}") from exc
        return [_deployment_view(d, endpoint) for d in found]

    def begin_create_deployment(self, spec: DeploymentSpec) -> None:
        from azure.ai.ml.entities import (
            ManagedOnlineDeployment,
            OnlineRequestSettings,
            ProbeSettings,
        )

        deployment = ManagedOnlineDeployment(
            name=spec.name,
            endpoint_name=spec.endpoint,
            model=spec.model_id,
            instance_type=spec.instance_type,
            instance_count=spec.instance_count,
            liveness_probe=ProbeSettings(initial_delay=spec.liveness_initial_delay),
            readiness_probe=ProbeSettings(initial_delay=spec.readiness_initial_delay),
            request_settings=OnlineRequestSettings(request_timeout_ms=spec.request_timeout_ms),
            tags=dict(spec.tags),
        )
        try:
            self._client.online_deployments.begin_create_or_update(deployment)
        except AzureError as exc:
            raise translate(exc, f"creating deployment {spec.endpoint}/{spec.name}") from exc

    def deployment_error(self, endpoint: str, name: str) -> str:
        try:
            logs = self._client.online_deployments.get_logs(
                name=name, endpoint_name=endpoint, lines=20
            )
        except AzureError as exc:
            return f"(logs unavailable: {exc.message})"
        lines = [line for line in str(logs or "").splitlines() if line.strip()]
        return " | ".join(lines[-5:])

    def begin_set_traffic(self, endpoint: str, traffic: Mapping[str, int]) -> None:
        try:
            current = self._client.online_endpoints.get(endpoint)
            current.traffic = dict(traffic)
            self._client.online_endpoints.begin_create_or_update(current)
        except AzureError as exc:
            raise translate(exc, f"setting traffic on {endpoint}") from exc

    def begin_delete_deployment(self, endpoint: str, name: str) -> None:
        try:
            self._client.online_deployments.begin_delete(name=name, endpoint_name=endpoint)
        except ResourceNotFoundError:
            return
        except AzureError as exc:
            raise translate(exc, f"deleting deployment {endpoint}/{name}") from exc


def _deployment_view(deployment: Any, endpoint: str) -> DeploymentView:
    return DeploymentView(
        name=str(deployment.name),
        endpoint=endpoint,
        provisioning_state=_status(deployment.provisioning_state),
        model=str(deployment.model or ""),
    )


def _view(job: Any) -> JobView:
    outputs = getattr(job, "outputs", None) or {}
    registered = outputs.get("registered_model") if hasattr(outputs, "get") else None
    return JobView(
        name=str(job.name),
        status=_status(job.status),
        output_model=str(getattr(registered, "name", "") or ""),
    )
