"""Cancel and retry by hand, against in-memory fakes: what each request leaves in
the ledger and in the workspace, from every state it is allowed (or refused) in."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from shared.domain.errors import ConcurrencyConflict, NotAllowedNow, RetryableError, RunNotFound
from shared.domain.runs import RunState
from shared.domain.smoke import Answer
from shared.pipeline.control import request_cancel, request_retry
from tests.support.fakes import Harness, accept, drive, step

EP = "ep-test"


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- cancel -----------------------------------------------------------------------------------


def test_cancelling_a_training_run_cancels_its_job(h: Harness) -> None:
    h.azureml.job_statuses = ("Running",)
    run_id = accept(h)

    run = request_cancel(h.services, run_id)

    assert run.state is RunState.CANCELED and run.cancel_requested
    assert run.timeline[-1].detail == f"canceled on request; job {run_id} cancelled"
    assert h.azureml.jobs[run_id].cancelled
    assert h.ledger.run(run_id) == run and run.published == len(run.timeline)
    assert h.publisher.types_for(run_id)[-1] == "Canceled"


def test_cancelling_a_run_whose_job_is_not_submitted_yet_only_ends_it(h: Harness) -> None:
    h.azureml.fail("submit_job", RetryableError("503 busy"))
    run_id = accept(h)
    assert h.ledger.run(run_id).state is RunState.REGISTERING_DATA
    run = request_cancel(h.services, run_id)
    assert run.state is RunState.CANCELED and run.timeline[-1].detail == "canceled on request"
    assert h.azureml.jobs == {}


def test_cancelling_while_deploying_removes_the_new_deployment(h: Harness) -> None:
    h.azureml.deployment_states = ("Creating",)
    run_id = accept(h)
    drive(h, run_id, RunState.DEPLOYING)
    while (EP, run_id) not in h.azureml.deployments:
        step(h, run_id)

    run = request_cancel(h.services, run_id)

    assert run.state is RunState.CANCELED
    assert run.timeline[-1].detail == f"canceled on request; deployment {run_id} removed"
    assert (EP, run_id) not in h.azureml.deployments
    assert h.ledger.locks[EP] == ""  # the endpoint is free for the next rollout


def test_cancelling_before_the_smoke_test_scores_nothing(h: Harness) -> None:
    run_id = accept(h)
    drive(h, run_id, RunState.SMOKE_TESTING)
    run = request_cancel(h.services, run_id)
    assert run.state is RunState.CANCELED
    assert h.scorer.asked == []
    assert (EP, run_id) not in h.azureml.deployments


@pytest.mark.parametrize("state", [RunState.PROMOTING, RunState.LIVE, RunState.TRAINING_FAILED])
def test_runs_past_the_point_of_cancelling_answer_not_allowed(h: Harness, state: RunState) -> None:
    if state is RunState.TRAINING_FAILED:
        h.azureml.job_statuses = ("Failed",)
    if state is RunState.PROMOTING:
        h.azureml.traffic_states = ("Updating",)  # it stays there
    run_id = accept(h)
    drive(h, run_id, state)
    before = h.ledger.version(run_id)
    with pytest.raises(NotAllowedNow, match=f"is {state.value}: only runs in"):
        request_cancel(h.services, run_id)
    assert h.ledger.version(run_id) == before
    assert not h.ledger.run(run_id).cancel_requested


def test_cancelling_an_unknown_run_is_not_found(h: Harness) -> None:
    with pytest.raises(RunNotFound, match="ft-nope"):
        request_cancel(h.services, "ft-nope")


def test_a_cancel_that_loses_a_race_is_asked_again(h: Harness) -> None:
    run_id = accept(h)
    h.ledger.fail("replace", ConcurrencyConflict("raced"), ConcurrencyConflict("raced"))
    run = request_cancel(h.services, run_id)
    assert run.state is RunState.CANCELED


def test_a_cancel_of_a_run_busy_elsewhere_is_recorded_and_done_by_its_next_reconcile(
    h: Harness,
) -> None:
    run_id = accept(h)
    busy = dataclasses.replace(
        h.ledger.run(run_id),
        lease_owner="another-invocation",
        lease_until=h.clock.now + dt.timedelta(minutes=1),
    )
    h.ledger.put(busy)

    run = request_cancel(h.services, run_id)

    assert run.state is RunState.TRAINING and run.cancel_requested
    assert run.next_check_at is None  # due at once
    version = h.ledger.version(run_id)
    # Asking again changes nothing more.
    assert request_cancel(h.services, run_id).cancel_requested
    assert h.ledger.version(run_id) == version
    h.clock.advance(61)
    assert step(h, run_id).state is RunState.CANCELED
    assert h.azureml.jobs[run_id].cancelled


# -- retry ------------------------------------------------------------------------------------


def test_retrying_a_failed_training_submits_a_new_job_on_the_same_data(h: Harness) -> None:
    h.azureml.job_statuses = ("Failed",)
    run_id = accept(h)
    failed = drive(h, run_id, RunState.TRAINING_FAILED)
    h.azureml.job_statuses = ("Running", "Completed")

    run = request_retry(h.services, run_id)

    assert run.state is RunState.TRAINING and run.retries == 1
    assert run.job_name == f"{run_id}-r1" and run.last_error == ""
    assert (run.training_data, run.validation_data) == (
        failed.training_data,
        failed.validation_data,
    )
    assert sorted(job.name for job in h.azureml.submitted()) == [run_id, f"{run_id}-r1"]
    assert "retry 1: resuming at REGISTERING_DATA" in [e.detail for e in run.timeline]
    run = drive(h, run_id, RunState.LIVE)
    assert run.model_id.endswith(f"/models/{run_id}/versions/1")


@pytest.mark.parametrize("failure", ["deployment", "smoke"])
def test_retrying_a_failed_rollout_deploys_the_same_model_anew(h: Harness, failure: str) -> None:
    run_id = accept(h)
    if failure == "deployment":
        h.azureml.plan_deployment(run_id, "Failed", error="image pull failed")
        ended = RunState.DEPLOY_FAILED
    else:
        h.scorer.answer = lambda target, prompt: Answer(200, "", 5.0)
        ended = RunState.ROLLED_BACK
    failed = drive(h, run_id, ended)
    h.scorer.answer = None

    run = request_retry(h.services, run_id)

    assert run.state is RunState.DEPLOYING and run.deployment == f"{run_id}-r1"
    assert run.model_id == failed.model_id and run.smoke == {}
    assert [job.name for job in h.azureml.submitted()] == [run_id]  # no new training
    run = drive(h, run_id, RunState.LIVE)
    assert h.azureml.endpoints[EP].traffic == {f"{run_id}-r1": 100}


def test_retrying_a_run_that_failed_in_training_resumes_at_registering(h: Harness) -> None:
    run_id = accept(h)
    del h.azureml.jobs[run_id]  # the job vanished: FAILED
    assert step(h, run_id).state is RunState.FAILED
    run = request_retry(h.services, run_id)
    assert run.state is RunState.TRAINING and run.job_name == f"{run_id}-r1"


def test_retrying_a_run_that_failed_while_promoting_resumes_at_deploying(h: Harness) -> None:
    h.configure(deploy_deadline_minutes=1.0)
    h.azureml.traffic_states = ("Updating",)
    run_id = accept(h)
    drive(h, run_id, RunState.PROMOTING)
    h.clock.advance(120)
    assert step(h, run_id).state is RunState.FAILED
    h.azureml.traffic_states = ("Succeeded",)
    run = request_retry(h.services, run_id)
    assert run.state is RunState.DEPLOYING and run.deployment == f"{run_id}-r1"


def test_each_retry_gets_fresh_names(h: Harness) -> None:
    h.azureml.job_statuses = ("Failed",)
    run_id = accept(h)
    drive(h, run_id, RunState.TRAINING_FAILED)
    request_retry(h.services, run_id)
    run = drive(h, run_id, RunState.TRAINING_FAILED)
    run = request_retry(h.services, run_id)
    assert run.retries == 2 and run.job_name == f"{run_id}-r2"


@pytest.mark.parametrize("state", [RunState.TRAINING, RunState.LIVE, RunState.CANCELED])
def test_runs_that_did_not_fail_cannot_be_retried(h: Harness, state: RunState) -> None:
    h.azureml.job_statuses = ("Canceled",) if state is RunState.CANCELED else ("Running",)
    run_id = accept(h)
    if state is RunState.LIVE:
        h.azureml.job_statuses = ("Completed",)
        h.azureml.jobs[run_id].script.replace("Completed")
    drive(h, run_id, state)
    before = h.ledger.version(run_id)
    with pytest.raises(NotAllowedNow, match="can be retried"):
        request_retry(h.services, run_id)
    assert h.ledger.version(run_id) == before


def test_rejected_uploads_cannot_be_retried(h: Harness) -> None:
    h.store.upload("bad.jsonl", b"not json\n")
    from shared.pipeline.intake import accept_upload

    result = accept_upload(h.services, "bad.jsonl")
    assert result.run_id is not None
    with pytest.raises(NotAllowedNow):
        request_retry(h.services, result.run_id)


def test_retrying_an_unknown_run_is_not_found(h: Harness) -> None:
    with pytest.raises(RunNotFound):
        request_retry(h.services, "ft-nope")


def test_a_retry_that_loses_a_race_is_asked_again(h: Harness) -> None:
    h.azureml.job_statuses = ("Failed",)
    run_id = accept(h)
    drive(h, run_id, RunState.TRAINING_FAILED)
    h.ledger.fail("replace", ConcurrencyConflict("raced"))
    run = request_retry(h.services, run_id)
    assert run.retries == 1 and run.state is RunState.TRAINING
