"""App settings, read lazily and validated once.

``load_settings()`` reads the environment (app settings on Azure,
``local.settings.json`` ``Values`` locally) when a trigger first needs it,
never at import, and raises one ``SettingsError`` that names every missing or
invalid setting and what it should look like. Every setting is listed in
``local.settings.example.json`` and the README.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.domain.errors import SettingsError
from shared.domain.hyperparameters import check_values

TaskSetting = Literal["auto", "text", "chat"]
Service = Literal["blob", "table", "queue"]

# The blob trigger's connection: the setting holding a connection string, or the
# ``DATASET_STORAGE__blobServiceUri`` / ``__queueServiceUri`` identity form.
DATASET_CONNECTION = "DATASET_STORAGE"
# The run ledger lives in the app's own storage account.
LEDGER_CONNECTION = "AzureWebJobsStorage"

BASE_MODEL = re.compile(r"^azureml://registries/[^/]+/models/[^/]+/versions/[^/]+$")
CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
ENDPOINT = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,30}[A-Za-z0-9]$")
SCORING_ROUTES = ("/completions", "/v1/completions", "/v1/chat/completions", "/score")
DEFAULT_HYPERPARAMETERS = {
    "num_train_epochs": "1",
    "learning_rate": "2e-05",
    "per_device_train_batch_size": "1",
}


def storage_connection(env: Mapping[str, str], name: str, service: Service) -> tuple[str, str]:
    """How connection ``name`` reaches ``service``, as the Functions host reads it:
    ``("connection_string", value)`` from ``name`` itself, or ``("url", service URL)``
    from ``name__<service>ServiceUri`` (``name__serviceUri``: the blob-only alias) or
    ``name__accountName`` (public cloud), for identity-based access."""
    direct = env.get(name, "").strip()
    if direct:
        return "connection_string", direct
    uri = env.get(f"{name}__{service}ServiceUri", "").strip()
    if not uri and service == "blob":
        uri = env.get(f"{name}__serviceUri", "").strip()
    if uri:
        return "url", uri
    account = env.get(f"{name}__accountName", "").strip()
    if account:
        return "url", f"https://{account}.{service}.core.windows.net"
    raise SettingsError(
        [
            f"{name} is missing: a storage connection string, or {name}__{service}ServiceUri "
            f"(or {name}__accountName) for identity-based access"
        ]
    )


@dataclass(frozen=True)
class Settings:
    subscription_id: str
    resource_group: str
    workspace: str
    base_model: str
    task: TaskSetting = "auto"
    compute: str | None = None
    instance_types: tuple[str, ...] = ()
    hyperparameters: Mapping[str, str] = field(default_factory=lambda: DEFAULT_HYPERPARAMETERS)
    experiment_name: str = "finetune-autopilot"
    dataset_container: str = "datasets"
    # The app's own outputs (reports, training/validation parts): never the watched
    # container, so they neither wake the blob trigger nor grow its scan.
    work_container: str = "autopilot-work"
    ledger_table: str = "finetuneruns"
    validation_fraction: float = 0.1
    max_dataset_bytes: int = 2 << 30
    max_example_bytes: int = 64 << 10
    min_examples: int = 10
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    # Tokens: examples over the model's maximum sequence length (the run's
    # max_seq_length hyperparameter wins) are warnings, or errors by policy.
    max_seq_length: int = 4096
    max_seq_error: bool = False
    # Deployment (the default endpoint name is derived from the workspace: see
    # ``default_endpoint_name``; names are unique per Azure region, all customers)
    endpoint_name: str = "finetune-autopilot"
    deployment_instance_type: str = "Standard_NC24ads_A100_v4"
    deployment_instance_count: int = 1
    liveness_initial_delay: int = 600
    readiness_initial_delay: int = 600
    request_timeout_ms: int = 90_000
    keep_previous_deployment: bool = False
    keep_failed_deployment: bool = False
    # Smoke test
    smoke_prompt_count: int = 3
    smoke_prompts: tuple[str, ...] = ()
    smoke_route: str = "/completions"
    smoke_max_latency_ms: int = 30_000
    smoke_min_similarity: float = 0.0
    smoke_timeout_seconds: float = 60.0
    smoke_max_tokens: int = 200
    # Evaluation gate (champion/challenger)
    eval_examples: int = 50
    eval_min_examples: int = 20
    eval_margin: float = 0.02
    eval_floor_rouge_l: float = 0.2
    eval_max_error_fraction: float = 0.1
    eval_concurrency: int = 4
    eval_step_seconds: float = 120.0
    eval_max_tokens: int = 256
    eval_max_tries: int = 3
    # Reconciler
    # Runs a sweep reconciles at once. A sweep mostly waits (one Azure ML request per
    # due run): at 8, 1,000 idle runs take about 1,000 x 60 ms / 8 = 8 s. Not above
    # 10: the SDKs' connection pool keeps 10 connections per host, and a thread past
    # them opens (and throws away) a new TLS connection per request.
    reconcile_concurrency: int = 8
    max_attempts: int = 20  # failed tries of one step before the run ends FAILED
    job_poll_seconds: float = 60.0
    deploy_poll_seconds: float = 30.0
    # Deadlines of the waiting states: past them the run ends with a clear error.
    training_deadline_hours: float = 72.0
    deploy_deadline_minutes: float = 180.0
    # Lifecycle events (disabled without an endpoint)
    events_topic_endpoint: str | None = None
    events_topic_key: str | None = None
    events_source: str = "/finetune-autopilot"
    # The preflight plan and the approval of runs over budget (``shared.domain.plan``)
    training_tokens_per_second: float | None = None  # per instance; None: cost unknown
    training_overhead_minutes: float = 30.0
    instance_prices: Mapping[str, float] = field(default_factory=dict)  # SKU -> per hour
    price_currency: str = "USD"
    rollout_minutes: float = 45.0
    compute_instance_type: str | None = None  # the SKU of FINETUNE_COMPUTE's nodes
    max_run_cost: float | None = None  # None: never hold a run for approval
    approval_deadline_hours: float = 168.0
    approver_keys: Mapping[str, str] = field(default_factory=dict)  # key fingerprint -> name


class _Reader:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def text(self, name: str, default: str | None = None, hint: str = "") -> str:
        value = self.env.get(name, "").strip()
        if value:
            return value
        if default is not None:
            return default
        self.problems.append(f"{name} is missing{': ' + hint if hint else ''}")
        return ""

    def matching(
        self, name: str, pattern: re.Pattern[str], hint: str, default: str | None = None
    ) -> str:
        value = self.text(name, default, hint)
        if value and not pattern.match(value):
            self.problems.append(f"{name}={value!r} is invalid: {hint}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in ("true", "1", "yes"):
            return True
        if raw in ("false", "0", "no"):
            return False
        self.problems.append(f"{name}={raw!r} is invalid: true or false")
        return default

    def number(self, name: str, default: float, low: float, high: float, whole: bool) -> float:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        kind = "an integer" if whole else "a number"
        try:
            value = int(raw) if whole else float(raw)
        except ValueError:
            self.problems.append(f"{name}={raw!r} is invalid: {kind} from {low} to {high}")
            return default
        if not low <= value <= high:
            self.problems.append(f"{name}={raw!r} is out of range: {kind} from {low} to {high}")
            return default
        return value

    def optional_number(self, name: str, low: float, high: float) -> float | None:
        """A number from ``low`` to ``high``, or None when the setting is unset."""
        if not self.env.get(name, "").strip():
            return None
        return self.number(name, low, low, high, whole=False)

    def json_object(self, name: str, hint: str) -> dict[str, Any]:
        """A JSON object, or {} when unset (a problem, and {}, when it is not one)."""
        raw = self.env.get(name, "").strip()
        if not raw:
            return {}
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            self.problems.append(f"{name} is invalid: {hint}")
            return {}
        return parsed


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; raise ``SettingsError`` listing all problems."""
    r = _Reader(os.environ if env is None else env)
    subscription = r.text("AZURE_SUBSCRIPTION_ID", hint="the Azure subscription id (a GUID)")
    resource_group = r.text("AZURE_RESOURCE_GROUP", hint="the resource group of the workspace")
    workspace = r.text("AZUREML_WORKSPACE", hint="the Azure ML workspace name")
    base_model = r.matching(
        "FINETUNE_BASE_MODEL",
        BASE_MODEL,
        "a full registry model id like "
        "azureml://registries/azureml/models/mistralai-Mistral-7B-v01/versions/19",
    )
    task = r.text("FINETUNE_TASK", "auto").lower()
    if task not in ("auto", "text", "chat"):
        r.problems.append(f"FINETUNE_TASK={task!r} is invalid: one of auto, text, chat")
        task = "auto"
    compute = r.text("FINETUNE_COMPUTE", "") or None
    instance_types = tuple(
        t.strip() for t in r.text("FINETUNE_INSTANCE_TYPES", "").split(",") if t.strip()
    )
    if compute is None and not instance_types:
        r.problems.append(
            "FINETUNE_COMPUTE or FINETUNE_INSTANCE_TYPES is missing: a compute cluster name, or "
            "serverless instance types like Standard_NC24ads_A100_v4 (comma-separated)"
        )
    hyperparameters = _hyperparameters(r)
    experiment = r.text("FINETUNE_EXPERIMENT", "finetune-autopilot")
    container = r.matching(
        "DATASET_CONTAINER",
        CONTAINER,
        "a blob container name: 3-63 lower-case letters, digits and single hyphens",
        default="datasets",
    )
    work = r.matching(
        "WORK_CONTAINER",
        CONTAINER,
        "a blob container name: 3-63 lower-case letters, digits and single hyphens",
        default="autopilot-work",
    )
    table = r.matching(
        "RUN_TABLE",
        TABLE,
        "a table name: 3-63 letters and digits, starting with a letter",
        default="finetuneruns",
    )
    fraction = r.number("VALIDATION_FRACTION", 0.1, 0.01, 0.5, whole=False)
    max_bytes = r.number("MAX_DATASET_BYTES", 2 << 30, 1, 1 << 40, whole=True)
    max_example = r.number("MAX_EXAMPLE_BYTES", 64 << 10, 64, 16 << 20, whole=True)
    min_examples = r.number("MIN_EXAMPLES", 10, 1, 1_000_000, whole=True)
    prompt_field = r.text("PROMPT_FIELD", "prompt")
    completion_field = r.text("COMPLETION_FIELD", "completion")
    # Mistral 7B v0.1's attention window (config: sliding_window 4096,
    # max_position_embeddings 32768); the job's max_seq_length hyperparameter wins.
    max_seq_length = r.number("MAX_SEQ_LENGTH", 4096, 16, 131_072, whole=True)
    max_seq_policy = r.text("MAX_SEQ_POLICY", "warning").lower()
    if max_seq_policy not in ("warning", "error"):
        r.problems.append(f"MAX_SEQ_POLICY={max_seq_policy!r} is invalid: one of warning, error")
    deployment = _deployment(r, default_endpoint_name(subscription, resource_group, workspace))
    plan = _plan(r)
    if r.problems:
        raise SettingsError(r.problems)
    return Settings(
        subscription_id=subscription,
        resource_group=resource_group,
        workspace=workspace,
        base_model=base_model,
        task="text" if task == "text" else "chat" if task == "chat" else "auto",
        compute=compute,
        instance_types=instance_types,
        hyperparameters=hyperparameters,
        experiment_name=experiment,
        dataset_container=container,
        work_container=work,
        ledger_table=table,
        validation_fraction=fraction,
        max_dataset_bytes=int(max_bytes),
        max_example_bytes=int(max_example),
        min_examples=int(min_examples),
        prompt_field=prompt_field,
        completion_field=completion_field,
        max_seq_length=int(max_seq_length),
        max_seq_error=max_seq_policy == "error",
        **deployment,
        **plan,
    )


