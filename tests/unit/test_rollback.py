"""Rolling back a LIVE run, against in-memory fakes: what a LIVE run records of what it
replaced, when a rollback is refused (409), the rollback run's way back to LIVE with
the previous model (reusing the kept deployment, or deploying the model anew), that
asking twice makes one rollback, and that an adopted deployment is never removed."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from shared.domain.approval import Approver
from shared.domain.azureml import DeploymentView, EndpointView
from shared.domain.decide import Action, Observed, Policy, decide
from shared.domain.errors import ConcurrencyConflict, NotAllowedNow, RetryableError, RunNotFound
from shared.domain.runs import ROLLBACK, DatasetRef, Run, RunState
from shared.domain.smoke import Answer, SmokeOutcome
from shared.pipeline.control import request_cancel, request_retry, request_rollback
from tests.support.app import text_examples
from tests.support.fakes import START, Harness, accept, drive

EP = "ep-test"
ALICE = Approver("alice", "0123456789ab", "Alice A.")


@pytest.fixture
def h() -> Harness:
    return Harness()


def _live(h: Harness, name: str, topic: str) -> str:
    run_id = accept(h, name, text_examples(20, topic))
    drive(h, run_id, RunState.LIVE)
    return run_id


def _a_then_b(h: Harness) -> tuple[str, str]:
    """Run A goes LIVE, then run B (another dataset) replaces it."""
    return _live(h, "a.jsonl", "meeting"), _live(h, "b.jsonl", "lunch")


def _model_of(h: Harness, run_id: str) -> str:
    return h.ledger.run(run_id).model_id


# -- what a LIVE run records -----------------------------------------------------------------


def test_a_run_going_live_records_the_deployment_and_model_it_replaced(h: Harness) -> None:
    a, b = _a_then_b(h)
    assert h.ledger.run(a).replaced == {}  # the first model on the endpoint
    assert h.ledger.run(b).replaced == {"deployment": a, "model": _model_of(h, a), "traffic": 100}
    events = [e for e in h.publisher.events if e.subject == b]
    assert events[-1].data["replaced"]["deployment"] == a


# -- refused ------------------------------------------------------------------------------------


def test_the_first_model_on_an_endpoint_has_nothing_to_roll_back_to(h: Harness) -> None:
    a = _live(h, "a.jsonl", "meeting")
    before = h.ledger.version(a)
    with pytest.raises(NotAllowedNow, match="first model on this endpoint: nothing to roll back"):
        request_rollback(h.services, a, ALICE)
    assert h.ledger.version(a) == before and len(h.ledger.runs) == 1


def test_only_a_live_run_can_be_rolled_back(h: Harness) -> None:
    h.azureml.job_statuses = ("Running",)
    run_id = accept(h)
    with pytest.raises(NotAllowedNow, match="is TRAINING: only a LIVE run can be rolled back"):
        request_rollback(h.services, run_id, ALICE)
    with pytest.raises(RunNotFound):
        request_rollback(h.services, "ft-nope", ALICE)


def test_a_live_run_no_longer_serving_everything_cannot_be_rolled_back(h: Harness) -> None:
    a, b = _a_then_b(h)
    h.azureml.add_deployment(EP, "manual")
    h.azureml.endpoints[EP].traffic = {b: 50, "manual": 50}
    with pytest.raises(NotAllowedNow, match="does not serve all of endpoint ep-test"):
        request_rollback(h.services, b, ALICE)
    # The one it replaced does not serve at all: it has nothing of its own to undo either.
    with pytest.raises(NotAllowedNow, match="first model"):
        request_rollback(h.services, a, ALICE)
    assert h.ledger.run(b).rolled_back_by == {}


# -- the rollback run --------------------------------------------------------------------------


def test_with_the_previous_deployment_kept_the_rollback_reuses_it(h: Harness) -> None:
    h.configure(keep_previous_deployment=True)
    a, b = _a_then_b(h)
    assert h.azureml.endpoints[EP].traffic == {a: 0, b: 100}

    asked = request_rollback(h.services, b, ALICE)

    assert asked.run_id == f"{b}-rb1" and asked.kind == ROLLBACK
    assert asked.deployment == a and asked.adopted_deployment == a
    assert asked.model_id == _model_of(h, a)
    assert asked.config["rollback_of"] == b and asked.config["restores"] == a
    assert asked.dataset == h.ledger.run(a).dataset  # smoke prompts from A's data
    run = drive(h, asked.run_id, RunState.LIVE)
    assert [e.state for e in run.timeline] == [
        RunState.RECEIVED,
        RunState.DEPLOYING,
        RunState.SMOKE_TESTING,
        RunState.PROMOTING,
        RunState.LIVE,
    ]
    assert run.timeline[0].detail.startswith(f"rollback of run {b} asked by alice (says Alice A.)")
    assert h.azureml.endpoints[EP].traffic == {a: 100, b: 0}  # B kept too, at 0%
    assert (EP, asked.run_id) not in h.azureml.deployments  # nothing new deployed
    assert run.replaced["deployment"] == b
    old = h.ledger.run(b)
    assert old.state is RunState.LIVE  # a record of what it was
    assert old.rolled_back_by == {
        "run_id": asked.run_id,
        "by": "alice",
        "at": START.isoformat(),
        "key": "0123456789ab",
        "claimed_by": "Alice A.",
    }
    assert h.publisher.types_for(asked.run_id) == [
        "Received",
        "Deploying",
        "SmokeTesting",
        "Promoting",
        "Live",
    ]
    rollback_data = h.publisher.events[-1].data["rollback"]
    assert rollback_data == {"rollback_of": b, "restores": a, "removes": b}


def test_without_the_previous_deployment_the_model_is_deployed_anew(h: Harness) -> None:
    a, b = _a_then_b(h)
    assert (EP, a) not in h.azureml.deployments  # retired when B went LIVE

    asked = request_rollback(h.services, b, ALICE)

    assert asked.deployment == asked.run_id and asked.adopted_deployment == ""
    run = drive(h, asked.run_id, RunState.LIVE)
    assert h.azureml.deployments[(EP, run.run_id)].spec.model_id == _model_of(h, a)
    assert h.azureml.endpoints[EP].traffic == {run.run_id: 100}
    assert (EP, b) in h.azureml.deleted_deployments  # the bad one retired
    assert h.ledger.locks[EP] == ""


def test_asking_again_returns_the_same_rollback_and_changes_nothing(h: Harness) -> None:
    h.azureml.deployment_states = ("Creating", "Creating", "Succeeded")
    _, b = _a_then_b(h)
    first = request_rollback(h.services, b, ALICE)
    assert first.active
    version = h.ledger.version(b)

    again = request_rollback(h.services, b, Approver("bob"))

    assert again.run_id == first.run_id and h.ledger.version(b) == version
    assert h.ledger.run(b).rolled_back_by["by"] == "alice"
    assert len(h.ledger.runs) == 3
    done = drive(h, first.run_id, RunState.LIVE)
    # Once it is LIVE, asking again still answers that rollback.
    assert request_rollback(h.services, b, ALICE) == done and len(h.ledger.runs) == 3


def test_a_rollback_asked_concurrently_is_made_once(h: Harness) -> None:
    _, b = _a_then_b(h)
    h.ledger.fail("replace", ConcurrencyConflict("raced"))
    asked = request_rollback(h.services, b, ALICE)
    assert asked.run_id == f"{b}-rb1" and len(h.ledger.runs) == 3


def test_a_request_that_stopped_before_creating_its_run_is_completed(h: Harness) -> None:
    _, b = _a_then_b(h)
    h.ledger.put(h.ledger.run(b).updated(START, rolled_back_by={"run_id": f"{b}-rb1"}))
    asked = request_rollback(h.services, b, ALICE)
    assert asked.run_id == f"{b}-rb1" and asked.state is not RunState.RECEIVED


def test_a_failed_rollback_can_be_asked_again_under_the_next_id(h: Harness) -> None:
    h.configure(keep_previous_deployment=True)
    a, b = _a_then_b(h)
    h.scorer.answer = lambda target, prompt: Answer(500, "", 5.0, error="boom")
    first = request_rollback(h.services, b, ALICE)
    failed = drive(h, first.run_id, RunState.ROLLED_BACK)
    assert "HTTP 500" in failed.last_error
    h.scorer.answer = None

    second = request_rollback(h.services, b, ALICE)

    assert second.run_id == f"{b}-rb2" and second.adopted_deployment == a
    drive(h, second.run_id, RunState.LIVE)
    assert h.azureml.endpoints[EP].traffic[a] == 100


def test_a_rollback_run_can_itself_be_rolled_back(h: Harness) -> None:
    _, b = _a_then_b(h)
    first = drive(h, request_rollback(h.services, b, ALICE).run_id, RunState.LIVE)
    assert first.replaced["model"] == _model_of(h, b)

    again = request_rollback(h.services, first.run_id, ALICE)

    assert again.run_id == f"{b}-rb2" and len(again.run_id) <= 28
    assert again.model_id == _model_of(h, b) and again.config["restores"] == b
    drive(h, again.run_id, RunState.LIVE)
    assert h.azureml.endpoints[EP].traffic == {again.run_id: 100}


def test_a_rollback_overtaken_by_another_rollout_ends_canceled(h: Harness) -> None:
    _, b = _a_then_b(h)
    c = accept(h, "c.jsonl", text_examples(20, "tea"))
    drive(h, c, RunState.SMOKE_TESTING)  # C holds the endpoint's rollout lock
    asked = request_rollback(h.services, b, ALICE)
    assert asked.state is RunState.DEPLOYING and asked.activity.startswith("waiting for run")
    drive(h, c, RunState.LIVE)

    run = drive(h, asked.run_id, RunState.CANCELED)

    assert f"{b} no longer serves ep-test (serving: {c} 100%)" in run.timeline[-1].detail
    assert h.azureml.endpoints[EP].traffic == {c: 100}


# -- an adopted deployment is never removed ---------------------------------------------------


def test_a_failed_smoke_test_leaves_the_adopted_deployment_in_place(h: Harness) -> None:
    h.configure(keep_previous_deployment=True)
    a, b = _a_then_b(h)
    h.scorer.answer = lambda target, prompt: Answer(200, "", 5.0)
    asked = request_rollback(h.services, b, ALICE)
    run = drive(h, asked.run_id, RunState.ROLLED_BACK)
    assert (EP, a) in h.azureml.deployments and (EP, a) not in h.azureml.deleted_deployments
    assert h.azureml.endpoints[EP].traffic == {a: 0, b: 100}
    # A retry deploys the model anew under a name of its own; A's stays untouched.
    h.scorer.answer = None
    retried = request_retry(h.services, run.run_id)
    assert retried.deployment == f"{run.run_id}-r1" and retried.owns_deployment
    drive(h, run.run_id, RunState.LIVE)
    assert h.azureml.endpoints[EP].traffic[f"{run.run_id}-r1"] == 100
    assert (EP, a) in h.azureml.deployments


def test_cancelling_a_rollback_leaves_the_adopted_deployment_in_place(h: Harness) -> None:
    h.configure(keep_previous_deployment=True)
    a, b = _a_then_b(h)
    asked = request_rollback(h.services, b, ALICE)
    assert asked.state is RunState.SMOKE_TESTING  # reusing A's: up already
    run = request_cancel(h.services, asked.run_id)
    assert run.state is RunState.CANCELED and run.timeline[-1].detail == "canceled on request"
    assert (EP, a) in h.azureml.deployments


def test_an_adopted_deployment_that_vanished_is_deployed_anew(h: Harness) -> None:
    h.configure(keep_previous_deployment=True)
    a, b = _a_then_b(h)
    h.ledger.fail("acquire_endpoint", RetryableError("table busy"))  # its first look fails
    asked = request_rollback(h.services, b, ALICE)
    assert asked.deployment == a and asked.state is RunState.DEPLOYING
    del h.azureml.deployments[(EP, a)]  # removed by hand before the rollback looked

    run = drive(h, asked.run_id, RunState.LIVE)

    assert run.deployment == run.run_id and run.adopted_deployment == a
    assert h.azureml.deployments[(EP, run.run_id)].spec.model_id == _model_of(h, a)
    assert h.azureml.endpoints[EP].traffic[run.run_id] == 100


def _adopting(state: RunState) -> Run:
    dataset = DatasetRef("datasets", "a.jsonl", "https://acct/datasets/a.jsonl")
    run = Run.new(
        "ft-b-rb1",
        dataset,
        START,
        config={"kind": ROLLBACK, "rollback_of": "ft-b", "removes": "ft-b"},
        endpoint=EP,
        deployment="ft-a",
        adopted_deployment="ft-a",
        model_id="azureml:a:1",
    )
    return dataclasses.replace(run, state=state)


ADOPTED = DeploymentView("ft-a", EP, "Succeeded", "azureml:a:1")
SERVING_B = EndpointView(EP, "Succeeded", "https://x/score", {"ft-b": 100, "ft-a": 0})


@pytest.mark.parametrize(
    ("run", "observed", "later"),
    [
        (  # smoke failed
            _adopting(RunState.SMOKE_TESTING),
            Observed(
                endpoint=SERVING_B,
                deployment=ADOPTED,
                smoke=SmokeOutcome(passed=False, reason="HTTP 500", results=()),
            ),
            0,
        ),
        (  # cancelled while smoke testing
            dataclasses.replace(_adopting(RunState.SMOKE_TESTING), cancel_requested=True),
            Observed(endpoint=SERVING_B, deployment=ADOPTED),
            0,
        ),
        (  # the adopted deployment failed
            _adopting(RunState.DEPLOYING),
            Observed(
                holder="ft-b-rb1",
                endpoint=SERVING_B,
                deployment=dataclasses.replace(ADOPTED, provisioning_state="Failed"),
            ),
            0,
        ),
        (  # past the deploy deadline while smoke testing
            _adopting(RunState.SMOKE_TESTING),
            Observed(endpoint=SERVING_B, deployment=ADOPTED),
            10 * 3600,
        ),
        (  # overtaken: B serves nothing any more
            _adopting(RunState.DEPLOYING),
            Observed(
                holder="ft-b-rb1",
                endpoint=dataclasses.replace(SERVING_B, traffic={"ft-c": 100, "ft-a": 0}),
                deployment=ADOPTED,
            ),
            0,
        ),
    ],
)
def test_decide_never_removes_an_adopted_deployment(
    run: Run, observed: Observed, later: int
) -> None:
    decision = decide(run, observed, Policy(), START + dt.timedelta(seconds=later))
    assert decision.state in (
        RunState.ROLLED_BACK,
        RunState.CANCELED,
        RunState.DEPLOY_FAILED,
    ), decision
    assert Action.DELETE_DEPLOYMENT not in decision.actions
    # The same run with a deployment of its own would remove it.
    owned = dataclasses.replace(run, adopted_deployment="")
    assert (
        Action.DELETE_DEPLOYMENT
        in decide(owned, observed, Policy(), START + dt.timedelta(seconds=later)).actions
    )


def test_decide_promotes_a_rollback_on_a_passed_smoke_test() -> None:
    observed = Observed(
        endpoint=SERVING_B,
        deployment=ADOPTED,
        smoke=SmokeOutcome(passed=True, reason="passed", results=()),
    )
    decision = decide(_adopting(RunState.SMOKE_TESTING), observed)
    assert decision.state is RunState.PROMOTING and decision.actions == (Action.SHIFT_TRAFFIC,)
    assert "restoring model azureml:a:1" in decision.detail
