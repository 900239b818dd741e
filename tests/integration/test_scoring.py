"""Smoke-testing a deployment through ``HttpScorer`` against the emulator.

A model is fine-tuned on the emulator (its stand-in answers with the trained
completions) and deployed at 0% traffic next to one that takes the traffic,
all through the real ``azure-ai-ml`` client. The scorer reaches the new
deployment alone through the ``azureml-model-deployment`` header, over HTTPS
trusted through ``REQUESTS_CA_BUNDLE``, and the smoke verdicts follow from what
the emulator answers, including the faults it injects.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from azure.ai.ml import MLClient
from azure.ai.ml.finetuning import FineTuningTaskType
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.azurite import Azurite
from shared.adapters.scoring import HttpScorer
from shared.domain.smoke import (
    CHAT_ROUTE,
    ScoringTarget,
    SmokeCriteria,
    SmokePrompt,
    conclude,
    judge,
    prompts_from_lines,
)
from tests.support.azureml import EmulatorAdmin
from tests.support.finetuning import unique
from tests.support.serving import create_endpoint, deploy, set_traffic, train_model

pytestmark = pytest.mark.integration

# What the endpoint served before: answers in French.
SERVING = [
    {"prompt": "How do I reset my router password?", "completion": "Appuyez sur reset."},
    {"prompt": "Where can I download my invoice?", "completion": "Dans Facturation."},
]
# The new fine-tune: same questions, English answers (also its validation split).
TUNED = [
    {
        "prompt": "How do I reset my router password?",
        "completion": "Hold the reset button for ten seconds.",
    },
    {
        "prompt": "Where can I download my invoice?",
        "completion": "Open Billing, then Invoices, then Download.",
    },
    {
        "prompt": "How do I change my delivery address?",
        "completion": "Go to Account, then Addresses, and edit the default one.",
    },
]
TUNED_CHAT = [
    {
        "messages": [
            {"role": "system", "content": "You are the Contoso support assistant."},
            {"role": "user", "content": record["prompt"]},
            {"role": "assistant", "content": record["completion"]},
        ]
    }
    for record in TUNED
]
STRICT = SmokeCriteria(min_similarity=1.0)


def jsonl_lines(records: list[dict[str, Any]]) -> list[bytes]:
    """The lines of a JSONL file as a blob download would give them (CRLF ends)."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in records).encode()
    return data.splitlines(keepends=True)


@dataclass(frozen=True)
class Served:
    endpoint: str
    scoring_uri: str
    key: str
    serving: str  # the deployment taking 100% of the traffic (SERVING)
    tuned: str  # the new deployment at 0% (TUNED)
    chat: str  # a chat deployment at 0% (TUNED_CHAT)

    def target(self, deployment: str, **changes: Any) -> ScoringTarget:
        return replace(ScoringTarget(self.scoring_uri, self.key, deployment), **changes)


