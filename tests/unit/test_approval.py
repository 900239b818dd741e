"""Runs over MAX_RUN_COST, against in-memory fakes: intake plans and holds them with
nothing created in the workspace; an approval (or a cancel, or the deadline) decides
what happens next; what each leaves in the ledger, the workspace and the events."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.domain.approval import Approver
from shared.domain.errors import ConcurrencyConflict, NotAllowedNow, RunNotFound
from shared.domain.runs import RunState
from shared.pipeline.control import request_approve, request_cancel, request_retry
from shared.pipeline.sweep import sweep
from tests.support.fakes import Harness, accept, drive, step

A100 = "Standard_NC24ads_A100_v4"
ALICE = Approver("alice", "0123456789ab", "alice@example.com")


@pytest.fixture
def h() -> Harness:
    return Harness().configure(
        max_run_cost=0.01,
        training_tokens_per_second=100.0,
        instance_prices={A100: 4.0},
        approval_deadline_hours=48.0,
    )


def _held(h: Harness) -> str:
    run_id = accept(h)
    run = h.ledger.run(run_id)
    assert run.state is RunState.AWAITING_APPROVAL, (run.state, run.timeline)
    return run_id


def test_intake_plans_the_run_and_holds_it_before_anything_is_created(h: Harness) -> None:
    run_id = _held(h)
    run = h.ledger.run(run_id)

    assert run.plan["over_budget"] is True and run.plan["missing"] == []
    assert run.plan["tokens_source"] == "tokens.training_tokens"  # the tokenizer's count
    assert run.plan["training_tokens"] == run.validation["tokens"]["total"]  # 1 epoch
    assert run.plan["total"] > 0.01 and run.plan["max_run_cost"] == 0.01
    assert run.activity == "waiting for approval" and run.endpoint == ""
    # Nothing in the workspace: no endpoint claimed, no data asset, no job.
    assert h.azureml.endpoints == {} and h.azureml.data == {} and h.azureml.jobs == {}
    assert h.publisher.types_for(run_id) == ["Received", "RegisteringData", "AwaitingApproval"]
    held = h.publisher.events[-1]
    assert held.data["plan"] == dict(run.plan) and "approval" not in held.data


def test_without_a_limit_the_plan_is_recorded_and_nothing_waits(h: Harness) -> None:
    h.configure(max_run_cost=None)
    run_id = accept(h)
    run = h.ledger.run(run_id)
    assert run.state is RunState.TRAINING
    assert run.plan["over_budget"] is False and run.plan["total"] is not None


def test_a_waiting_run_stays_waiting_and_quiet(h: Harness) -> None:
    run_id = _held(h)
    h.clock.advance(120)
    run = step(h, run_id)
    assert run.state is RunState.AWAITING_APPROVAL
    assert run.next_check_at == h.clock.now + dt.timedelta(hours=1)
    h.clock.advance(60)
    assert sweep(h.services).due == 0  # not looked at again before its next check
    assert h.azureml.jobs == {} and h.azureml.endpoints == {}


def test_approving_records_who_and_when_and_submits_the_job_at_once(h: Harness) -> None:
    run_id = _held(h)
    h.clock.advance(300)

    run = request_approve(h.services, run_id, ALICE)

    assert run.approval == {
        "by": "alice",
        "at": h.clock.now.isoformat(),
        "key": "0123456789ab",
        "claimed_by": "alice@example.com",
    }
    assert run.state is RunState.TRAINING
    assert [job.name for job in h.azureml.submitted()] == [run_id]
    states = [e.state for e in run.timeline]
    assert states[-3:] == [
        RunState.AWAITING_APPROVAL,
        RunState.REGISTERING_DATA,
        RunState.TRAINING,
    ]
    approved = run.timeline[-2].detail
    assert approved == f"approved by alice (says alice@example.com) at {h.clock.now.isoformat()}"
    event = [e for e in h.publisher.events if e.type.endswith(".RegisteringData")][-1]
    assert event.data["approval"]["by"] == "alice" and event.data["summary"] == approved
    assert drive(h, run_id, RunState.LIVE).approval == run.approval


def test_approving_again_changes_nothing(h: Harness) -> None:
    run_id = _held(h)
    first = request_approve(h.services, run_id, ALICE)
    version = h.ledger.version(run_id)
    again = request_approve(h.services, run_id, Approver("mallory", "ffffffffffff"))
    assert again.approval == first.approval  # the first approval stands
    assert h.ledger.version(run_id) == version
    assert len(h.azureml.submitted()) == 1


def test_only_a_waiting_run_can_be_approved(h: Harness) -> None:
    h.configure(max_run_cost=None)
    run_id = accept(h)
    before = h.ledger.version(run_id)
    with pytest.raises(NotAllowedNow, match="is TRAINING: only runs in AWAITING_APPROVAL"):
        request_approve(h.services, run_id, ALICE)
    assert h.ledger.version(run_id) == before and h.ledger.run(run_id).approval == {}


def test_approving_an_unknown_run_is_not_found(h: Harness) -> None:
    with pytest.raises(RunNotFound, match="ft-nope"):
        request_approve(h.services, "ft-nope", ALICE)


def test_an_approval_that_loses_a_race_is_asked_again(h: Harness) -> None:
    run_id = _held(h)
    h.ledger.fail("replace", ConcurrencyConflict("raced"))
    run = request_approve(h.services, run_id, ALICE)
    assert run.state is RunState.TRAINING and run.approval["by"] == "alice"


def test_cancelling_a_waiting_run_ends_it_with_nothing_to_stop(h: Harness) -> None:
    run_id = _held(h)
    run = request_cancel(h.services, run_id)
    assert run.state is RunState.CANCELED and run.timeline[-1].detail == "canceled on request"
    assert h.azureml.jobs == {} and h.azureml.endpoints == {}
    with pytest.raises(NotAllowedNow):
        request_approve(h.services, run_id, ALICE)


def test_a_run_not_approved_in_time_is_canceled_by_the_timer(h: Harness) -> None:
    run_id = _held(h)
    h.clock.advance(48 * 3600)
    assert sweep(h.services).due == 1
    run = h.ledger.run(run_id)
    assert run.state is RunState.CANCELED
    assert "APPROVAL_DEADLINE_HOURS" in run.last_error
    assert h.azureml.jobs == {} and h.azureml.endpoints == {}


def test_a_retry_of_an_approved_run_keeps_the_approval_and_is_not_held(h: Harness) -> None:
    h.azureml.job_statuses = ("Failed",)
    run_id = _held(h)
    request_approve(h.services, run_id, ALICE)
    drive(h, run_id, RunState.TRAINING_FAILED)
    h.azureml.job_statuses = ("Running",)

    run = request_retry(h.services, run_id)

    assert run.state is RunState.TRAINING and run.approval["by"] == "alice"
    assert sorted(job.name for job in h.azureml.submitted()) == [run_id, f"{run_id}-r1"]
