"""The pure decision function: next state and actions from what was observed."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from shared.domain.azureml import DeploymentView, EndpointView, JobView, ModelView
from shared.domain.decide import Action, Observed, Policy, decide
from shared.domain.evaluation import Criteria
from shared.domain.runs import DatasetRef, Run, RunState
from shared.domain.smoke import PromptResult, SmokeOutcome

NOW = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
DATASET = DatasetRef("datasets", "a.jsonl", "https://acct/datasets/a.jsonl", '"0x1"', 123)
POLICY = Policy(endpoint_name="ep", job_poll_seconds=60, deploy_poll_seconds=30)
MODEL = ModelView("/models/ft-x/versions/1", "ft-x", "1")


def _run(state: RunState) -> Run:
    path = [
        RunState.REGISTERING_DATA,
        RunState.TRAINING,
        RunState.DEPLOYING,
        RunState.SMOKE_TESTING,
        RunState.EVALUATING,
        RunState.PROMOTING,
    ]
    run = Run.new("ft-x", DATASET, NOW)
    for step in path[: path.index(state) + 1]:
        run = run.moved_to(step, NOW)
    return dataclasses.replace(run, job_name="ft-x", endpoint="ep", deployment="ft-x")


def _endpoint(state: str = "Succeeded", /, **traffic: int) -> EndpointView:
    return EndpointView("ep", state, "https://ep/score", traffic)


def _deployment(state: str = "Succeeded") -> DeploymentView:
    return DeploymentView("ft-x", "ep", state, MODEL.id)


def _smoke(passed: bool) -> SmokeOutcome:
    result = PromptResult("p", "a", None, 200 if passed else 500, 10.0, {}, None, passed, "")
    return SmokeOutcome(passed, "" if passed else "prompt 1 of 1: HTTP 500", (result,))


# -- training -------------------------------------------------------------------------------


def test_registering_claims_the_endpoint_name_before_submitting() -> None:
    run = dataclasses.replace(_run(RunState.REGISTERING_DATA), endpoint="")
    decision = decide(run, Observed(job=None), POLICY)
    # The endpoint comes first: a name taken in the region fails before any GPU is spent.
    assert decision.actions == (Action.CREATE_ENDPOINT, Action.PREPARE_DATA, Action.SUBMIT_JOB)
    assert decision.state is RunState.TRAINING
    assert decision.changes.endpoint == "ep"


def test_registering_with_our_endpoint_already_there_only_submits() -> None:
    observed = Observed(job=None, endpoint=_endpoint("Creating"))
    decision = decide(_run(RunState.REGISTERING_DATA), observed, POLICY)
    assert decision.actions == (Action.PREPARE_DATA, Action.SUBMIT_JOB)


def test_an_existing_job_is_adopted_without_submitting_again() -> None:
    observed = Observed(JobView("ft-x", "Queued"))
    decision = decide(_run(RunState.REGISTERING_DATA), observed, POLICY)
    assert decision.actions == (Action.PREPARE_DATA,)  # no SUBMIT_JOB
    assert decision.state is RunState.TRAINING
    assert decision.changes.job_name == "ft-x"


def test_a_running_job_is_watched_at_the_poll_interval() -> None:
    decision = decide(_run(RunState.TRAINING), Observed(JobView("ft-x", "Running")), POLICY)
    assert decision.state is None and decision.recheck_seconds == 60
    assert decision.changes.job_status == "Running"


def test_job_outcomes_end_or_advance_the_run() -> None:
    training = _run(RunState.TRAINING)
    completed = decide(training, Observed(JobView("ft-x", "Completed")), POLICY)
    assert completed.state is RunState.DEPLOYING
    assert completed.changes.endpoint == "ep" and completed.changes.deployment == "ft-x"
    failed = decide(training, Observed(JobView("ft-x", "Failed", error="OOM")), POLICY)
    assert failed.state is RunState.TRAINING_FAILED and "OOM" in str(failed.changes.last_error)
    canceled = decide(training, Observed(JobView("ft-x", "Canceled")), POLICY)
    assert canceled.state is RunState.CANCELED


def test_not_responding_is_transient_not_a_failure() -> None:
    decision = decide(_run(RunState.TRAINING), Observed(JobView("ft-x", "NotResponding")), POLICY)
    assert decision.state is None and decision.actions == ()
    assert decision.recheck_seconds == 60 and decision.changes.job_status == "NotResponding"


def test_the_output_model_is_the_one_the_job_reports() -> None:
    job = JobView("ft-x", "Completed", output_model="ft-x-sanitised")
    decision = decide(_run(RunState.TRAINING), Observed(job), POLICY)
    assert decision.changes.model_name == "ft-x-sanitised"
    fallback = decide(_run(RunState.TRAINING), Observed(JobView("ft-x", "Completed")), POLICY)
    assert fallback.changes.model_name == "ft-x"


def test_training_past_its_deadline_cancels_the_job() -> None:
    training = _run(RunState.TRAINING)
    policy = dataclasses.replace(POLICY, training_deadline_seconds=3600)
    running = Observed(JobView("ft-x", "Running"))
    assert decide(training, running, policy, NOW + dt.timedelta(minutes=59)).state is None
    late = decide(training, running, policy, NOW + dt.timedelta(minutes=61))
    assert late.state is RunState.TRAINING_FAILED and late.actions == (Action.CANCEL_JOB,)
    assert "TRAINING_DEADLINE_HOURS" in str(late.changes.last_error)
    assert "job Running" in str(late.changes.last_error)


def test_deploying_past_its_deadline_fails_and_cleans_up() -> None:
    run = _run(RunState.DEPLOYING)
    policy = dataclasses.replace(POLICY, deploy_deadline_seconds=600)
    waiting = Observed(holder="ft-x")  # the model never shows up
    late = decide(run, waiting, policy, NOW + dt.timedelta(minutes=11))
    assert late.state is RunState.DEPLOY_FAILED
    assert late.actions == (Action.DELETE_DEPLOYMENT,)
    assert "DEPLOY_DEADLINE_MINUTES" in str(late.changes.last_error)
    assert "waiting for model ft-x to be registered" in str(late.changes.last_error)
    kept = dataclasses.replace(policy, keep_failed_deployment=True)
    assert decide(run, waiting, kept, NOW + dt.timedelta(minutes=11)).actions == ()
    # A step that acts (not only waits) is taken even when late.
    acting = decide(run, Observed(holder="ft-x", model=MODEL), policy, NOW + dt.timedelta(hours=1))
    assert acting.actions == (Action.CREATE_ENDPOINT,)


def test_promoting_past_its_deadline_fails_loudly() -> None:
    run = _run(RunState.PROMOTING)
    policy = dataclasses.replace(POLICY, deploy_deadline_seconds=600)
    stuck = Observed(endpoint=_endpoint("Updating"))
    late = decide(run, stuck, policy, NOW + dt.timedelta(minutes=11))
    assert late.state is RunState.FAILED and late.actions == ()
    assert "traffic update Updating" in str(late.changes.last_error)


def test_a_vanished_job_fails_the_run() -> None:
    decision = decide(_run(RunState.TRAINING), Observed(job=None), POLICY)
    assert decision.state is RunState.FAILED


# -- deploying --------------------------------------------------------------------------------


def test_deploying_waits_for_the_endpoint_lock() -> None:
    decision = decide(_run(RunState.DEPLOYING), Observed(holder="ft-other"), POLICY)
    assert decision.state is None and decision.actions == ()
    assert "ft-other" in str(decision.changes.activity)


def test_deploying_waits_for_the_model_then_creates_the_endpoint() -> None:
    run = _run(RunState.DEPLOYING)
    waiting = decide(run, Observed(holder="ft-x"), POLICY)
    assert waiting.actions == () and "model" in str(waiting.changes.activity)
    create = decide(run, Observed(holder="ft-x", model=MODEL), POLICY)
    assert create.actions == (Action.CREATE_ENDPOINT,)
    assert create.changes.model_id == MODEL.id and create.recheck_seconds == 30


def test_deploying_creates_our_deployment_once_the_endpoint_is_up() -> None:
    run = dataclasses.replace(_run(RunState.DEPLOYING), model_id=MODEL.id)
    creating = decide(run, Observed(holder="ft-x", endpoint=_endpoint("Creating")), POLICY)
    assert creating.actions == () and creating.state is None
    create = decide(run, Observed(holder="ft-x", endpoint=_endpoint()), POLICY)
    assert create.actions == (Action.CREATE_DEPLOYMENT,)


def test_a_deployment_up_at_zero_traffic_goes_to_smoke_testing_remembering_the_live_one() -> None:
    run = dataclasses.replace(_run(RunState.DEPLOYING), model_id=MODEL.id)
    observed = Observed(
        holder="ft-x", endpoint=_endpoint(**{"ft-old": 100}), deployment=_deployment()
    )
    decision = decide(run, observed, POLICY)
    assert decision.state is RunState.SMOKE_TESTING
    assert decision.changes.previous_deployments == {"ft-old": 100}


def test_a_failed_deployment_is_removed_and_the_run_ends_deploy_failed() -> None:
    run = dataclasses.replace(_run(RunState.DEPLOYING), model_id=MODEL.id)
    observed = Observed(
        holder="ft-x",
        endpoint=_endpoint(**{"ft-old": 100}),
        deployment=_deployment("Failed"),
        deployment_error="quota exceeded",
    )
    decision = decide(run, observed, POLICY)
    assert decision.state is RunState.DEPLOY_FAILED
    assert decision.actions == (Action.DELETE_DEPLOYMENT,)
    assert "quota exceeded" in decision.detail
    kept = decide(run, observed, dataclasses.replace(POLICY, keep_failed_deployment=True))
    assert kept.actions == ()


# -- smoke test and promotion -----------------------------------------------------------------


def test_a_passing_smoke_test_goes_on_to_the_evaluation() -> None:
    observed = Observed(endpoint=_endpoint(), deployment=_deployment(), smoke=_smoke(True))
    decision = decide(_run(RunState.SMOKE_TESTING), observed, POLICY)
    assert decision.actions == ()  # no traffic moves before the evaluation's verdict
    assert decision.state is RunState.EVALUATING
    assert (decision.changes.smoke or {})["passed"] is True


def test_a_failing_smoke_test_rolls_back_and_removes_the_new_deployment() -> None:
    observed = Observed(endpoint=_endpoint(), deployment=_deployment(), smoke=_smoke(False))
    decision = decide(_run(RunState.SMOKE_TESTING), observed, POLICY)
    assert decision.state is RunState.ROLLED_BACK
    assert decision.actions == (Action.DELETE_DEPLOYMENT,)
    assert "HTTP 500" in str(decision.changes.last_error)


def test_promotion_waits_for_the_traffic_then_retires_the_previous_deployment() -> None:
    run = dataclasses.replace(_run(RunState.PROMOTING), previous_deployments={"ft-old": 100})
    updating = decide(run, Observed(endpoint=_endpoint("Updating")), POLICY)
    assert updating.state is None and updating.recheck_seconds == 30
    live = decide(run, Observed(endpoint=_endpoint(**{"ft-x": 100, "ft-old": 0})), POLICY)
    assert live.state is RunState.LIVE and live.actions == (Action.DELETE_PREVIOUS,)
    keep = dataclasses.replace(POLICY, keep_previous_deployment=True)
    assert decide(run, Observed(endpoint=_endpoint(**{"ft-x": 100})), keep).actions == ()


def test_promotion_reissues_a_traffic_change_that_did_not_stick() -> None:
    run = _run(RunState.PROMOTING)
    decision = decide(run, Observed(endpoint=_endpoint(**{"ft-other": 100})), POLICY)
    assert decision.actions == (Action.SHIFT_TRAFFIC,) and decision.state is None


def test_terminal_runs_need_no_decision() -> None:
    live = _run(RunState.PROMOTING).moved_to(RunState.LIVE, NOW)
    assert decide(live, Observed(), POLICY).actions == ()


# -- the budget: AWAITING_APPROVAL -----------------------------------------------------------

BUDGET = dataclasses.replace(POLICY, max_run_cost=10.0, approval_deadline_seconds=24 * 3600.0)
EXPENSIVE = {"total": 42.5, "currency": "USD", "gpu_hours": 9.5, "missing": []}
APPROVAL = {"by": "alice", "at": "2026-11-29T10:00:00+00:00", "key": "0123456789ab"}


def _registering(plan: dict[str, Any], **fields: Any) -> Run:
    run = Run.new("ft-x", DATASET, NOW, sha256="a" * 64, plan=plan)
    run = run.moved_to(RunState.REGISTERING_DATA, NOW)
    return dataclasses.replace(run, **fields)


def _held(**fields: Any) -> Run:
    run = _registering(EXPENSIVE).moved_to(RunState.AWAITING_APPROVAL, NOW, "over budget")
    return dataclasses.replace(run, **fields)


def test_a_run_over_budget_waits_for_approval_with_nothing_claimed_or_spent() -> None:
    decision = decide(_registering(EXPENSIVE), Observed(job=None), BUDGET, NOW)
    assert decision.state is RunState.AWAITING_APPROVAL
    assert decision.actions == ()  # no endpoint claimed, no data asset, no job
    assert decision.changes.endpoint is None
    assert decision.detail == (
        "over budget: estimated 42.50 USD (9.5 GPU-hours to train), MAX_RUN_COST 10.00; "
        "waiting for approval (POST /api/runs/ft-x/approve)"
    )


def test_a_run_within_budget_or_without_a_limit_goes_straight_on() -> None:
    cheap = _registering({**EXPENSIVE, "total": 9.99})
    assert decide(cheap, Observed(job=None), BUDGET, NOW).state is RunState.TRAINING
    expensive = _registering(EXPENSIVE)
    assert decide(expensive, Observed(job=None), POLICY, NOW).state is RunState.TRAINING


def test_an_unknown_cost_is_held_when_there_is_a_limit() -> None:
    unknown = _registering({"total": None, "missing": ["TRAINING_TOKENS_PER_SECOND"]})
    decision = decide(unknown, Observed(job=None), BUDGET, NOW)
    assert decision.state is RunState.AWAITING_APPROVAL and decision.actions == ()
    assert "cost unknown (missing: TRAINING_TOKENS_PER_SECOND)" in decision.detail
    no_plan = _registering({})  # recorded before plans existed
    assert decide(no_plan, Observed(job=None), BUDGET, NOW).state is RunState.AWAITING_APPROVAL


def test_an_approved_run_over_budget_is_not_held_again() -> None:
    approved = _registering(EXPENSIVE, approval=APPROVAL)
    decision = decide(approved, Observed(job=None), BUDGET, NOW)
    assert decision.state is RunState.TRAINING
    assert decision.actions == (Action.CREATE_ENDPOINT, Action.PREPARE_DATA, Action.SUBMIT_JOB)


def test_a_job_already_submitted_is_adopted_not_held() -> None:
    # Spending already: holding the run would leave the job running unwatched.
    observed = Observed(JobView("ft-x", "Running"))
    decision = decide(_registering(EXPENSIVE), observed, BUDGET, NOW)
    assert decision.state is RunState.TRAINING and decision.actions == (Action.PREPARE_DATA,)


def test_a_waiting_run_looks_again_within_the_hour_and_does_nothing() -> None:
    later = NOW + dt.timedelta(hours=3)
    decision = decide(_held(), Observed(), BUDGET, later)
    assert decision.state is None and decision.actions == ()
    assert decision.recheck_seconds == 3600.0
    assert decision.changes.activity == "waiting for approval"
    # Close to the deadline, it looks again at the deadline.
    near = NOW + dt.timedelta(hours=23, minutes=50)
    assert decide(_held(), Observed(), BUDGET, near).recheck_seconds == 600.0


def test_an_approved_run_goes_back_to_registering_saying_who_and_when() -> None:
    decision = decide(_held(approval=APPROVAL), Observed(), BUDGET, NOW)
    assert decision.state is RunState.REGISTERING_DATA and decision.actions == ()
    assert decision.detail == "approved by alice at 2026-11-29T10:00:00+00:00"
    claimed = _held(approval={**APPROVAL, "by": "unknown", "claimed_by": "bob"})
    assert decide(claimed, Observed(), BUDGET, NOW).detail.startswith(
        "approved by unknown (says bob)"
    )


def test_a_raised_limit_lets_a_waiting_run_go_on() -> None:
    raised = dataclasses.replace(BUDGET, max_run_cost=50.0)
    decision = decide(_held(), Observed(), raised, NOW)
    assert decision.state is RunState.REGISTERING_DATA
    assert decision.detail.startswith("within budget now: estimated 42.50 USD")


def test_a_cancel_ends_a_waiting_run_with_nothing_to_stop() -> None:
    decision = decide(_held(cancel_requested=True), Observed(), BUDGET, NOW)
    assert decision.state is RunState.CANCELED and decision.actions == ()
    assert decision.detail == "canceled on request"


def test_a_run_not_approved_by_the_deadline_is_canceled() -> None:
    late = NOW + dt.timedelta(hours=24)
    decision = decide(_held(), Observed(), BUDGET, late)
    assert decision.state is RunState.CANCELED and decision.actions == ()
    assert decision.detail == (
        "gave up after 24h in AWAITING_APPROVAL (deadline 24h, APPROVAL_DEADLINE_HOURS): "
        "still waiting for approval; canceled, nothing was trained"
    )
    assert decision.changes.last_error and "APPROVAL_DEADLINE_HOURS" in decision.changes.last_error
    # Approved just in time: approval wins over the deadline.
    approved = decide(_held(approval=APPROVAL), Observed(), BUDGET, late)
    assert approved.state is RunState.REGISTERING_DATA


def test_a_retry_keeps_the_approval_and_is_not_held_again() -> None:
    failed = _registering(EXPENSIVE, approval=APPROVAL)
    failed = failed.moved_to(RunState.TRAINING, NOW).moved_to(RunState.TRAINING_FAILED, NOW)
    retried = failed.retried(NOW)
    assert retried.state is RunState.REGISTERING_DATA and retried.approval == APPROVAL
    assert decide(retried, Observed(job=None), BUDGET, NOW).state is RunState.TRAINING


def test_a_run_that_failed_while_waiting_retries_from_registering() -> None:
    failed = _held().moved_to(RunState.FAILED, NOW, "boom")
    assert failed.resume_state() is RunState.REGISTERING_DATA
    retried = failed.retried(NOW)
    assert decide(retried, Observed(job=None), BUDGET, NOW).state is RunState.AWAITING_APPROVAL


# -- evaluating -----------------------------------------------------------------------------


def _scored(challenger: float, champion: float | None, n: int = 25) -> dict[str, Any]:
    def entry(rouge: float) -> dict[str, Any]:
        return {"rouge_l": rouge, "exact_match": 0, "answer": "", "error": ""}

    results = [
        {"key": f"{i:016x}", "challenger": entry(challenger)}
        | ({} if champion is None else {"champion": entry(champion)})
        for i in range(n)
    ]
    return {
        "status": "scoring",
        "seed": 1,
        "challenger": {"deployment": "ft-x"},
        "champion": {} if champion is None else {"deployment": "old", "model": "m"},
        "results": results,
    }


def test_a_passing_smoke_test_names_who_the_run_is_judged_against() -> None:
    run = dataclasses.replace(_run(RunState.SMOKE_TESTING), previous_deployments={"old": 100})
    observed = Observed(endpoint=_endpoint(), deployment=_deployment(), smoke=_smoke(True))
    assert "evaluating against champion old" in decide(run, observed, POLICY).detail
    first = decide(_run(RunState.SMOKE_TESTING), observed, POLICY)
    assert "evaluating against the floor (first model)" in first.detail


def test_unfinished_scoring_is_recorded_and_looked_at_again_after_retry_after() -> None:
    progress = _scored(0.8, 0.8, n=2)
    progress["results"][1]["champion"] = {"tries": 1, "status": 429, "retry_after": 2.0}
    progress["retry_after"] = 2.0
    observed = Observed(endpoint=_endpoint(), deployment=_deployment(), evaluation=progress)
    decision = decide(_run(RunState.EVALUATING), observed, POLICY)
    assert decision.state is None and decision.actions == ()
    assert decision.changes.evaluation == progress
    assert decision.changes.activity == "evaluating: 3 of 4"
    assert decision.recheck_seconds == 2.0


def test_a_challenger_no_worse_than_the_champion_is_promoted() -> None:
    observed = Observed(
        endpoint=_endpoint(), deployment=_deployment(), evaluation=_scored(0.79, 0.8)
    )
    decision = decide(_run(RunState.EVALUATING), observed, POLICY)
    assert decision.state is RunState.PROMOTING
    assert decision.actions == (Action.SHIFT_TRAFFIC,)
    record = decision.changes.evaluation or {}
    assert record["verdict"] == "promote" and record["ci"] == [-0.01, -0.01]
    assert decision.detail.startswith("evaluation: challenger 0.79 vs champion 0.80")


def test_a_worse_challenger_is_rolled_back_with_both_scores() -> None:
    observed = Observed(
        endpoint=_endpoint(), deployment=_deployment(), evaluation=_scored(0.6, 0.8)
    )
    decision = decide(_run(RunState.EVALUATING), observed, POLICY)
    assert decision.state is RunState.ROLLED_BACK
    assert decision.actions == (Action.DELETE_DEPLOYMENT,)
    record = decision.changes.evaluation or {}
    assert (record["challenger"]["rouge_l"], record["champion"]["rouge_l"]) == (0.6, 0.8)
    assert "challenger 0.60 vs champion 0.80" in (decision.changes.last_error or "")
    kept = decide(
        _run(RunState.EVALUATING),
        observed,
        dataclasses.replace(POLICY, keep_failed_deployment=True),
    )
    assert kept.state is RunState.ROLLED_BACK and kept.actions == ()


def test_a_first_model_below_the_floor_is_rolled_back() -> None:
    policy = dataclasses.replace(POLICY, evaluation=Criteria(floor=0.5))
    low = Observed(endpoint=_endpoint(), deployment=_deployment(), evaluation=_scored(0.37, None))
    decision = decide(_run(RunState.EVALUATING), low, policy)
    assert decision.state is RunState.ROLLED_BACK
    assert "below the floor 0.50" in decision.detail
    high = Observed(endpoint=_endpoint(), deployment=_deployment(), evaluation=_scored(0.7, None))
    assert decide(_run(RunState.EVALUATING), high, policy).state is RunState.PROMOTING


def test_a_deployment_gone_while_evaluated_is_a_failed_deployment() -> None:
    decision = decide(_run(RunState.EVALUATING), Observed(endpoint=_endpoint()), POLICY)
    assert decision.state is RunState.DEPLOY_FAILED
    assert "gone while being evaluated" in decision.detail


def test_evaluating_can_be_cancelled_and_has_a_deadline() -> None:
    run = dataclasses.replace(_run(RunState.EVALUATING), cancel_requested=True)
    cancelled = decide(run, Observed(endpoint=_endpoint(), deployment=_deployment()), POLICY)
    assert cancelled.state is RunState.CANCELED
    assert cancelled.actions == (Action.DELETE_DEPLOYMENT,)
    late = NOW + dt.timedelta(seconds=POLICY.deploy_deadline_seconds + 1)
    waiting = Observed(endpoint=_endpoint(), deployment=_deployment())
    ended = decide(_run(RunState.EVALUATING), waiting, POLICY, late)
    assert ended.state is RunState.ROLLED_BACK
    assert "DEPLOY_DEADLINE_MINUTES" in ended.detail
    assert ended.actions == (Action.DELETE_DEPLOYMENT,)
