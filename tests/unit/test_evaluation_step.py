"""The EVALUATING state through the reconciler, on fakes: who is asked what, what is
recorded on the run and in the lifecycle events, and how a step is bounded."""

from __future__ import annotations

import pytest

from shared.domain.runs import RunState
from shared.domain.smoke import Answer, ScoringTarget, SmokePrompt
from shared.pipeline.control import request_retry
from tests.support.app import text_examples
from tests.support.fakes import Harness, accept, drive, step

EP = "ep-test"


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.configure(smoke_prompt_count=1, eval_floor_rouge_l=0.5)
    return harness


def _with_champion(h: Harness) -> None:
    h.azureml.add_endpoint(EP, traffic={"old": 100})
    h.azureml.add_deployment(EP, "old", model_id="azureml:old-model:3")


def _eval_requests(h: Harness, deployment: str) -> list[SmokePrompt]:
    # The first request is the smoke test's.
    return [p for t, p in h.scorer.asked[1:] if t.deployment == deployment]


def test_both_deployments_answer_the_same_eval_set_and_the_verdict_is_recorded(
    h: Harness,
) -> None:
    _with_champion(h)
    run_id = accept(h, records=text_examples(60))
    wrong = "Nobody will meet anyone."

    def answer(target: ScoringTarget, prompt: SmokePrompt) -> Answer:
        # The champion gets every fourth example wrong; the challenger none.
        if target.deployment == "old" and hash(prompt.prompt) % 4 == 0:
            return Answer(200, wrong, 5.0)
        return Answer(200, prompt.expected or "", 5.0)

    h.scorer.answer = answer
    run = drive(h, run_id, RunState.LIVE)

    ours, theirs = _eval_requests(h, run_id), _eval_requests(h, "old")
    assert sorted(p.prompt for p in ours) == sorted(p.prompt for p in theirs)
    record = run.evaluation
    assert record["examples"] == len(ours) == len(record["results"]) > 0
    assert record["verdict"] == "promote" and record["judged_by"] == "champion"
    assert record["champion"] == {
        **record["champion"],
        "deployment": "old",
        "model": "azureml:old-model:3",
        "errors": 0,
    }
    assert record["challenger"]["rouge_l"] == 1.0 and record["challenger"]["exact_match"] == 1.0
    assert record["delta"] >= 0 and record["ci"][0] <= record["delta"] <= record["ci"][1]
    promoted = next(e for e in run.timeline if e.state is RunState.PROMOTING)
    assert promoted.detail.startswith("evaluation: challenger 1.00 vs champion")
    event = next(e for e in h.publisher.events if e.type == "FinetuneAutopilot.Run.Promoting").data[
        "evaluation"
    ]
    assert event["verdict"] == "promote"
    assert event["results"] == [
        [r["challenger"]["rouge_l"], r["champion"]["rouge_l"]] for r in record["results"]
    ]


def test_a_champion_that_errors_does_not_block_the_challenger(h: Harness) -> None:
    _with_champion(h)
    run_id = accept(h)

    def answer(target: ScoringTarget, prompt: SmokePrompt) -> Answer:
        if target.deployment == "old":
            return Answer(500, "", 3.0, error="Injected scoring fault.")
        return Answer(200, prompt.expected or "", 5.0)

    h.scorer.answer = answer
    run = drive(h, run_id, RunState.LIVE)
    champion = run.evaluation["champion"]
    assert champion["failed"].endswith("HTTP 500: Injected scoring fault.")
    assert run.evaluation["judged_by"] == "floor" and run.evaluation["verdict"] == "promote"


def test_a_challenger_below_the_floor_is_rolled_back_and_removed(h: Harness) -> None:
    run_id = accept(h)
    h.scorer.answer = lambda target, prompt: Answer(200, "something else entirely", 5.0)
    run = drive(h, run_id, RunState.EVALUATING)
    run = drive(h, run_id, RunState.ROLLED_BACK)
    assert run.evaluation["challenger"]["rouge_l"] == 0.0
    assert "below the floor 0.50" in run.last_error
    assert (EP, run_id) not in h.azureml.deployments


def test_throttled_answers_are_asked_again_and_not_counted_as_errors(h: Harness) -> None:
    run_id = accept(h)
    drive(h, run_id, RunState.EVALUATING)
    throttled: list[str] = []

    def answer(target: ScoringTarget, prompt: SmokePrompt) -> Answer:
        if len(throttled) < 2:
            throttled.append(prompt.prompt)
            return Answer(429, "", 1.0, error="Too many requests", retry_after=0.01)
        return Answer(200, prompt.expected or "", 5.0)

    h.scorer.answer = answer
    run = drive(h, run_id, RunState.LIVE)
    results = run.evaluation["results"]
    assert run.evaluation["challenger"]["errors"] == 0
    assert max(r["challenger"]["tries"] for r in results) >= 2


def test_answers_throttled_past_the_step_wait_for_a_later_tick(h: Harness) -> None:
    h.configure(eval_step_seconds=1.0)
    run_id = accept(h)
    drive(h, run_id, RunState.EVALUATING)
    h.scorer.answer = lambda target, prompt: Answer(429, "", 1.0, retry_after=30.0)

    run = step(h, run_id)

    assert run.state is RunState.EVALUATING and run.attempts == 0 and not run.last_error
    # No request goes out once the service asked for a wait past the step's end:
    # what was asked is throttled, the rest not asked yet; nothing is an error.
    pending = [r.get("challenger", {}) for r in run.evaluation["results"]]
    asked = [p for p in pending if p]
    assert asked and all(p == {**p, "status": 429, "tries": 1} for p in asked)
    assert len(h.scorer.asked) == 1 + len(asked)  # the smoke prompt, then each once
    assert run.next_check_at is not None
    assert (run.next_check_at - run.updated_at).total_seconds() >= 30.0
    h.scorer.answer = None  # the service answers again
    run = drive(h, run_id, RunState.LIVE)
    tries = {r["challenger"]["tries"] for r in run.evaluation["results"]}
    assert run.evaluation["challenger"]["errors"] == 0 and tries <= {1, 2}


def test_a_retried_rollout_is_evaluated_afresh(h: Harness) -> None:
    run_id = accept(h)
    h.scorer.answer = lambda target, prompt: Answer(200, "wrong", 5.0)
    drive(h, run_id, RunState.ROLLED_BACK)
    request_retry(h.services, run_id)
    h.scorer.answer = None
    run = drive(h, run_id, RunState.LIVE)
    assert run.evaluation["verdict"] == "promote"
    assert run.evaluation["challenger"]["deployment"] == f"{run_id}-r1"
