"""The Azure ML port on the real ``azure-ai-ml`` client.

``azure.ai.ml`` costs most of a second to import (and tens of MiB), so the
SDK client is built on the adapter's first use, not when the composition root
builds the adapter: triggers and routes that never reach Azure ML (health,
listing, reading a run) never import it. The first use builds it once, under a
lock, as the sweep's worker threads may all reach it at the same moment.

Long operations (``begin_*``) send their first request and return: the SDK's
``LROPoller`` keeps polling on its own daemon thread, but nothing here waits
on it; the reconciler observes provisioning state on later ticks.

Reading a job (``get_job``, once per run per sweep while it trains) is one
request: ``MLClient.jobs.get`` sends two for a fine-tuning job (the job at
2024-01-01-preview, then, seeing ``jobType: FineTuning``, again at
2024-10-01-preview) and builds a ``FineTuningJob`` entity whose experimental
warning check walks the stack (``inspect.stack()``). The adapter sends the
second request alone, through the SDK's own generated client for that API
version (so the same URL, api-version, credential policy and no-retry
setting), and reads the three fields it needs from the wire JSON. Should an
SDK upgrade drop that client, ``jobs.get`` is used as before.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError

from shared.adapters.azure_errors import translate
from shared.domain.azureml import (
    DeploymentSpec,
    DeploymentView,
    EndpointView,
    JobSpec,
    JobView,
    ModelView,
)
from shared.domain.errors import PermanentError

if TYPE_CHECKING:
    from azure.ai.ml import MLClient

log = logging.getLogger(__name__)

_TASKS = {"text": "TEXT_COMPLETION", "chat": "CHAT_COMPLETION"}
# A fine-tuning job is a pipeline: when a step fails, the parent's error says only so.
_GENERIC_PIPELINE_ERROR = re.compile(r"child (run|job|step)s?|pipeline (has )?failed", re.I)


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
        self._credential = credential
        self._subscription_id = subscription_id
        self._resource_group = resource_group
        self._workspace = workspace
        self._ml_client: MLClient | None = None
        self._lock = threading.Lock()

    @property
    def _client(self) -> MLClient:
        """The SDK client, built (and ``azure.ai.ml`` imported) on first use, once."""
        client = self._ml_client
        if client is None:
            with self._lock:
                if self._ml_client is None:
                    from azure.ai.ml import MLClient

                    # No SDK retries: a refused call returns at once; short
                    # service-requested waits are taken around this port
                    # (shared/adapters/retry.py), longer ones by the reconciler on
                    # a later tick, so no invocation waits long.
                    self._ml_client = MLClient(
                        self._credential,
                        subscription_id=self._subscription_id,
                        resource_group_name=self._resource_group,
                        workspace_name=self._workspace,
                        retry_total=0,
                    )
                client = self._ml_client
        return client

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
        reads = _fine_tuning_job_reads(self._client)
        try:
            if reads is None:  # an SDK without the 2024-10-01-preview client: two GETs
                return _view(self._client.jobs.get(name))
            body = reads.get(
                resource_group_name=self._resource_group,
                workspace_name=self._workspace,
                id=name,
                cls=_wire_json,
            )
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, f"reading job {name}") from exc
        return _wire_view(name, body)

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
            # Azure answers a second PUT of a job name with a 400 UserError "A job
            # with this name already exists..." (not a 409): already submitted.
            if getattr(exc, "status_code", None) != 409 and not _already_exists(exc):
                raise translate(
                    exc, f"submitting job {spec.name}", conflict_is_retryable=False
                ) from exc
        log.info("job %s was already submitted (Azure said it exists): adopted", spec.name)
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
        """The reason a job failed, from run history; the failed step's own reason when
        the pipeline's is generic ("...errors in at least one of the child runs")."""
        parent = self._run_error(name)
        if parent and not _GENERIC_PIPELINE_ERROR.search(parent):
            return parent
        step = self._failed_step_error(name)
        if not step:
            return parent
        return f"{step} (pipeline: {parent})" if parent else step

    def _run_error(self, name: str) -> str:
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

    def _failed_step_error(self, name: str) -> str:
        """``step <name>: <error>`` of the first failed child step, or ""."""
        try:
            steps = [s for s in self._client.jobs.list(parent_job_name=name) if s is not None]
        except Exception as exc:  # run-history listing: best effort, as above
            log.warning("job %s: steps unavailable: %s", name, exc)
            return ""
        for step in steps:
            if _status(getattr(step, "status", "")) == "Failed":
                label = getattr(step, "display_name", None) or step.name
                error = self._run_error(str(step.name))
                return f"step {label}: {error}" if error else f"step {label} failed"
        return ""

    # -- models, endpoints, deployments ------------------------------------------------

    def latest_model(self, name: str) -> ModelView | None:
        from azure.ai.ml.exceptions import ValidationException

        try:
            model = self._client.models.get(name=name, label="latest")
        except ResourceNotFoundError:
            return None
        # ValidationException is an AzureError (MlException subclasses it): it must be
        # caught first. The SDK raises it for label="latest" when no version exists yet.
        except ValidationException as exc:
            if "does not exist" in str(exc):
                return None
            raise PermanentError(f"reading model {name}: {exc}") from exc
        except AzureError as exc:
            raise translate(exc, f"reading model {name}") from exc
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
            if _name_taken(exc):
                raise PermanentError(
                    f"endpoint name {name!r} is not available: online endpoint names are "
                    "unique per Azure region across all subscriptions, and another one holds "
                    "it. Set ENDPOINT_NAME to another name (or leave it unset for a name "
                    "derived from the workspace) and retry the run; nothing was trained"
                ) from exc
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
    """The job as the app needs it; the output model's name is what the service reports.

    The fine-tuning pipeline registers the model itself, possibly under a
    sanitised name: ``properties._outputModelName`` says which, the requested
    ``outputs.registered_model`` name is the fallback.
    """
    outputs = getattr(job, "outputs", None) or {}
    registered = outputs.get("registered_model") if hasattr(outputs, "get") else None
    properties = getattr(job, "properties", None) or {}
    reported = properties.get("_outputModelName") if hasattr(properties, "get") else None
    return JobView(
        name=str(job.name),
        status=_status(job.status),
        output_model=str(reported or getattr(registered, "name", "") or ""),
    )


