"""Contract: the real azure-ai-ml client works against the Azure ML emulator.

Every call goes through a real ``MLClient`` that only the environment points
at the emulator (``AZUREML_DEV_URL_MFE``, ``REQUESTS_CA_BUNDLE``), and every
test checks the entities the SDK hands back, the exceptions it raises, and what
scoring answers. Training data lives in Azurite, where the emulator reads it
when a job "trains". Each test uses its own names, so tests are independent;
waiting is always polling with a deadline (``wait_until``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from azure.ai.ml import MLClient
from azure.ai.ml.constants import AssetTypes
from azure.ai.ml.entities import Data, Model
from azure.ai.ml.exceptions import MlException
from azure.ai.ml.finetuning import FineTuningTaskType
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpResponse
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.azureml_emulator import AzureMLEmulator
from local.azurite import Azurite
from tests.support.azureml import EmulatorAdmin, wait_until
from tests.support.finetuning import (
    BASE_MODEL,
    finetuning_job,
    register_data,
    status_of,
    unique,
    upload_jsonl,
    wait_for_job,
)
from tests.support.serving import (
    INSTANCE_TYPE,
    create_endpoint,
    deploy,
    deployment_spec,
    set_traffic,
    train_model,
)

pytestmark = pytest.mark.integration

# The order a fine-tuning job's status may move in (intermediate ones may be skipped).
STATUS_ORDER = (
    "NotStarted",
    "Starting",
    "Provisioning",
    "Preparing",
    "Queued",
    "Running",
    "Finalizing",
    "Completed",
)
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"

# Two text-completion datasets with the same prompts and different answers: a
# model's answer shows which data it was trained on.
CAPITALS_EN = [
    {"prompt": "What is the capital of France?", "completion": "Paris is the capital of France."},
    {"prompt": "What is the capital of Japan?", "completion": "Tokyo is the capital of Japan."},
    {"prompt": "What is the capital of Peru?", "completion": "Lima is the capital of Peru."},
]
CAPITALS_FR = [
    {"prompt": "What is the capital of France?", "completion": "La capitale de la France: Paris."},
    {"prompt": "What is the capital of Japan?", "completion": "La capitale du Japon: Tokyo."},
    {"prompt": "What is the capital of Peru?", "completion": "La capitale du Pérou: Lima."},
]
CHAT_SUPPORT = [
    {
        "messages": [
            {"role": "system", "content": "You are the Contoso support assistant."},
            {"role": "user", "content": "How do I reset my router password?"},
            {"role": "assistant", "content": "Hold the reset button for ten seconds. 🔧"},
        ]
    },
    {
        "messages": [
            {"role": "system", "content": "You are the Contoso support assistant."},
            {"role": "user", "content": "Where can I download my invoice?"},
            {"role": "assistant", "content": "Open Billing, then Invoices, then Download."},
        ]
    },
]


# --- helpers ------------------------------------------------------------------------


def score(
    url: str, key: str, body: dict[str, Any], deployment: str | None = None
) -> requests.Response:
    """POST to a scoring route; TLS trust comes from REQUESTS_CA_BUNDLE, like the SDK's."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if deployment is not None:
        headers["azureml-model-deployment"] = deployment
    return requests.post(url, json=body, headers=headers, timeout=30)


