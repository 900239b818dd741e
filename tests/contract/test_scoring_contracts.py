"""Contract: the two scoring contracts a fine-tuned model's container may serve.

A vLLM-style container serves the OpenAI routes (``/completions``,
``/v1/completions``, ``/v1/chat/completions``) and not ``/score``; the
catalog's MLflow container serves only ``/score``, with the model card's
``input_data`` request and ``[{"0": text}]`` answer. The endpoint and
deployments are made through the real SDK; scoring is plain HTTPS, as a
client does it.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from azure.ai.ml import MLClient
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.azurite import Azurite
from tests.support.azureml import EmulatorAdmin
from tests.support.finetuning import unique
from tests.support.serving import create_endpoint, deploy, set_traffic, train_model

pytestmark = pytest.mark.integration

TRAINING = [
    {"prompt": "What is the capital of France?", "completion": "Paris is the capital of France."},
    {"prompt": "What is the capital of Japan?", "completion": "Tokyo is the capital of Japan."},
]
OPENAI_ROUTES = ("/completions", "/v1/completions", "/v1/chat/completions")
OPENAI_BODIES: dict[str, dict[str, Any]] = {
    "/completions": {"prompt": "capital of Japan?"},
    "/v1/completions": {"prompt": "capital of Japan?"},
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "capital of Japan?"}]},
}


@dataclass(frozen=True)
class Served:
    base: str  # the scoring URI without /score
    key: str
    vllm: str  # a deployment left on the default contract
    mlflow: str  # a deployment a test may switch to the MLflow contract

    def post(self, route: str, body: Any, deployment: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.key}", "azureml-model-deployment": deployment}
        return requests.post(self.base + route, json=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def served(ml_client: MLClient, azurite: Azurite) -> Iterator[Served]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container: ContainerClient = service.create_container(f"contracts{uuid.uuid4().hex[:12]}")
        model = train_model(ml_client, container, TRAINING)
        endpoint = unique("ep-contract")
        vllm, mlflow = unique("vllm"), unique("mlflow")
        try:
            create_endpoint(ml_client, endpoint)
            deploy(ml_client, endpoint, vllm, str(model.id))
            deploy(ml_client, endpoint, mlflow, str(model.id))
            got = set_traffic(ml_client, endpoint, {vllm: 100, mlflow: 0})
            key = str(ml_client.online_endpoints.get_keys(endpoint).primary_key)
            base = str(got.scoring_uri).removesuffix("/score")
            yield Served(base, key, vllm, mlflow)
        finally:
            with contextlib.suppress(ResourceNotFoundError):
                ml_client.online_endpoints.begin_delete(name=endpoint).result()
            container.delete_container()


def not_served(response: requests.Response, route: str) -> None:
    assert response.status_code == 404, response.text
    assert response.json()["error"] == {
        "code": "NotFound",
        "message": f"route {route} is not served by this deployment",
    }


# --- openai (the default) -------------------------------------------------------------------


def test_by_default_the_openai_routes_answer_and_score_is_not_served(served: Served) -> None:
    answers = {r: served.post(r, OPENAI_BODIES[r], served.vllm) for r in OPENAI_ROUTES}
    score = served.post("/score", {"input_data": {"input_string": ["hi"]}}, served.vllm)

    for route, response in answers.items():
        assert response.status_code == 200, (route, response.text)
        assert "usage" in response.json()
    assert answers["/completions"].json()["choices"][0]["text"] == (
        "Tokyo is the capital of Japan."
    )
    not_served(score, "/score")


# --- mlflow -----------------------------------------------------------------------------------


def test_mlflow_answers_one_output_per_prompt_without_usage(
    served: Served, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.scoring_contract(served.mlflow, "mlflow")
    body = {
        "input_data": {
            "input_string": ["capital of Japan?", "capital of France?"],
            "parameters": {"max_new_tokens": 200, "temperature": 0},
        }
    }

    response = served.post("/score", body, served.mlflow)
    on_vllm = served.post("/completions", OPENAI_BODIES["/completions"], served.vllm)

    assert response.status_code == 200, response.text
    assert response.json() == [
        {"0": "Tokyo is the capital of Japan."},
        {"0": "Paris is the capital of France."},
    ]
    assert response.headers["azureml-model-deployment"] == served.mlflow
    assert on_vllm.status_code == 200  # the glob named one deployment only


def test_mlflow_does_not_serve_the_openai_routes(
    served: Served, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.scoring_contract(served.mlflow, "mlflow")

    for route in OPENAI_ROUTES:
        not_served(served.post(route, OPENAI_BODIES[route], served.mlflow), route)


def test_mlflow_chat_answers_one_output(served: Served, emulator_admin: EmulatorAdmin) -> None:
    emulator_admin.scoring_contract("mlflow-*", "mlflow")
    messages = [
        {"role": "system", "content": "You answer geography questions."},
        {"role": "user", "content": "what is the capital of france"},
    ]

    response = served.post("/score", {"input_data": {"input_string": messages}}, served.mlflow)

    assert response.status_code == 200, response.text
    assert response.json() == {"output": "Paris is the capital of France."}


def test_mlflow_max_new_tokens_limits_the_words(
    served: Served, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.scoring_contract(served.mlflow, "mlflow")
    body = {
        "input_data": {"input_string": ["capital of Japan?"], "parameters": {"max_new_tokens": 2}}
    }

    response = served.post("/score", body, served.mlflow)

    assert response.json() == [{"0": "Tokyo is"}]


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"prompt": "capital of Japan?"}, "'input_data'"),
        ({"input_data": {"input_string": []}}, "non-empty list"),
        ({"input_data": {"input_string": "capital of Japan?"}}, "non-empty list"),
        ({"input_data": {"input_string": ["ok", {"role": "user"}]}}, "only non-empty prompt"),
        ({"input_data": {"input_string": ["ok"], "parameters": [1]}}, "parameters"),
    ],
)
def test_mlflow_malformed_bodies_are_400(
    served: Served, emulator_admin: EmulatorAdmin, body: dict[str, Any], complaint: str
) -> None:
    emulator_admin.scoring_contract(served.mlflow, "mlflow")

    response = served.post("/score", body, served.mlflow)

    assert response.status_code == 400
    assert complaint in response.json()["error"]["message"]


def test_scoring_faults_apply_to_mlflow(served: Served, emulator_admin: EmulatorAdmin) -> None:
    body = {"input_data": {"input_string": ["capital of Japan?"]}}
    emulator_admin.scoring_contract(served.mlflow, "mlflow")
    emulator_admin.fault_scoring(served.mlflow, status=500)
    failed = served.post("/score", body, served.mlflow)
    emulator_admin.clear_faults()  # clears the contract too
    after_clear = served.post("/score", body, served.mlflow)
    emulator_admin.scoring_contract(served.mlflow, "mlflow")
    emulator_admin.fault_scoring(served.mlflow, empty=True)
    empty = served.post("/score", body, served.mlflow)

    assert failed.status_code == 500
    not_served(after_clear, "/score")
    assert empty.json() == [{"0": ""}]


def test_the_last_matching_contract_wins(served: Served, emulator_admin: EmulatorAdmin) -> None:
    emulator_admin.scoring_contract("*", "mlflow")
    emulator_admin.scoring_contract(served.vllm, "openai")

    on_vllm = served.post("/completions", OPENAI_BODIES["/completions"], served.vllm)
    on_mlflow = served.post("/completions", OPENAI_BODIES["/completions"], served.mlflow)

    assert on_vllm.status_code == 200
    not_served(on_mlflow, "/completions")