def default_endpoint_name(subscription_id: str, resource_group: str, workspace: str) -> str:
    """An endpoint name unique to this workspace, stable across restarts.

    Online endpoint names are unique per Azure region across every customer, so
    a fixed default would collide with anyone else running this app there. The
    name is ``ft-`` + the workspace name (cut, made a valid name) + a hash of
    subscription/resource group/workspace: 3-32 characters, starting with a
    letter, ending with a letter or digit.
    """
    scope = f"{subscription_id}/{resource_group}/{workspace}".lower()
    digest = hashlib.blake2b(scope.encode(), digest_size=4).hexdigest()
    slug = re.sub(r"[^a-z0-9]+", "-", workspace.lower()).strip("-")[:18].strip("-")
    return f"ft-{slug}-{digest}" if slug else f"ft-{digest}"


def _deployment(r: _Reader, endpoint_default: str) -> dict[str, Any]:
    """Settings of the completion path: endpoint, deployment, smoke test, evaluation,
    events."""
    route = r.text("SMOKE_ROUTE", "/completions")
    if route not in SCORING_ROUTES:
        r.problems.append(
            f"SMOKE_ROUTE={route!r} is invalid: /completions, /v1/completions or "
            "/v1/chat/completions (OpenAI shape), or /score (the MLflow input_data shape of "
            "Azure ML catalog containers)"
        )
    prompts_raw = r.env.get("SMOKE_PROMPTS", "").strip()
    prompts: tuple[str, ...] = ()
    if prompts_raw:
        try:
            parsed = json.loads(prompts_raw)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and parsed and all(isinstance(p, str) and p for p in parsed):
            prompts = tuple(parsed)
        else:
            r.problems.append(
                "SMOKE_PROMPTS is invalid: a JSON list of non-empty prompt strings, or unset to "
                "use examples from the run's validation split"
            )
    return {
        "endpoint_name": r.matching(
            "ENDPOINT_NAME",
            ENDPOINT,
            "3-32 letters, digits and hyphens, starting with a letter (unique in the region)",
            default=endpoint_default,
        ),
        "deployment_instance_type": r.text("DEPLOYMENT_INSTANCE_TYPE", "Standard_NC24ads_A100_v4"),
        "deployment_instance_count": int(r.number("DEPLOYMENT_INSTANCE_COUNT", 1, 1, 100, True)),
        "liveness_initial_delay": int(r.number("LIVENESS_INITIAL_DELAY", 600, 0, 3600, True)),
        "readiness_initial_delay": int(r.number("READINESS_INITIAL_DELAY", 600, 0, 3600, True)),
        "request_timeout_ms": int(r.number("REQUEST_TIMEOUT_MS", 90_000, 1000, 180_000, True)),
        "keep_previous_deployment": r.flag("KEEP_PREVIOUS_DEPLOYMENT", False),
        "keep_failed_deployment": r.flag("KEEP_FAILED_DEPLOYMENT", False),
        "smoke_prompt_count": int(r.number("SMOKE_PROMPT_COUNT", 3, 1, 50, True)),
        "smoke_prompts": prompts,
        "smoke_route": route,
        "smoke_max_latency_ms": int(r.number("SMOKE_MAX_LATENCY_MS", 30_000, 1, 600_000, True)),
        "smoke_min_similarity": r.number("SMOKE_MIN_SIMILARITY", 0.0, 0.0, 1.0, False),
        "smoke_timeout_seconds": r.number("SMOKE_TIMEOUT_SECONDS", 60.0, 1.0, 230.0, False),
        "smoke_max_tokens": int(r.number("SMOKE_MAX_TOKENS", 200, 1, 4096, True)),
        "eval_examples": int(r.number("EVAL_EXAMPLES", 50, 1, 500, True)),
        "eval_min_examples": int(r.number("EVAL_MIN_EXAMPLES", 20, 1, 500, True)),
        "eval_margin": r.number("EVAL_MARGIN", 0.02, 0.0, 1.0, False),
        "eval_floor_rouge_l": r.number("EVAL_FLOOR_ROUGE_L", 0.2, 0.0, 1.0, False),
        "eval_max_error_fraction": r.number("EVAL_MAX_ERROR_FRACTION", 0.1, 0.0, 1.0, False),
        "eval_concurrency": int(r.number("EVAL_CONCURRENCY", 4, 1, 32, True)),
        "eval_step_seconds": r.number("EVAL_STEP_SECONDS", 120.0, 1.0, 480.0, False),
        "eval_max_tokens": int(r.number("EVAL_MAX_TOKENS", 256, 1, 4096, True)),
        "eval_max_tries": int(r.number("EVAL_MAX_TRIES", 3, 1, 20, True)),
        "reconcile_concurrency": int(r.number("RECONCILE_CONCURRENCY", 8, 1, 32, True)),
        "max_attempts": int(r.number("MAX_ATTEMPTS", 20, 1, 1000, True)),
        "job_poll_seconds": r.number("JOB_POLL_SECONDS", 60.0, 0.0, 3600.0, False),
        "deploy_poll_seconds": r.number("DEPLOY_POLL_SECONDS", 30.0, 0.0, 3600.0, False),
        "training_deadline_hours": r.number("TRAINING_DEADLINE_HOURS", 72.0, 0.001, 720.0, False),
        "deploy_deadline_minutes": r.number("DEPLOY_DEADLINE_MINUTES", 180.0, 0.01, 1440.0, False),
        "events_topic_endpoint": r.text("EVENTS_TOPIC_ENDPOINT", "") or None,
        "events_topic_key": r.text("EVENTS_TOPIC_KEY", "") or None,
        "events_source": r.text("EVENTS_SOURCE", "/finetune-autopilot"),
    }