def _fine_tuning_job_reads(client: MLClient) -> Any:
    """The SDK's generated job operations at the fine-tuning API version, or None."""
    service = getattr(client.jobs, "service_client_10_2024_preview", None)
    return getattr(service, "jobs", None)


def _wire_json(pipeline_response: Any, _deserialized: Any, _headers: Any) -> Any:
    """The reply's JSON as sent (the generated operation's ``cls`` hook)."""
    return pipeline_response.http_response.json()


def _wire_view(name: str, body: Any) -> JobView:
    """``_view`` of the job resource as the REST API sends it (``JobBase``): status in
    ``properties.status``, the reported model name in ``properties.properties``, the
    requested one in ``properties.outputs.registered_model.assetName``."""
    resource = body if isinstance(body, dict) else {}
    properties = resource.get("properties") or {}
    tags = properties.get("properties") or {}
    outputs = properties.get("outputs") or {}
    registered = outputs.get("registered_model") or {}
    return JobView(
        name=str(resource.get("name") or name),
        status=str(properties.get("status") or ""),
        output_model=str(tags.get("_outputModelName") or registered.get("assetName") or ""),
    )


def _error_text(exc: AzureError) -> str:
    return " ".join(str(part) for part in (exc.message, getattr(exc, "error", None)) if part)


def _already_exists(exc: AzureError) -> bool:
    """Azure's answer to a second PUT of the same job name (a 400, not a 409)."""
    return getattr(exc, "status_code", None) == 400 and "already exists" in _error_text(exc)


def _name_taken(exc: AzureError) -> bool:
    """Azure's 400 for an endpoint name held by someone else in the region."""
    text = _error_text(exc).lower()
    return getattr(exc, "status_code", None) == 400 and (
        "not available" in text or "unique within the region" in text
    )
