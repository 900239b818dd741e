"""The pure decision function: next state and actions from what was observed."""

from __future__ import annotations

import datetime as dt

from shared.azureml import JobView
from shared.decide import Action, Observed, Policy, decide
from shared.runs import DatasetRef, Run, RunState

NOW = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
DATASET = DatasetRef("datasets", "a.jsonl", "https://acct/datasets/a.jsonl", '"0x1"', 123)


def _run(state: RunState) -> Run:
    run = Run.new("ft-x", DATASET, NOW).moved_to(RunState.REGISTERING_DATA, NOW)
    if state is RunState.TRAINING:
        run = run.moved_to(RunState.TRAINING, NOW, job_name="ft-x")
    return run


def test_registering_without_a_job_prepares_data_then_submits() -> None:
    decision = decide(_run(RunState.REGISTERING_DATA), Observed(job=None), NOW)
    assert decision.actions == (Action.PREPARE_DATA, Action.SUBMIT_JOB)
    assert decision.state is RunState.TRAINING


def test_an_existing_job_is_adopted_without_submitting_again() -> None:
    decision = decide(_run(RunState.REGISTERING_DATA), Observed(JobView("ft-x", "Queued")), NOW)
    assert decision.actions == ()
    assert decision.state is RunState.TRAINING
    assert decision.changes["job_name"] == "ft-x"


def test_a_running_job_is_watched_at_the_poll_interval() -> None:
    decision = decide(
        _run(RunState.TRAINING), Observed(JobView("ft-x", "Running")), NOW, Policy(30)
    )
    assert decision.state is None and decision.recheck_seconds == 30
    assert decision.changes == {"job_status": "Running"}


def test_job_outcomes_end_or_advance_the_run() -> None:
    training = _run(RunState.TRAINING)
    completed = decide(training, Observed(JobView("ft-x", "Completed")), NOW)
    assert completed.state is RunState.DEPLOYING
    failed = decide(training, Observed(JobView("ft-x", "Failed", error="OOM")), NOW)
    assert failed.state is RunState.TRAINING_FAILED and failed.changes["last_error"] == "OOM"
    canceled = decide(training, Observed(JobView("ft-x", "Canceled")), NOW)
    assert canceled.state is RunState.CANCELED


def test_a_vanished_job_fails_the_run() -> None:
    decision = decide(_run(RunState.TRAINING), Observed(job=None), NOW)
    assert decision.state is RunState.FAILED