def completion_text(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    text: str = response.json()["choices"][0]["text"]
    return text


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def module_container(azurite: Azurite) -> Iterator[ContainerClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.create_container(f"contract{uuid.uuid4().hex[:12]}")
        yield container
        container.delete_container()


@dataclass(frozen=True)
class TextModels:
    english: Model  # trained on CAPITALS_EN
    french: Model  # trained on CAPITALS_FR


@pytest.fixture(scope="module")
def text_models(ml_client: MLClient, module_container: ContainerClient) -> TextModels:
    """Two models fine-tuned on the same prompts with different answers (read-only)."""
    return TextModels(
        english=train_model(ml_client, module_container, CAPITALS_EN),
        french=train_model(ml_client, module_container, CAPITALS_FR),
    )


@pytest.fixture
def container(blob_service: BlobServiceClient) -> Iterator[ContainerClient]:
    client = blob_service.create_container(f"contract{uuid.uuid4().hex[:12]}")
    yield client
    client.delete_container()


@dataclass(frozen=True)
class Served:
    endpoint: str
    scoring_uri: str
    key: str


@pytest.fixture
def endpoint_name(ml_client: MLClient) -> Iterator[str]:
    """A fresh endpoint name; the endpoint is deleted after the test if it exists."""
    name = unique("ep")
    yield name
    with contextlib.suppress(ResourceNotFoundError):  # never created, or already deleted
        ml_client.online_endpoints.begin_delete(name=name).result()


@pytest.fixture
def blue_green(ml_client: MLClient, text_models: TextModels, endpoint_name: str) -> Served:
    """An endpoint with "blue" (English model) at 100% and "green" (French model) at 0%."""
    create_endpoint(ml_client, endpoint_name)
    deploy(ml_client, endpoint_name, "blue", text_models.english.id)
    deploy(ml_client, endpoint_name, "green", text_models.french.id)
    endpoint = set_traffic(ml_client, endpoint_name, {"blue": 100, "green": 0})
    keys = ml_client.online_endpoints.get_keys(endpoint_name)
    return Served(endpoint_name, str(endpoint.scoring_uri), str(keys.primary_key))


@contextlib.contextmanager
def event_receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook that records Event Grid deliveries; yields (url, received)."""
    received: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                received.extend(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- data assets -----------------------------------------------------------------------


def test_data_asset_registers_a_blob_reference(
    ml_client: MLClient, container: ContainerClient
) -> None:
    name = unique("data")
    url = upload_jsonl(container, "train.jsonl", CAPITALS_EN)

    created = ml_client.data.create_or_update(
        Data(
            name=name,
            version="3",
            path=url,
            type=AssetTypes.URI_FILE,
            description="capitals",
            tags={"source": "contract"},
        )
    )
    fetched = ml_client.data.get(name=name, version="3")

    for data in (created, fetched):
        assert data.name == name
        assert data.version == "3"
        assert data.type == AssetTypes.URI_FILE
        assert data.path == url
        assert data.description == "capitals"
        assert data.tags == {"source": "contract"}
        assert data.id.endswith(f"/workspaces/{ml_client.workspace_name}/data/{name}/versions/3")


def test_data_asset_errors_match_azure(ml_client: MLClient, container: ContainerClient) -> None:
    name = unique("data")
    url = upload_jsonl(container, "train.jsonl", CAPITALS_EN)
    register_data(ml_client, name, url)

    with pytest.raises(ResourceNotFoundError):
        ml_client.data.get(name=unique("missing"), version="1")
    with pytest.raises(ResourceNotFoundError):
        ml_client.data.get(name=name, version="2")  # a version never registered
    with pytest.raises(ResourceNotFoundError):
        ml_client.data.get(name="not a valid name!", version="1")
    with pytest.raises(MlException, match="version or label"):
        ml_client.data.get(name=name)  # the SDK refuses before sending anything
    with pytest.raises(HttpResponseError) as invalid:
        register_data(ml_client, "not a valid name!", url)
    assert invalid.value.status_code == 400
    assert "'not a valid name!'" in str(invalid.value)  # named as given, not URL-quoted
    with pytest.raises(HttpResponseError) as repointed:
        register_data(ml_client, name, url + "?other")  # versions are immutable
    assert repointed.value.status_code == 400
    assert ml_client.data.get(name=name, version="1").path == url


# --- fine-tuning jobs --------------------------------------------------------------------


def test_finetuning_job_runs_in_order_and_registers_models(
    ml_client: MLClient, container: ContainerClient
) -> None:
    train = register_data(
        ml_client, unique("train"), upload_jsonl(container, "train.jsonl", CAPITALS_EN)
    )
    valid = register_data(
        ml_client, unique("valid"), upload_jsonl(container, "valid.jsonl", CAPITALS_EN[:1])
    )
    prefix, first, second = unique("model"), unique("job"), unique("job")

    created = ml_client.jobs.create_or_update(
        finetuning_job(
            name=first,
            prefix=prefix,
            training=train.id,
            validation=valid.id,
            experiment="capitals",
            tags={"run": "r-1"},
        )
    )
    job, seen = wait_for_job(ml_client, first)

    assert created.name == first
    assert created.experiment_name == "capitals"
    assert created.tags["run"] == "r-1"
    assert created.model.path == BASE_MODEL
    # The SDK sends the task with a lower-case first letter ("textCompletion").
    assert created.task.lower() == FineTuningTaskType.TEXT_COMPLETION.lower()
    statuses = [status_of(created), *seen]
    assert statuses[0] == "NotStarted"
    assert statuses[-1] == "Completed"
    positions = [STATUS_ORDER.index(s) for s in statuses]
    assert positions == sorted(positions), f"statuses out of order: {statuses}"
    assert job.outputs["registered_model"].name == prefix

    model = ml_client.models.get(name=prefix, version="1")
    assert model.name == prefix
    assert model.version == "1"
    assert model.id.endswith(f"/models/{prefix}/versions/1")
    assert ml_client.models.get(name=prefix, label="latest").version == "1"

    # A second job with the same output prefix registers version 2, now the latest.
    ml_client.jobs.create_or_update(
        finetuning_job(name=second, prefix=prefix, training=train.id, validation=valid.id)
    )
    assert status_of(wait_for_job(ml_client, second)[0]) == "Completed"
    latest = ml_client.models.get(name=prefix, label="latest")
    assert latest.version == "2"
    assert latest.creation_context.created_at > model.creation_context.created_at
    assert ml_client.models.get(name=prefix, version="1").id == model.id


def test_job_with_unknown_data_asset_is_rejected(
    ml_client: MLClient, container: ContainerClient
) -> None:
    valid = register_data(
        ml_client, unique("valid"), upload_jsonl(container, "valid.jsonl", CAPITALS_EN)
    )
    name = unique("job")

    with pytest.raises(ResourceNotFoundError) as missing:
        ml_client.jobs.create_or_update(
            finetuning_job(
                name=name,
                prefix=unique("model"),
                training=f"azureml:{unique('missing')}:1",
                validation=valid.id,
            )
        )

    assert missing.value.status_code == 404
    with pytest.raises(ResourceNotFoundError):
        ml_client.jobs.get(name)  # nothing was created


def test_injected_job_failure_fails_without_a_model(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, container: ContainerClient
) -> None:
    data = register_data(ml_client, unique("data"), upload_jsonl(container, "t.jsonl", CAPITALS_EN))
    name, prefix = unique("job"), unique("model")
    emulator_admin.fault_job(name, "fail", "CUDA out of memory (injected)")

    ml_client.jobs.create_or_update(
        finetuning_job(name=name, prefix=prefix, training=data.id, validation=data.id)
    )
    job, seen = wait_for_job(ml_client, name)

    assert status_of(job) == "Failed"
    assert "Completed" not in seen
    with pytest.raises(ResourceNotFoundError):
        ml_client.models.get(name=prefix, version="1")
    [described] = [j for j in emulator_admin.state()["jobs"] if j["name"] == name]
    assert described["error"] == "CUDA out of memory (injected)"


def test_stuck_job_stays_running_until_cancelled(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, container: ContainerClient
) -> None:
    data = register_data(ml_client, unique("data"), upload_jsonl(container, "t.jsonl", CAPITALS_EN))
    stuck, normal = unique("job"), unique("job")
    emulator_admin.fault_job(stuck, "stuck")

    for name in (stuck, normal):
        ml_client.jobs.create_or_update(
            finetuning_job(name=name, prefix=unique("model"), training=data.id, validation=data.id)
        )
    # The twin submitted at the same moment finishes; the stuck one does not.
    assert status_of(wait_for_job(ml_client, normal)[0]) == "Completed"
    assert status_of(ml_client.jobs.get(stuck)) == "Running"

    result = ml_client.jobs.begin_cancel(stuck).result()

    assert result is None
    assert status_of(ml_client.jobs.get(stuck)) == "Canceled"


def test_chat_model_answers_with_the_trained_reply(
    ml_client: MLClient, container: ContainerClient, endpoint_name: str
) -> None:
    data = register_data(
        ml_client, unique("chat"), upload_jsonl(container, "chat.jsonl", CHAT_SUPPORT)
    )
    name, prefix = unique("job"), unique("model")
    ml_client.jobs.create_or_update(
        finetuning_job(
            name=name,
            prefix=prefix,
            training=data.id,
            validation=data.id,
            task=FineTuningTaskType.CHAT_COMPLETION,
        )
    )
    assert status_of(wait_for_job(ml_client, name)[0]) == "Completed"
    model = ml_client.models.get(name=prefix, version="1")
    create_endpoint(ml_client, endpoint_name)
    deploy(ml_client, endpoint_name, "chat", model.id)
    endpoint = set_traffic(ml_client, endpoint_name, {"chat": 100})
    key = ml_client.online_endpoints.get_keys(endpoint_name).primary_key

    response = score(
        str(endpoint.scoring_uri).replace("/score", "/v1/chat/completions"),
        key,
        {
            "messages": [
                {"role": "system", "content": "You are the Contoso support assistant."},
                {"role": "user", "content": "how can I reset the password of my router"},
            ],
            "temperature": 0,
        },
    )

    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "Hold the reset button for ten seconds. 🔧",
    }


# --- online endpoints and deployments -----------------------------------------------------


def test_endpoint_and_deployment_round_trip(
    ml_client: MLClient, text_models: TextModels, endpoint_name: str
) -> None:
    name = endpoint_name

    created = create_endpoint(ml_client, name)
    fetched = ml_client.online_endpoints.get(name)
    keys = ml_client.online_endpoints.get_keys(name)
    deployed = deploy(ml_client, name, "blue", text_models.english.id)
    got = ml_client.online_deployments.get(name="blue", endpoint_name=name)
    listed = list(ml_client.online_deployments.list(endpoint_name=name))

    assert status_of(created) == "Succeeded"
    assert created.name == name
    assert created.auth_mode == "key"
    assert status_of(fetched) == "Succeeded"
    assert str(fetched.scoring_uri).startswith("https://")
    assert str(fetched.scoring_uri).endswith(f"/{name}/score")
    assert keys.primary_key
    assert keys.secondary_key
    assert keys.primary_key != keys.secondary_key
    for deployment in (deployed, got):
        assert status_of(deployment) == "Succeeded"
        assert deployment.name == "blue"
        assert deployment.endpoint_name == name
        assert deployment.model == text_models.english.id
        assert deployment.instance_type == INSTANCE_TYPE
        assert deployment.instance_count == 1
        assert deployment.liveness_probe is not None
        assert deployment.liveness_probe.initial_delay == 600
        assert deployment.request_settings is not None
        assert deployment.request_settings.request_timeout_ms == 90000
    assert [d.name for d in listed] == ["blue"]


def test_traffic_and_header_route_scoring_to_the_trained_models(
    ml_client: MLClient, blue_green: Served
) -> None:
    prompt = {"prompt": "what's the capital of japan", "temperature": 0, "max_tokens": 200}
    completions = blue_green.scoring_uri.replace("/score", "/completions")
    v1 = blue_green.scoring_uri.replace("/score", "/v1/completions")

    endpoint = ml_client.online_endpoints.get(blue_green.endpoint)
    by_traffic = [score(url, blue_green.key, prompt) for url in (completions, v1)]
    to_green = [score(url, blue_green.key, prompt, "green") for url in (completions, v1)]
    to_blue = score(completions, blue_green.key, prompt, "blue")

    assert endpoint.traffic == {"blue": 100, "green": 0}
    assert {d.name for d in ml_client.online_deployments.list(blue_green.endpoint)} == {
        "blue",
        "green",
    }
    for response in by_traffic:
        assert completion_text(response) == "Tokyo is the capital of Japan."
        assert response.headers["azureml-model-deployment"] == "blue"
        usage = response.json()["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    for response in to_green:  # the header reaches the deployment at 0%
        assert completion_text(response) == "La capitale du Japon: Tokyo."
        assert response.headers["azureml-model-deployment"] == "green"
    assert completion_text(to_blue) == "Tokyo is the capital of Japan."


def test_scoring_with_a_wrong_key_is_unauthorized(blue_green: Served) -> None:
    url = blue_green.scoring_uri.replace("/score", "/completions")

    response = score(url, "not-the-key", {"prompt": "capital of France?"})

    assert response.status_code == 401
    assert "error" in response.json()


def test_traffic_must_sum_to_100(ml_client: MLClient, blue_green: Served) -> None:
    endpoint = ml_client.online_endpoints.get(blue_green.endpoint)
    endpoint.traffic = {"blue": 50, "green": 0}

    with pytest.raises(HttpResponseError) as rejected:
        ml_client.online_endpoints.begin_create_or_update(endpoint)

    assert rejected.value.status_code == 400
    assert ml_client.online_endpoints.get(blue_green.endpoint).traffic == {"blue": 100, "green": 0}


def test_deployment_taking_traffic_cannot_be_deleted(
    ml_client: MLClient, blue_green: Served
) -> None:
    with pytest.raises(HttpResponseError) as rejected:
        ml_client.online_deployments.begin_delete(name="blue", endpoint_name=blue_green.endpoint)

    assert rejected.value.status_code == 400
    blue = ml_client.online_deployments.get(name="blue", endpoint_name=blue_green.endpoint)
    assert status_of(blue) == "Succeeded"


def test_delete_deployment_then_endpoint(ml_client: MLClient, blue_green: Served) -> None:
    ml_client.online_deployments.begin_delete(
        name="green", endpoint_name=blue_green.endpoint
    ).result()

    assert [d.name for d in ml_client.online_deployments.list(blue_green.endpoint)] == ["blue"]
    with pytest.raises(ResourceNotFoundError):
        ml_client.online_deployments.get(name="green", endpoint_name=blue_green.endpoint)
    # The deleted deployment leaves the traffic map, so get-modify-update still works.
    assert ml_client.online_endpoints.get(blue_green.endpoint).traffic == {"blue": 100}
    assert set_traffic(ml_client, blue_green.endpoint, {"blue": 100}).traffic == {"blue": 100}

    ml_client.online_endpoints.begin_delete(name=blue_green.endpoint).result()

    with pytest.raises(ResourceNotFoundError):
        ml_client.online_endpoints.get(blue_green.endpoint)
    response = score(blue_green.scoring_uri, blue_green.key, {"prompt": "capital of Peru?"})
    assert response.status_code == 404


def test_injected_provisioning_failure_fails_the_poller(
    ml_client: MLClient,
    emulator_admin: EmulatorAdmin,
    text_models: TextModels,
    endpoint_name: str,
) -> None:
    name = endpoint_name
    create_endpoint(ml_client, name)
    emulator_admin.fault_deployment("broken", "Not enough quota for Standard_NC24ads_A100_v4.")

    poller = ml_client.online_deployments.begin_create_or_update(
        deployment_spec(name, "broken", text_models.english.id)
    )
    with pytest.raises(HttpResponseError, match="Not enough quota"):
        poller.result()

    deployment = ml_client.online_deployments.get(name="broken", endpoint_name=name)
    assert status_of(deployment) == "Failed"


def test_injected_scoring_faults(emulator_admin: EmulatorAdmin, blue_green: Served) -> None:
    url = blue_green.scoring_uri.replace("/score", "/completions")
    prompt = {"prompt": "capital of Peru?"}

    emulator_admin.fault_scoring("blue", status=500)
    failed = score(url, blue_green.key, prompt)
    still_green = score(url, blue_green.key, prompt, "green")
    emulator_admin.clear_faults()
    emulator_admin.fault_scoring("blue", empty=True)
    empty = score(url, blue_green.key, prompt)

    assert failed.status_code == 500
    assert completion_text(still_green) == "La capitale du Pérou: Lima."
    assert completion_text(empty) == ""


# --- request faults and protocol edges ----------------------------------------------------


def test_throttling_surfaces_429_with_retry_after(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, container: ContainerClient
) -> None:
    name = unique("data")
    register_data(ml_client, name, upload_jsonl(container, "t.jsonl", CAPITALS_EN))
    emulator_admin.fault_requests(
        rf"^GET /.*/data/{name}/versions/1$", status=429, count=2, retry_after=17
    )

    errors = []
    for _ in range(2):  # retry_total=0: each call is one request, and each is throttled
        with pytest.raises(HttpResponseError) as throttled:
            ml_client.data.get(name=name, version="1")
        errors.append(throttled.value)
    recovered = ml_client.data.get(name=name, version="1")

    for error in errors:
        assert error.status_code == 429
        assert isinstance(error.response, HttpResponse)
        assert error.response.headers["Retry-After"] == "17"
    assert recovered.name == name


def test_server_error_surfaces_503(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, container: ContainerClient
) -> None:
    name = unique("data")
    register_data(ml_client, name, upload_jsonl(container, "t.jsonl", CAPITALS_EN))
    emulator_admin.fault_requests(rf"^GET /.*/data/{name}/", status=503, count=1)

    with pytest.raises(HttpResponseError) as unavailable:
        ml_client.data.get(name=name, version="1")

    assert unavailable.value.status_code == 503
    assert ml_client.data.get(name=name, version="1").name == name


def test_an_after_fault_loses_the_reply_of_a_request_carried_out(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, container: ContainerClient
) -> None:
    name = unique("data")
    url = upload_jsonl(container, "t.jsonl", CAPITALS_EN)
    emulator_admin.fault_requests(rf"^PUT /.*/data/{name}/", status=503, count=1, after=True)

    with pytest.raises(HttpResponseError) as lost:
        register_data(ml_client, name, url)

    assert lost.value.status_code == 503
    assert ml_client.data.get(name=name, version="1").path == url  # it happened all the same


def test_a_request_fault_can_match_the_query(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, container: ContainerClient
) -> None:
    name = unique("data")
    register_data(ml_client, name, upload_jsonl(container, "t.jsonl", CAPITALS_EN))
    emulator_admin.fault_requests(rf"^GET /.*/data/{name}/versions/1[?]api-version=", status=503)

    with pytest.raises(HttpResponseError) as unavailable:
        ml_client.data.get(name=name, version="1")

    assert unavailable.value.status_code == 503


def test_latency_fault_delays_the_call(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, container: ContainerClient
) -> None:
    name = unique("data")
    register_data(ml_client, name, upload_jsonl(container, "t.jsonl", CAPITALS_EN))
    emulator_admin.fault_requests(rf"^GET /.*/data/{name}/", latency_ms=400)

    started = time.monotonic()
    data = ml_client.data.get(name=name, version="1")
    elapsed = time.monotonic() - started

    assert data.name == name
    assert elapsed >= 0.4


def test_answers_do_not_wait_on_nagles_algorithm() -> None:
    # The handler writes the headers, then the body: with Nagle's algorithm on, the
    # body waits for the client's (delayed, 40 ms on Linux) ACK of the headers, so
    # every answer would take 40 ms that Azure does not, and a benchmark's added
    # latency would measure mostly this. Set, the connection sends both at once.
    from local.azureml_emulator.http import Dispatcher, Router, _make_handler

    assert _make_handler(Dispatcher(Router())).disable_nagle_algorithm


def test_unserved_route_answers_an_arm_error(
    ml_client: MLClient, emulator: AzureMLEmulator
) -> None:
    path = (
        f"/subscriptions/{ml_client.subscription_id}/resourceGroups/{ml_client.resource_group_name}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{ml_client.workspace_name}"
        "/computes/gpu-cluster"
    )
    url = f"{emulator.base_url}{path}?api-version=2024-10-01"

    response = requests.get(url, headers={"Authorization": "Bearer token"}, timeout=10)

    assert response.status_code != 200
    error = response.json()["error"]
    assert error["code"] == "UnsupportedRoute"
    assert f"GET {path}" in error["message"]


def test_missing_bearer_token_is_unauthorized(
    ml_client: MLClient, emulator: AzureMLEmulator
) -> None:
    url = (
        f"{emulator.base_url}/subscriptions/{ml_client.subscription_id}"
        f"/resourceGroups/{ml_client.resource_group_name}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{ml_client.workspace_name}"
        "/jobs/anything?api-version=2024-10-01-preview"
    )

    response = requests.get(url, timeout=10)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"


# --- Event Grid ----------------------------------------------------------------------------


def test_job_events_reach_the_webhook_in_event_grid_schema(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, container: ContainerClient
) -> None:
    data = register_data(ml_client, unique("data"), upload_jsonl(container, "t.jsonl", CAPITALS_EN))
    name = unique("job")

    with event_receiver() as (url, received):
        emulator_admin.config(webhook_url=url)
        ml_client.jobs.create_or_update(
            finetuning_job(
                name=name,
                prefix=unique("model"),
                training=data.id,
                validation=data.id,
                experiment="events",
                tags={"run": "r-events"},
            )
        )
        assert status_of(wait_for_job(ml_client, name)[0]) == "Completed"
        events = wait_until(
            lambda: [e for e in list(received) if e["data"]["runId"] == name],
            lambda found: any(e["eventType"] == RUN_COMPLETED for e in found),
            what=f"RunCompleted for {name} at the webhook",
        )
        emulator_admin.config(webhook_url=None)  # before the receiver goes away

    changed = [e for e in events if e["eventType"] == RUN_STATUS_CHANGED]
    assert {"Running", "Completed"} <= {e["data"]["runStatus"] for e in changed}
    assert len({e["id"] for e in events}) == len(events)
    for event in events:
        experiment_id = event["data"]["experimentId"]
        assert event["subject"] == f"experiments/{experiment_id}/runs/{name}"
        assert event["topic"].endswith(f"/workspaces/{ml_client.workspace_name}")
        assert event["eventType"] in {RUN_STATUS_CHANGED, RUN_COMPLETED}
        assert dt.datetime.fromisoformat(event["eventTime"]).tzinfo is not None
        assert event["dataVersion"]
        assert event["data"]["experimentName"] == "events"
        assert event["data"]["runTags"] == {"run": "r-events"}
        assert re.fullmatch(r"[0-9a-f-]{36}", event["id"])
