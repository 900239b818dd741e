"""The reconciler against in-memory fakes of the app's ports: each test sets up what
Azure will show, reconciles, and checks the run (and the fakes) afterwards.

The same lifecycle runs through Azurite and the emulator in tests/integration and
tests/e2e; here every branch is reached in milliseconds, faults included.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random

import pytest

from shared.domain.errors import ConcurrencyConflict, PermanentError, RetryableError
from shared.domain.runs import DatasetRef, Run, RunState
from shared.domain.smoke import Answer
from shared.domain.storage import SPLITS_PREFIX
from shared.pipeline.reconciler import BACKOFF_MAX_SECONDS, backoff_seconds, reconcile
from shared.pipeline.sweep import sweep
from tests.support.app import chat_examples
from tests.support.fakes import (
    START,
    Harness,
    accept,
    drive,
    step,
)

EP = "ep-test"
TRAINING_DONE = (RunState.RECEIVED, RunState.REGISTERING_DATA, RunState.TRAINING)
WHOLE_PATH = [
    "Received",
    "RegisteringData",
    "Training",
    "Deploying",
    "SmokeTesting",
    "Evaluating",
    "Promoting",
    "Live",
]


@pytest.fixture
def h() -> Harness:
    return Harness()


def _other_run(h: Harness, run_id: str, state: RunState) -> Run:
    """Another run of the same endpoint, stored in ``state``."""
    path = [
        RunState.REGISTERING_DATA,
        RunState.TRAINING,
        RunState.DEPLOYING,
        RunState.SMOKE_TESTING,
        RunState.PROMOTING,
        RunState.LIVE,
    ]
    dataset = DatasetRef("datasets", "other.jsonl", "https://acct/datasets/other.jsonl", "1", 1)
    run = Run.new(run_id, dataset, START)
    for each in path[: path.index(state) + 1]:
        run = run.moved_to(each, START)
    run = dataclasses.replace(run, endpoint=EP, deployment=run_id, published=len(run.timeline))
    h.ledger.put(run)
    return run


def _next_check_in(h: Harness, run: Run) -> float:
    assert run.next_check_at is not None
    return (run.next_check_at - h.clock.now).total_seconds()


# -- submit and adopt ---------------------------------------------------------------------------


def test_an_accepted_upload_claims_the_endpoint_prepares_data_and_submits_one_job(
    h: Harness,
) -> None:
    run_id = accept(h)

    run = h.ledger.run(run_id)
    assert run.state is RunState.TRAINING
    assert tuple(e.state for e in run.timeline) == TRAINING_DONE
    assert "endpoint ep-test claimed" in run.timeline[-1].detail
    assert run.endpoint == EP and EP in h.azureml.endpoints
    assert run.job_name == run_id and run.activity == "training"
    # One job, with the run's data assets, pointing at the hash split in place.
    [job] = h.azureml.submitted()
    assert job.spec is not None
    assert job.spec.training_data == run.training_data
    assert job.spec.validation_data == run.validation_data
    assert job.spec.output_model_prefix == run_id and job.spec.task == "text"
    assert job.spec.tags["finetune-autopilot.dataset-sha256"] == run.sha256
    assert h.azureml.data[run.training_data].endswith("/training.jsonl")
    split = run.validation["split"]
    assert split["training_examples"] + split["validation_examples"] == 20
    # The parts go to the work container; the watched one holds the upload alone.
    assert h.work.names(SPLITS_PREFIX) == sorted(
        [split["validation_name"], split["validation_name"].replace("validation", "training")]
    )
    assert h.store.names() == ["data.jsonl"]
    assert split["validation_container"] == h.work.container


def test_a_run_recorded_without_parts_is_split_by_the_reconciler(h: Harness) -> None:
    # A run created before intake split uploads: the reconciler reads and splits it.
    h.azureml.fail("register_data", RetryableError("busy"))
    run = h.ledger.run(accept(h))
    assert run.state is RunState.REGISTERING_DATA and run.last_error
    legacy = {k: v for k, v in run.validation.items() if k != "split"}
    h.ledger.put(dataclasses.replace(run, validation=legacy))
    h.work.blobs.clear()
    h.store.reads.clear()

    run = step(h, run.run_id)

    assert run.state is RunState.TRAINING
    assert h.store.reads == ["data.jsonl"]
    split = run.validation["split"]
    assert split["validation_container"] == h.work.container
    assert split["validation_name"] in h.work.names(SPLITS_PREFIX)
    assert h.azureml.data[run.validation_data] == split["validation_url"]


def test_smoke_prompts_of_a_run_split_into_the_dataset_container_are_found(
    h: Harness,
) -> None:
    # Runs from before WORK_CONTAINER kept their parts in the dataset container.
    h.configure(smoke_prompt_count=2)
    run_id = accept(h)
    run = drive(h, run_id, RunState.SMOKE_TESTING)
    name = run.validation["split"]["validation_name"]
    h.store.upload(name, h.work.blobs.pop(name).data)
    split = {k: v for k, v in run.validation["split"].items() if k != "validation_container"}
    h.ledger.put(dataclasses.replace(run, validation={**run.validation, "split": split}))

    run = step(h, run_id)

    assert run.state is RunState.EVALUATING, run.last_error
    assert len(h.scorer.asked) == 2


def test_an_endpoint_already_there_is_not_claimed_again(h: Harness) -> None:
    h.azureml.add_endpoint(EP, traffic={"old": 100})
    run = h.ledger.run(accept(h))
    assert run.state is RunState.TRAINING
    assert "claimed" not in run.timeline[-1].detail
    assert h.azureml.endpoints[EP].traffic == {"old": 100}


def test_an_endpoint_name_taken_in_the_region_fails_the_run_before_any_job(h: Harness) -> None:
    h.azureml.taken_endpoint_names.add(EP)
    run = h.ledger.run(accept(h))
    assert run.state is RunState.FAILED
    assert "is not available" in run.last_error
    assert h.azureml.jobs == {}


def test_a_job_submitted_before_a_lost_reply_is_adopted_not_submitted_again(h: Harness) -> None:
    h.azureml.fail("submit_job", RetryableError("connection reset"))
    run_id = accept(h)
    assert h.ledger.run(run_id).state is RunState.REGISTERING_DATA
    # The PUT reached Azure; only the reply was lost.
    h.azureml.add_job(run_id, "Running")

    run = step(h, run_id)

    assert run.state is RunState.TRAINING
    assert "adopted existing job" in run.timeline[-1].detail
    assert run.job_name == run_id and run.job_status == "Running"
    assert run.training_data and run.validation["split"]["validation_name"]
    assert h.azureml.submitted() == []  # the one job is the one found
    assert list(h.azureml.jobs) == [run_id]


# -- training -----------------------------------------------------------------------------------


def test_a_running_job_is_watched(h: Harness) -> None:
    h.azureml.job_statuses = ("Queued", "Running")
    run_id = accept(h)
    step(h, run_id)
    run = step(h, run_id)
    assert run.state is RunState.TRAINING
    assert (run.job_status, run.activity) == ("Running", "job Running")
    assert _next_check_in(h, run) == h.settings.job_poll_seconds
    assert run.attempts == 0 and run.lease_owner == ""


@pytest.mark.parametrize(
    ("statuses", "error", "state", "reason"),
    [
        (("Running", "Completed"), "", RunState.DEPLOYING, ""),
        (("Running", "Failed"), "CUDA out of memory", RunState.TRAINING_FAILED, "out of memory"),
        (("Failed",), "", RunState.TRAINING_FAILED, "Failed"),
        (("Running", "Canceled"), "", RunState.CANCELED, ""),
        (("NotResponding", "Running", "Completed"), "", RunState.DEPLOYING, ""),
    ],
)
def test_job_outcomes(
    h: Harness, statuses: tuple[str, ...], error: str, state: RunState, reason: str
) -> None:
    h.azureml.job_statuses = statuses
    run_id = accept(h)
    h.azureml.jobs[run_id].error = error
    run = drive(h, run_id, state)
    assert reason in run.last_error
    if state is RunState.TRAINING_FAILED:
        assert run.last_error.startswith(f"job {run_id} Failed")
        assert run.activity == ""


def test_an_unknown_job_status_is_watched_and_named(h: Harness) -> None:
    h.azureml.job_statuses = ("Paused",)
    run_id = accept(h)
    run = step(h, run_id)
    assert run.state is RunState.TRAINING and run.activity == "job is Paused"


def test_a_job_that_vanished_fails_the_run(h: Harness) -> None:
    run_id = accept(h)
    del h.azureml.jobs[run_id]
    run = step(h, run_id)
    assert run.state is RunState.FAILED and run.last_error == f"job {run_id} not found"


def test_a_completed_job_hands_over_its_output_model(h: Harness) -> None:
    run_id = accept(h)
    h.azureml.jobs[run_id].output_model = "ft-sanitised-name"
    h.azureml.jobs[run_id].script.replace("Completed")
    run = drive(h, run_id, RunState.DEPLOYING)
    assert run.model_name == "ft-sanitised-name"
    assert (run.endpoint, run.deployment, run.activity) == (EP, run_id, "deploying")
    run = step(h, run_id)
    assert run.model_id.endswith("/models/ft-sanitised-name/versions/1")


def test_training_past_its_deadline_cancels_the_job(h: Harness) -> None:
    h.configure(training_deadline_hours=1.0)
    h.azureml.job_statuses = ("Running",)
    run_id = accept(h)
    h.clock.advance(59 * 60)
    assert step(h, run_id).state is RunState.TRAINING
    h.clock.advance(2 * 60)
    run = step(h, run_id)
    assert run.state is RunState.TRAINING_FAILED
    assert "TRAINING_DEADLINE_HOURS" in run.last_error
    assert h.azureml.jobs[run_id].cancelled


# -- deploying ----------------------------------------------------------------------------------


def test_the_whole_rollout_ends_live_with_one_event_per_state(h: Harness) -> None:
    run_id = accept(h)
    run = drive(h, run_id, RunState.LIVE)

    assert [e.state for e in run.timeline][-5:] == [
        RunState.DEPLOYING,
        RunState.SMOKE_TESTING,
        RunState.EVALUATING,
        RunState.PROMOTING,
        RunState.LIVE,
    ]
    assert h.azureml.endpoints[EP].traffic == {run_id: 100}
    deployment = h.azureml.deployments[(EP, run_id)]
    assert deployment.spec.model_id == run.model_id
    assert deployment.spec.tags == {"finetune-autopilot.run": run_id}
    assert run.smoke["passed"] is True
    assert run.activity == "serving" and run.next_check_at is None
    assert h.ledger.locks[EP] == ""  # the rollout lock is given back
    # Lifecycle events: one per timeline entry, in order, each once.
    assert h.publisher.types_for(run_id) == WHOLE_PATH
    assert run.published == len(run.timeline)
    assert [e.id for e in h.publisher.events] == [
        f"{run_id}:{i}:{e.state.value}" for i, e in enumerate(run.timeline)
    ]


def test_the_rollout_waits_for_the_lock_held_by_another_live_rollout(h: Harness) -> None:
    _other_run(h, "ft-other", RunState.SMOKE_TESTING)
    h.ledger.locks[EP] = "ft-other"
    run_id = accept(h)
    run = drive(h, run_id, RunState.DEPLOYING)
    run = step(h, run_id)
    assert run.state is RunState.DEPLOYING
    assert run.activity == "waiting for run ft-other to finish its rollout"
    assert (EP, run_id) not in h.azureml.deployments
    # The other rollout ends; its lock is taken over even if it was never released.
    h.ledger.put(dataclasses.replace(h.ledger.run("ft-other"), state=RunState.LIVE))
    drive(h, run_id, RunState.SMOKE_TESTING)
    assert h.ledger.locks[EP] == run_id


def test_the_rollout_waits_for_a_late_model(h: Harness) -> None:
    run_id = accept(h)
    h.azureml.jobs[run_id].register_model = False
    drive(h, run_id, RunState.DEPLOYING)
    for _ in range(3):
        run = step(h, run_id)
        assert run.state is RunState.DEPLOYING
        assert run.activity == f"waiting for model {run_id} to be registered"
    assert (EP, run_id) not in h.azureml.deployments
    model = h.azureml.add_model(run_id)
    run = drive(h, run_id, RunState.SMOKE_TESTING)
    assert run.model_id == model.id


def test_an_endpoint_deleted_since_the_claim_is_created_again(h: Harness) -> None:
    run_id = accept(h)
    drive(h, run_id, RunState.DEPLOYING)
    del h.azureml.endpoints[EP]
    run = step(h, run_id)
    assert run.activity == "creating endpoint" and EP in h.azureml.endpoints
    drive(h, run_id, RunState.LIVE)


def test_a_failed_endpoint_fails_the_deployment(h: Harness) -> None:
    run_id = accept(h)
    drive(h, run_id, RunState.DEPLOYING)
    h.azureml.endpoints[EP].script.replace("Failed")
    run = step(h, run_id)
    assert run.state is RunState.DEPLOY_FAILED
    assert run.last_error == f"endpoint {EP} Failed"
    assert h.ledger.locks[EP] == ""


@pytest.mark.parametrize("keep", [False, True])
def test_a_failed_deployment_fails_the_run_with_the_services_reason(h: Harness, keep: bool) -> None:
    h.configure(keep_failed_deployment=keep)
    run_id = accept(h)
    h.azureml.plan_deployment(run_id, "Creating", "Failed", error="liveness probe failed")
    run = drive(h, run_id, RunState.DEPLOY_FAILED)
    assert run.last_error == f"deployment {run_id} Failed: liveness probe failed"
    assert ((EP, run_id) in h.azureml.deployments) is keep
    assert h.ledger.locks[EP] == ""
    assert h.publisher.types_for(run_id)[-1] == "DeployFailed"


def test_a_quota_refusal_is_a_failed_deployment_and_frees_the_endpoint(h: Harness) -> None:
    run_id = accept(h)
    h.azureml.quota_exceeded.add(run_id)
    run = drive(h, run_id, RunState.DEPLOY_FAILED)
    assert "Not enough quota" in run.last_error
    assert run.timeline[-1].detail == run.last_error
    assert (EP, run_id) not in h.azureml.deployments
    assert h.ledger.locks[EP] == ""


def test_a_deployment_stuck_past_the_deadline_fails_and_is_removed(h: Harness) -> None:
    h.configure(deploy_deadline_minutes=10.0)
    run_id = accept(h)
    h.azureml.plan_deployment(run_id, "Creating")
    drive(h, run_id, RunState.DEPLOYING)
    for _ in range(3):
        step(h, run_id)
    assert h.azureml.deployments[(EP, run_id)].script.current == "Creating"
    h.clock.advance(11 * 60)
    run = step(h, run_id)
    assert run.state is RunState.DEPLOY_FAILED
    assert "DEPLOY_DEADLINE_MINUTES" in run.last_error and "Creating" in run.last_error
    assert (EP, run_id) not in h.azureml.deployments


# -- smoke test, promote, roll back -----------------------------------------------------------


def test_the_smoke_test_scores_the_new_deployment_alone_with_validation_prompts(
    h: Harness,
) -> None:
    h.configure(smoke_prompt_count=2)
    run_id = accept(h)
    run = drive(h, run_id, RunState.EVALUATING)
    validation = h.work.blobs[run.validation["split"]["validation_name"]].lines()
    records = [json.loads(line) for line in validation[:2]]
    assert len(h.scorer.asked) == len(records) > 0
    for (target, prompt), record in zip(h.scorer.asked, records, strict=True):
        assert target.deployment == run_id and target.key == f"key-of-{EP}"
        assert target.scoring_uri == h.azureml.endpoints[EP].scoring_uri
        assert (target.route, target.chat) == ("/completions", False)
        assert (prompt.prompt, prompt.expected) == (record["prompt"], record["completion"])
    assert run.smoke["passed"] is True
    assert h.azureml.endpoints[EP].traffic == {}  # nothing moves before the evaluation


def test_configured_smoke_prompts_are_used_as_they_are(h: Harness) -> None:
    h.configure(smoke_prompts=("Say hello.", "Say goodbye."))
    run_id = accept(h)
    drive(h, run_id, RunState.EVALUATING)
    assert [p.prompt for _, p in h.scorer.asked] == ["Say hello.", "Say goodbye."]
    assert all(p.expected is None for _, p in h.scorer.asked)


def test_a_chat_model_is_smoke_tested_on_the_chat_route(h: Harness) -> None:
    run_id = accept(h, "chat.jsonl", chat_examples(12))
    drive(h, run_id, RunState.PROMOTING)
    target, prompt = h.scorer.asked[0]
    assert (target.route, target.chat) == ("/v1/chat/completions", True)
    assert prompt.messages and prompt.messages[-1]["role"] == "user"


def test_a_failed_smoke_test_rolls_back_and_keeps_the_live_deployment(h: Harness) -> None:
    h.azureml.add_endpoint(EP, traffic={"old": 100})
    h.azureml.add_deployment(EP, "old")
    h.scorer.answer = lambda target, prompt: Answer(500, "", 30.0, error="model crashed")
    run_id = accept(h)
    run = drive(h, run_id, RunState.ROLLED_BACK)
    assert run.last_error.startswith("smoke test failed: prompt 1 of ")
    assert "HTTP 500: model crashed" in run.last_error
    assert run.smoke["passed"] is False
    assert h.azureml.endpoints[EP].traffic == {"old": 100}
    assert (EP, run_id) not in h.azureml.deployments and (EP, "old") in h.azureml.deployments
    assert h.ledger.locks[EP] == ""


@pytest.mark.parametrize("keep_previous", [False, True])
def test_promotion_moves_all_traffic_and_retires_the_previous_deployment(
    h: Harness, keep_previous: bool
) -> None:
    h.configure(keep_previous_deployment=keep_previous)
    h.azureml.add_endpoint(EP, traffic={"old": 100})
    h.azureml.add_deployment(EP, "old")
    run_id = accept(h)
    run = drive(h, run_id, RunState.SMOKE_TESTING)
    assert run.previous_deployments == {"old": 100}
    run = drive(h, run_id, RunState.LIVE)
    assert run.timeline[-1].detail == f"serving 100% of {EP}; previous: old"
    assert h.azureml.endpoints[EP].traffic == (
        {"old": 0, run_id: 100} if keep_previous else {run_id: 100}
    )
    assert ((EP, "old") in h.azureml.deployments) is keep_previous


def test_a_traffic_update_that_did_not_stick_is_applied_again(h: Harness) -> None:
    h.azureml.apply_traffic = False
    run_id = accept(h)
    drive(h, run_id, RunState.PROMOTING)
    run = step(h, run_id)  # Updating
    run = step(h, run_id)  # Succeeded, but the traffic is not ours
    assert run.state is RunState.PROMOTING and run.activity == "shifting traffic (again)"
    h.azureml.apply_traffic = True
    drive(h, run_id, RunState.LIVE)
    assert h.azureml.endpoints[EP].traffic == {run_id: 100}


def test_an_endpoint_gone_while_promoting_rolls_back(h: Harness) -> None:
    run_id = accept(h)
    drive(h, run_id, RunState.PROMOTING)
    del h.azureml.endpoints[EP]
    run = step(h, run_id)
    assert run.state is RunState.ROLLED_BACK
    assert run.last_error == f"endpoint {EP} is gone while shifting traffic"


def test_promotion_stuck_past_the_deadline_fails_loudly(h: Harness) -> None:
    h.configure(deploy_deadline_minutes=10.0)
    h.azureml.traffic_states = ("Updating",)
    run_id = accept(h)
    drive(h, run_id, RunState.PROMOTING)
    assert step(h, run_id).activity == "traffic update Updating"
    h.clock.advance(11 * 60)
    run = step(h, run_id)
    assert run.state is RunState.FAILED and "traffic update Updating" in run.last_error


def test_a_deployment_gone_before_its_smoke_test_ends_the_rollout(h: Harness) -> None:
    run_id = accept(h)
    drive(h, run_id, RunState.SMOKE_TESTING)
    del h.azureml.deployments[(EP, run_id)]
    run = step(h, run_id)
    assert run.last_error == f"deployment {run_id} is gone before its smoke test"
    assert run.state is RunState.DEPLOY_FAILED
    assert h.scorer.asked == []


def test_a_missing_validation_split_fails_the_run_with_the_reason(h: Harness) -> None:
    run_id = accept(h)
    run = drive(h, run_id, RunState.SMOKE_TESTING)
    del h.work.blobs[run.validation["split"]["validation_name"]]
    run = step(h, run_id)
    assert run.state is RunState.FAILED
    assert "is gone: no smoke prompts" in run.last_error
    assert h.ledger.locks[EP] == ""
    # Nothing is left running at 0% traffic for a run that ended.
    assert (EP, run_id) not in h.azureml.deployments


def test_a_training_run_ended_by_an_error_cancels_its_job(h: Harness) -> None:
    h.configure(max_attempts=1)
    h.azureml.job_statuses = ("Running",) * 50
    run_id = accept(h)
    run = step(h, run_id)
    assert run.state is RunState.TRAINING
    h.azureml.fail("get_job", RetryableError("503 Service Unavailable"))
    h.clock.advance(3600)
    run = step(h, run_id)
    assert run.state is RunState.FAILED and "MAX_ATTEMPTS=1" in run.last_error
    assert h.azureml.jobs[run.job_name or run_id].cancelled  # no GPU left running


def test_a_validation_split_without_a_usable_prompt_fails_the_run(h: Harness) -> None:
    run_id = accept(h)
    run = drive(h, run_id, RunState.SMOKE_TESTING)
    h.work.upload(run.validation["split"]["validation_name"], b'{"other": 1}\n')
    run = step(h, run_id)
    assert run.state is RunState.FAILED and "holds no usable smoke prompt" in run.last_error


# -- errors, retries and backoff -------------------------------------------------------------


def test_a_retryable_error_keeps_the_state_and_waits_at_least_retry_after(h: Harness) -> None:
    run_id = accept(h)
    before = h.ledger.run(run_id)
    h.azureml.fail("get_job", RetryableError("429 Too Many Requests", retry_after=120))
    run = step(h, run_id)
    assert run.state is RunState.TRAINING and run.timeline == before.timeline
    # Throttled: wait what the service asked (up to 20% more), not counted as a failure.
    assert (run.attempts, run.last_error) == (0, "429 Too Many Requests")
    assert 120 <= _next_check_in(h, run) <= 144
    assert run.lease_owner == "" and run.lease_until is None
    # The next success clears the error and the count.
    run = step(h, run_id)
    assert (run.attempts, run.last_error) == (0, "")


def test_retry_after_counts_from_the_refusal_not_from_the_step_start(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = accept(h)
    started = h.clock()

    def slow_refusal(name: str) -> None:
        h.clock.advance(5)  # the call took 5 s before the service said "come back in 1 s"
        raise RetryableError("429 Too Many Requests", retry_after=1)

    monkeypatch.setattr(h.azureml, "get_job", slow_refusal)
    run = step(h, run_id)
    assert run.next_check_at is not None
    assert run.next_check_at >= started + dt.timedelta(seconds=6)


def test_a_run_backing_off_is_left_alone_until_due(h: Harness) -> None:
    run_id = accept(h)
    h.azureml.fail("get_job", RetryableError("429 Too Many Requests", retry_after=60))
    throttled = step(h, run_id)
    # An Azure ML event or a repeated trigger before the Retry-After has passed:
    assert step(h, run_id, when_due=False) == throttled
    # A cancel request does not wait.
    from shared.pipeline.control import request_cancel

    assert request_cancel(h.services, run_id).state is RunState.CANCELED


def test_a_long_throttling_storm_never_uses_up_the_attempts(h: Harness) -> None:
    h.configure(max_attempts=3)
    run_id = accept(h)
    h.azureml.fail("get_job", *[RetryableError("429 slow down", retry_after=1)] * 10)
    for _ in range(10):
        h.clock.advance(2)
        run = step(h, run_id)
        assert run.state is RunState.TRAINING and run.attempts == 0
    h.clock.advance(2)
    assert step(h, run_id).last_error == ""


def test_backoff_doubles_with_jitter_and_gives_up_after_max_attempts(h: Harness) -> None:
    h.configure(max_attempts=4)
    run_id = accept(h)
    h.azureml.fail("get_job", *[RetryableError("503 busy")] * 4)
    for attempts, low, high in ((1, 4, 6), (2, 8, 12), (3, 16, 24)):
        run = step(h, run_id)
        assert run.attempts == attempts and run.state is RunState.TRAINING
        assert low <= _next_check_in(h, run) <= high
    run = step(h, run_id)
    assert run.state is RunState.FAILED
    assert run.last_error == "gave up after 4 attempts (MAX_ATTEMPTS=4): 503 busy"
    assert h.publisher.types_for(run_id)[-1] == "Failed"


def test_backoff_seconds_is_capped_and_honours_retry_after() -> None:
    rng = random.Random(7)
    assert 4 <= backoff_seconds(0, None, rng) <= 6
    assert backoff_seconds(30, None, rng) <= BACKOFF_MAX_SECONDS * 1.2
    assert backoff_seconds(0, 900, rng) == 900


def test_an_unexpected_exception_is_recorded_and_the_lease_freed(h: Harness) -> None:
    h.configure(max_attempts=2)
    run_id = accept(h)
    h.azureml.fail("get_job", TypeError("'NoneType' object is not subscriptable"))
    run = step(h, run_id)
    assert run.state is RunState.TRAINING and run.attempts == 1
    assert run.last_error == (
        "unexpected error in TRAINING: TypeError: 'NoneType' object is not subscriptable"
    )
    assert run.lease_owner == ""
    h.azureml.fail("get_job", KeyError("id"))
    run = step(h, run_id)
    assert run.state is RunState.FAILED
    assert run.last_error.startswith("gave up after 2 attempts (MAX_ATTEMPTS=2): unexpected")


@pytest.mark.parametrize(
    ("state", "method", "ended"),
    [
        (RunState.TRAINING, "get_job", RunState.FAILED),
        (RunState.DEPLOYING, "latest_model", RunState.DEPLOY_FAILED),
        (RunState.SMOKE_TESTING, "endpoint_key", RunState.FAILED),
    ],
)
def test_a_permanent_error_ends_the_run_with_its_message(
    h: Harness, state: RunState, method: str, ended: RunState
) -> None:
    run_id = accept(h)
    if state is RunState.DEPLOYING:
        h.azureml.jobs[run_id].register_model = False  # it waits for the model
    drive(h, run_id, state)
    h.azureml.fail(method, PermanentError("403 AuthorizationFailed for the app's identity"))
    run = step(h, run_id)
    assert run.state is ended
    assert run.last_error == "403 AuthorizationFailed for the app's identity"
    assert run.activity == ""


def test_a_lock_that_cannot_be_released_does_not_stop_the_run_ending(h: Harness) -> None:
    run_id = accept(h)
    h.azureml.quota_exceeded.add(run_id)
    drive(h, run_id, RunState.DEPLOYING)
    h.ledger.fail("release_endpoint", RetryableError("table busy"))
    run = drive(h, run_id, RunState.DEPLOY_FAILED)
    assert h.ledger.run(run_id).state is RunState.DEPLOY_FAILED
    assert h.ledger.locks[EP] == run_id  # stale, taken over by the next rollout
    assert run.published == len(run.timeline)


# -- leases and races --------------------------------------------------------------------------


def test_a_run_leased_by_another_live_reconcile_is_left_alone(h: Harness) -> None:
    run_id = accept(h)
    leased = dataclasses.replace(
        h.ledger.run(run_id),
        lease_owner="someone-else",
        lease_until=START + dt.timedelta(minutes=1),
    )
    h.ledger.put(leased)
    version = h.ledger.version(run_id)
    assert step(h, run_id) == leased and h.ledger.version(run_id) == version
    # A lease that expired (its holder crashed) is taken over.
    h.clock.advance(61)
    run = step(h, run_id)
    assert run.lease_owner == "" and run.activity == "job Queued"
    assert h.ledger.version(run_id) > version


def test_a_lost_race_is_read_again_and_retried(h: Harness) -> None:
    run_id = accept(h)
    h.ledger.fail("replace", ConcurrencyConflict("raced"), ConcurrencyConflict("raced"))
    run = step(h, run_id)
    assert run.activity == "job Queued" and run.lease_owner == ""


def test_three_lost_races_leave_the_run_for_later(h: Harness) -> None:
    run_id = accept(h)
    before = h.ledger.run(run_id)
    h.ledger.fail("replace", *[ConcurrencyConflict("raced")] * 3)
    assert step(h, run_id) == before


def test_a_concurrent_write_while_acting_is_not_overwritten(h: Harness) -> None:
    run_id = accept(h)
    writes = {"count": 0}

    def cancel_concurrently(stored: object, run: Run) -> None:
        writes["count"] += 1
        if writes["count"] == 2:  # after the lease, before saving: someone cancels
            current = h.ledger.run(run_id)
            h.ledger.put(dataclasses.replace(current, cancel_requested=True))

    h.ledger.before_replace = cancel_concurrently
    run = step(h, run_id)
    h.ledger.before_replace = None
    assert run.cancel_requested  # the request survived, and was acted on
    assert run.state is RunState.CANCELED
    assert h.azureml.jobs[run_id].cancelled


def test_an_unknown_run_is_skipped(h: Harness) -> None:
    assert reconcile(h.services, "ft-nope") is None


def test_an_ended_run_with_nothing_to_publish_is_not_written(h: Harness) -> None:
    h.azureml.taken_endpoint_names.add(EP)
    run_id = accept(h)
    version = h.ledger.version(run_id)
    assert step(h, run_id).state is RunState.FAILED
    assert h.ledger.version(run_id) == version


# -- lifecycle events (the outbox) ------------------------------------------------------------


def test_events_that_could_not_be_published_go_out_on_the_next_reconcile(h: Harness) -> None:
    h.publisher.fail(RetryableError("topic unreachable"))
    run_id = accept(h)
    run = h.ledger.run(run_id)
    assert run.state is RunState.TRAINING and run.published == 0
    assert h.publisher.events == []
    run = step(h, run_id)
    assert run.published == len(run.timeline) == 3
    assert h.publisher.types_for(run_id) == WHOLE_PATH[:3]


def test_an_ended_run_is_reconciled_until_its_events_are_out(h: Harness) -> None:
    h.azureml.taken_endpoint_names.add(EP)
    h.publisher.fail(PermanentError("403 wrong topic key"), RetryableError("still down"))
    run_id = accept(h)
    assert h.ledger.run(run_id).state is RunState.FAILED
    assert h.ledger.run(run_id).needs_attention
    assert step(h, run_id).published == 0
    run = step(h, run_id)
    assert run.published == len(run.timeline) and not run.needs_attention
    assert h.publisher.types_for(run_id) == ["Received", "RegisteringData", "Failed"]


def test_events_published_but_not_recorded_go_out_again_with_the_same_ids(h: Harness) -> None:
    run_id = accept(h)
    # Lease and save succeed; recording the publish loses a race.
    h.ledger.fail("replace", None, None, ConcurrencyConflict("raced"))
    h.azureml.jobs[run_id].script.replace("Completed")
    run = step(h, run_id)
    assert run.state is RunState.DEPLOYING and run.published == 3
    run = step(h, run_id)
    assert run.published == len(run.timeline)
    ids = [e.id for e in h.publisher.events]
    assert ids.count(f"{run_id}:3:DEPLOYING") == 2  # at least once; subscribers dedupe by id


# -- the timer alone ---------------------------------------------------------------------------


def test_timer_sweeps_alone_bring_every_run_to_an_end(h: Harness) -> None:
    h.configure(job_poll_seconds=60.0, deploy_poll_seconds=30.0, reconcile_concurrency=1)
    first = accept(h, "first.jsonl")
    second = accept(
        h, "second.jsonl", [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(9)]
    )
    for _ in range(40):
        h.clock.advance(60)
        result = sweep(h.services)
        assert result.failed == ()
        if result.active == 0:
            break
    states = {h.ledger.run(first).state, h.ledger.run(second).state}
    assert states == {RunState.LIVE}
    assert h.ledger.active() == []
    # One rollout at a time: the second one replaced the first.
    assert sum(h.azureml.endpoints[EP].traffic.values()) == 100