FINGERPRINT = re.compile(r"^[0-9a-f]{12}$")


def _plan(r: _Reader) -> dict[str, Any]:
    """Settings of the preflight plan and of approvals (see ``shared.domain.plan``)."""
    prices_hint = (
        'a JSON object of instance type: price per hour, like {"Standard_NC24ads_A100_v4": 4.5}'
    )
    prices: dict[str, float] = {}
    for sku, price in r.json_object("INSTANCE_PRICES", prices_hint).items():
        number = isinstance(price, int | float) and not isinstance(price, bool)
        if not sku or not number or not 0 <= price < 1e6:
            r.problems.append(f"INSTANCE_PRICES[{sku!r}]={price!r} is invalid: {prices_hint}")
        else:
            prices[sku] = float(price)
    keys_hint = (
        "a JSON object of key fingerprint (the first 12 hex digits of the key's SHA-256): "
        'approver name, like {"0123456789ab": "alice"}'
    )
    approvers: dict[str, str] = {}
    for fingerprint, name in r.json_object("APPROVER_KEYS", keys_hint).items():
        if not FINGERPRINT.match(fingerprint) or not isinstance(name, str) or not name.strip():
            r.problems.append(f"APPROVER_KEYS entry {fingerprint!r} is invalid: {keys_hint}")
        else:
            approvers[fingerprint] = name.strip()
    return {
        "training_tokens_per_second": r.optional_number("TRAINING_TOKENS_PER_SECOND", 1e-3, 1e9),
        "training_overhead_minutes": r.number(
            "TRAINING_OVERHEAD_MINUTES", 30.0, 0.0, 10_080.0, False
        ),
        "instance_prices": prices,
        "price_currency": r.text("PRICE_CURRENCY", "USD"),
        "rollout_minutes": r.number("ROLLOUT_MINUTES", 45.0, 0.0, 10_080.0, False),
        "compute_instance_type": r.text("FINETUNE_COMPUTE_INSTANCE_TYPE", "") or None,
        "max_run_cost": r.optional_number("MAX_RUN_COST", 0.0, 1e9),
        "approval_deadline_hours": r.number("APPROVAL_DEADLINE_HOURS", 168.0, 0.001, 8760.0, False),
        "approver_keys": approvers,
    }


def _hyperparameters(r: _Reader) -> dict[str, str]:
    raw = r.env.get("FINETUNE_HYPERPARAMETERS", "").strip()
    if not raw:
        return dict(DEFAULT_HYPERPARAMETERS)
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        r.problems.append(
            "FINETUNE_HYPERPARAMETERS is invalid: a JSON object of strings, like "
            '{"num_train_epochs": "1", "learning_rate": "2e-05"}'
        )
        return dict(DEFAULT_HYPERPARAMETERS)
    good, problems = check_values(parsed, "FINETUNE_HYPERPARAMETERS")
    r.problems.extend(problems)
    return good