@pytest.fixture(scope="module")
def served(ml_client: MLClient, azurite: Azurite) -> Iterator[Served]:
    """One endpoint: the old model at 100%, the new text and chat models at 0%."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container: ContainerClient = service.create_container(f"scoring{uuid.uuid4().hex[:12]}")
        old = train_model(ml_client, container, SERVING)
        new = train_model(ml_client, container, TUNED)
        chat = train_model(
            ml_client, container, TUNED_CHAT, task=FineTuningTaskType.CHAT_COMPLETION
        )
        endpoint = unique("ep-smoke")
        names = Served(endpoint, "", "", unique("old"), unique("new"), unique("chat"))
        create_endpoint(ml_client, endpoint)
        for name, model in ((names.serving, old), (names.tuned, new), (names.chat, chat)):
            deploy(ml_client, endpoint, name, model.id)
        got = set_traffic(ml_client, endpoint, {names.serving: 100, names.tuned: 0, names.chat: 0})
        key = ml_client.online_endpoints.get_keys(endpoint).primary_key
        try:
            yield replace(names, scoring_uri=str(got.scoring_uri), key=str(key))
        finally:
            with contextlib.suppress(ResourceNotFoundError):
                ml_client.online_endpoints.begin_delete(name=endpoint).result()
            container.delete_container()


@pytest.fixture
def scorer() -> Iterator[HttpScorer]:
    instance = HttpScorer()
    yield instance
    instance.close()


# --- a healthy deployment ---------------------------------------------------------------


@pytest.mark.parametrize("route", ["/completions", "/v1/completions"])
def test_the_new_deployment_answers_at_zero_traffic(
    ml_client: MLClient, served: Served, scorer: HttpScorer, route: str
) -> None:
    prompt = SmokePrompt("how do I reset the password of my router", TUNED[0]["completion"])

    answer = scorer.score(served.target(served.tuned, route=route), prompt)
    result = judge(prompt, answer, STRICT)

    assert answer.status == 200, answer.error
    assert answer.text == "Hold the reset button for ten seconds."
    assert answer.error == ""
    assert answer.latency_ms > 0
    assert set(answer.usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert result.passed, result.reason
    assert result.similarity == 1.0
    # The header reached the new deployment; the traffic still goes to the old one.
    assert ml_client.online_endpoints.get(served.endpoint).traffic[served.tuned] == 0
    old = scorer.score(served.target(served.serving, route=route), prompt)
    assert old.text == "Appuyez sur reset."


def test_prompts_from_the_validation_split_pass(served: Served, scorer: HttpScorer) -> None:
    prompts = prompts_from_lines([b"not json\r\n", *jsonl_lines(TUNED)], count=3)
    target = served.target(served.tuned)

    outcome = conclude([judge(p, scorer.score(target, p), STRICT) for p in prompts])

    assert outcome.passed, outcome.reason
    assert outcome.reason == "all 3 prompts passed"
    assert [r.answer for r in outcome.results] == [r["completion"] for r in TUNED]
    assert all(r.similarity == 1.0 for r in outcome.results)


def test_a_chat_deployment_answers_the_chat_route(served: Served, scorer: HttpScorer) -> None:
    prompts = prompts_from_lines(jsonl_lines(TUNED_CHAT), count=3)
    target = served.target(served.chat, route=CHAT_ROUTE)

    outcome = conclude([judge(p, scorer.score(target, p), STRICT) for p in prompts])

    assert prompts[1].messages[0] == {
        "role": "system",
        "content": "You are the Contoso support assistant.",
    }
    assert outcome.passed, outcome.reason
    assert [r.answer for r in outcome.results] == [r["completion"] for r in TUNED]


def test_the_old_model_fails_a_strict_similarity_check(served: Served, scorer: HttpScorer) -> None:
    # The smoke test tells models apart: the deployment serving now was not trained on TUNED.
    prompt = prompts_from_lines(jsonl_lines(TUNED), count=1)[0]

    result = judge(prompt, scorer.score(served.target(served.serving), prompt), STRICT)

    assert not result.passed
    assert result.answer == "Appuyez sur reset."
    assert result.reason == "similarity 0.20 to the expected answer below 1.00"


# --- failures -------------------------------------------------------------------------


def test_a_scoring_fault_fails_with_the_status(
    served: Served, scorer: HttpScorer, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_scoring(served.tuned, status=500)
    prompt = SmokePrompt("Where can I download my invoice?", TUNED[1]["completion"])

    answer = scorer.score(served.target(served.tuned), prompt)
    result = judge(prompt, answer, SmokeCriteria())

    assert answer.status == 500
    assert answer.text == ""
    assert "Injected scoring fault." in answer.error
    assert not result.passed
    assert result.reason.startswith("HTTP 500: ")
    assert "Injected scoring fault." in result.reason
    assert conclude([result]).reason.startswith("prompt 1 of 1: HTTP 500: ")


def test_an_empty_answer_fails(
    served: Served, scorer: HttpScorer, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_scoring(served.tuned, empty=True)
    prompt = SmokePrompt("Where can I download my invoice?", TUNED[1]["completion"])

    answer = scorer.score(served.target(served.tuned), prompt)
    result = judge(prompt, answer, SmokeCriteria())

    assert answer.status == 200
    assert answer.text == ""
    assert not result.passed
    assert "empty" in result.reason


def test_a_wrong_key_is_unauthorized(served: Served, scorer: HttpScorer) -> None:
    target = replace(served.target(served.tuned), key="not-the-key")

    answer = scorer.score(target, SmokePrompt("Where can I download my invoice?"))

    assert answer.status == 401
    assert judge(SmokePrompt("q"), answer, SmokeCriteria()).reason.startswith("HTTP 401")


def test_a_missing_deployment_is_not_found(served: Served, scorer: HttpScorer) -> None:
    answer = scorer.score(served.target(unique("gone")), SmokePrompt("hello"))

    assert answer.status == 404
    assert "does not exist" in answer.error


def test_a_slow_deployment_fails_on_latency(
    served: Served, scorer: HttpScorer, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_requests(
        rf"^POST /online/{served.endpoint}/", latency_ms=300, kinds=["scoring"]
    )
    prompt = SmokePrompt("Where can I download my invoice?", TUNED[1]["completion"])

    answer = scorer.score(served.target(served.tuned), prompt)
    result = judge(prompt, answer, SmokeCriteria(max_latency_ms=100))

    assert answer.status == 200
    assert answer.latency_ms >= 300
    assert not result.passed
    assert result.reason.startswith("latency ")
    assert result.reason.endswith("over the 100 ms limit")
