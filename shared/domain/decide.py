"""The one pure decision: given a run and what was just observed, what next.

``decide(run, observed, policy)`` returns a ``Decision``: the actions to take
(idempotent, carried out by the reconciler through the ports) and the state to
move to once they succeed, or, while waiting on Azure, what the run is doing
and when to look again. No I/O here; this is where most unit tests live.

The rollout, state by state::

    REGISTERING_DATA  job found (earlier attempt): adopt   -> TRAINING (data re-checked)
                      plan over MAX_RUN_COST (or its cost
                      unknown), not approved: nothing done -> AWAITING_APPROVAL
                      no job yet: claim the endpoint name (created if missing, so
                      a name taken in the region fails here, before any GPU is
                      spent), prepare data, submit         -> TRAINING
    AWAITING_APPROVAL approved (or within the limit now)   -> REGISTERING_DATA
                      past APPROVAL_DEADLINE_HOURS         -> CANCELED
    TRAINING          job running: watch; Completed        -> DEPLOYING
                      Failed / Canceled                    -> TRAINING_FAILED / CANCELED
                      past the training deadline: cancel   -> TRAINING_FAILED
    DEPLOYING         wait for: the endpoint's rollout lock, the output model
                      (named as the job reports it), the endpoint, our
                      deployment (created at 0% traffic);
                      deployment Succeeded                 -> SMOKE_TESTING
                      endpoint or deployment Failed, or
                      past the deploy deadline             -> DEPLOY_FAILED (ours removed)
    SMOKE_TESTING     smoke passed                         -> EVALUATING
                      smoke failed: remove ours            -> ROLLED_BACK
    EVALUATING        answers so far recorded, until all are in; then
                      judged (``evaluation.judge``):
                      promote: shift traffic               -> PROMOTING
                      roll back: remove ours               -> ROLLED_BACK
    PROMOTING         traffic applied: retire previous,
                      record what it replaced              -> LIVE
                      traffic stuck past the deadline      -> FAILED

A rollback run (``kind == "rollback"``) enters at DEPLOYING with the model to put
back, and a deployment: its own, or the one it adopted (kept by
KEEP_PREVIOUS_DEPLOYMENT), which nothing here ever removes. With the rollout lock
held, it ends CANCELED if the run it rolls back no longer serves. It is not
judged against the model it removes: a passed smoke test promotes it.

A cancel request (until traffic starts moving) stops the job or removes the
run's deployment and ends the run CANCELED. Deadlines count from the moment
the run entered its state (``Run.state_since``); ``now`` is the only clock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.domain.azureml import (
    JOB_ACTIVE,
    JOB_CANCELED,
    JOB_FAILED,
    PROVISIONING,
    SUCCEEDED,
    DeploymentView,
    EndpointView,
    JobView,
    ModelView,
)
from shared.domain.evaluation import Criteria, answered, complete, judge
from shared.domain.plan import describe, over_budget
from shared.domain.runs import CANCELLABLE, ROLLBACK, Run, RunState
from shared.domain.smoke import SmokeOutcome


class Action(StrEnum):
    PREPARE_DATA = "prepare_data"  # split the upload (or reuse the parts), register assets
    SUBMIT_JOB = "submit_job"
    CREATE_ENDPOINT = "create_endpoint"
    CREATE_DEPLOYMENT = "create_deployment"  # the run's own, at 0% traffic
    SHIFT_TRAFFIC = "shift_traffic"  # 100% to the run's deployment, 0% to the rest
    DELETE_DEPLOYMENT = "delete_deployment"  # the run's own (failed or rolled back)
    DELETE_PREVIOUS = "delete_previous"  # the deployments that served before
    CANCEL_JOB = "cancel_job"


@dataclass(frozen=True)
class Observed:
    """What the reconciler saw just now (None: not looked up, or absent)."""

    job: JobView | None = None
    model: ModelView | None = None
    endpoint: EndpointView | None = None
    deployment: DeploymentView | None = None  # the run's own
    deployment_error: str = ""  # the service's reason, when our deployment Failed
    holder: str | None = None  # run holding the endpoint's rollout lock
    smoke: SmokeOutcome | None = None
    evaluation: Mapping[str, Any] | None = None  # the progress record, after a scoring step
    champion: DeploymentView | None = None  # ``champion(run)``, looked up before LIVE


@dataclass(frozen=True)
class Policy:
    endpoint_name: str = "finetune-autopilot"
    job_poll_seconds: float = 60.0
    deploy_poll_seconds: float = 30.0
    keep_previous_deployment: bool = False
    keep_failed_deployment: bool = False
    training_deadline_seconds: float = 72 * 3600.0
    deploy_deadline_seconds: float = 180 * 60.0
    max_run_cost: float | None = None  # None: never hold a run for approval
    approval_deadline_seconds: float = 168 * 3600.0
    evaluation: Criteria = field(default_factory=Criteria)


@dataclass(frozen=True)
class RunPatch:
    """The run fields a decision sets; None leaves a field as it is."""

    activity: str | None = None
    job_name: str | None = None
    job_status: str | None = None
    endpoint: str | None = None
    deployment: str | None = None
    model_name: str | None = None
    model_id: str | None = None
    previous_deployments: Mapping[str, int] | None = None
    smoke: Mapping[str, Any] | None = None
    evaluation: Mapping[str, Any] | None = None
    replaced: Mapping[str, Any] | None = None
    last_error: str | None = None

    def fields(self) -> dict[str, Any]:
        """The fields to set, for ``Run.moved_to`` / ``Run.updated``."""
        return {
            f.name: v for f in dataclasses.fields(self) if (v := getattr(self, f.name)) is not None
        }


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...] = ()
    state: RunState | None = None  # move here once the actions succeeded
    detail: str = ""
    changes: RunPatch = field(default_factory=lambda: RunPatch())
    recheck_seconds: float | None = None  # when staying put: next look


DEFAULT_POLICY = Policy()


def decide(
    run: Run,
    observed: Observed,
    policy: Policy = DEFAULT_POLICY,
    now: dt.datetime | None = None,
) -> Decision:
    """The next step for ``run``; ``now`` (default: the run's last update) for deadlines."""
    if run.cancel_requested and run.state in CANCELLABLE:
        return _cancel(run, observed)
    if run.state is RunState.REGISTERING_DATA:
        return _registering(run, observed, policy)
    waited = ((now or run.updated_at) - run.state_since).total_seconds()
    if run.state is RunState.AWAITING_APPROVAL:
        decision = _awaiting_approval(run, policy, waited)
        return _past_deadline(run, decision, waited, policy)
    if run.state is RunState.TRAINING:
        decision = _training(run, observed, policy)
        return _past_deadline(run, decision, waited, policy)
    if run.state is RunState.DEPLOYING:
        decision = _deploying(run, observed, policy)
    elif run.state is RunState.SMOKE_TESTING:
        decision = _smoke_testing(run, observed, policy)
    elif run.state is RunState.EVALUATING:
        decision = _evaluating(run, observed, policy)
    elif run.state is RunState.PROMOTING:
        decision = _promoting(run, observed, policy)
    else:
        return Decision()  # terminal: nothing to do
    return _past_deadline(run, decision, waited, policy)


# Longest quiet wait for an approval: the timer looks again at most this late.
APPROVAL_RECHECK_SECONDS = 3600.0

_DEADLINE_SETTING = {
    RunState.AWAITING_APPROVAL: ("APPROVAL_DEADLINE_HOURS", 3600.0, "h"),
    RunState.TRAINING: ("TRAINING_DEADLINE_HOURS", 3600.0, "h"),
    RunState.DEPLOYING: ("DEPLOY_DEADLINE_MINUTES", 60.0, " min"),
    RunState.SMOKE_TESTING: ("DEPLOY_DEADLINE_MINUTES", 60.0, " min"),
    RunState.EVALUATING: ("DEPLOY_DEADLINE_MINUTES", 60.0, " min"),
    RunState.PROMOTING: ("DEPLOY_DEADLINE_MINUTES", 60.0, " min"),
}


def _past_deadline(run: Run, decision: Decision, waited: float, policy: Policy) -> Decision:
    """``decision``, unless it only waits and the state's deadline has passed: then end
    the run, saying what it was waiting for, and clean up what it started."""
    deadline = _deadline_seconds(run.state, policy)
    if decision.state is not None or decision.actions or waited < deadline:
        return decision
    setting, unit_seconds, unit = _DEADLINE_SETTING[run.state]
    waiting_on = decision.changes.activity or run.activity or run.state.value
    reason = (
        f"gave up after {waited / unit_seconds:.4g}{unit} in {run.state.value} "
        f"(deadline {deadline / unit_seconds:.4g}{unit}, {setting}): still {waiting_on}"
    )
    if run.state is RunState.AWAITING_APPROVAL:
        # Nothing was started while it waited: nothing to clean up.
        return Decision(
            state=RunState.CANCELED,
            detail=reason + "; canceled, nothing was trained",
            changes=RunPatch(last_error=reason, activity=""),
        )
    if run.state is RunState.TRAINING:
        return Decision(
            actions=(Action.CANCEL_JOB,),
            state=RunState.TRAINING_FAILED,
            detail=reason + f"; job {run.job_name or run.run_id} cancelled",
            changes=RunPatch(last_error=reason, activity=""),
        )
    if run.state is RunState.PROMOTING:
        # Traffic may be partly moved: nothing to undo safely; say so loudly.
        return Decision(state=RunState.FAILED, detail=reason, changes=RunPatch(last_error=reason))
    state = RunState.DEPLOY_FAILED if run.state is RunState.DEPLOYING else RunState.ROLLED_BACK
    return Decision(
        actions=_remove_ours(run, policy),
        state=state,
        detail=reason,
        changes=RunPatch(last_error=reason, activity=""),
    )


def champion(run: Run) -> str:
    """The deployment that served most before ``run``'s rollout ("" if none): the one
    a LIVE run replaced, and the one its rollback puts back."""
    previous = run.previous_deployments
    return max(previous, key=lambda name: (previous[name], name)) if previous else ""


def _remove_ours(run: Run, policy: Policy) -> tuple[Action, ...]:
    """DELETE_DEPLOYMENT for a failed or cancelled rollout, unless KEEP_FAILED_DEPLOYMENT
    or the deployment is not the run's own (a rollback run's adopted one: never)."""
    if policy.keep_failed_deployment or not run.owns_deployment:
        return ()
    return (Action.DELETE_DEPLOYMENT,)


def _deadline_seconds(state: RunState, policy: Policy) -> float:
    if state is RunState.AWAITING_APPROVAL:
        return policy.approval_deadline_seconds
    if state is RunState.TRAINING:
        return policy.training_deadline_seconds
    return policy.deploy_deadline_seconds


def _cancel(run: Run, observed: Observed) -> Decision:
    """Stop what the run has started (its job, or its deployment at 0%) and end it."""
    actions: tuple[Action, ...] = ()
    if observed.job is not None and observed.job.status in JOB_ACTIVE:
        actions = (Action.CANCEL_JOB,)
    elif observed.deployment is not None and run.owns_deployment:
        actions = (Action.DELETE_DEPLOYMENT,)
    stopped = {
        Action.CANCEL_JOB: f"; job {run.job_name or run.run_id} cancelled",
        Action.DELETE_DEPLOYMENT: f"; deployment {run.deployment} removed",
    }
    detail = "canceled on request" + "".join(stopped[a] for a in actions)
    return Decision(actions=actions, state=RunState.CANCELED, detail=detail)


def _wait(
    activity: str,
    seconds: float,
    *,
    job_status: str | None = None,
    model_id: str | None = None,
) -> Decision:
    """Stay put, saying what the run waits on, and look again in ``seconds``."""
    patch = RunPatch(activity=activity, job_status=job_status, model_id=model_id)
    return Decision(changes=patch, recheck_seconds=seconds)


def _registering(run: Run, observed: Observed, policy: Policy) -> Decision:
    job = observed.job
    endpoint = run.endpoint or policy.endpoint_name
    if job is not None:
        # The job exists (submitted before a crash, or by a concurrent invocation).
        # Preparing the data again is cheap and idempotent (parts and assets are
        # found, not rebuilt) and records the split the smoke test reads later.
        return Decision(
            actions=(Action.PREPARE_DATA,),
            state=RunState.TRAINING,
            detail=f"adopted existing job {job.name} ({job.status})",
            changes=RunPatch(
                job_name=job.name,
                job_status=job.status,
                activity="training",
                endpoint=endpoint,
            ),
        )
    if over_budget(run.plan, policy.max_run_cost) and not run.approval:
        # Before anything is created or spent: no endpoint claimed, no data asset,
        # no job. (A job found above is adopted instead: it is spending already.)
        return Decision(
            state=RunState.AWAITING_APPROVAL,
            detail=f"over budget: {describe(run.plan, policy.max_run_cost)}; waiting for approval "
            f"(POST /api/runs/{run.run_id}/approve)",
            changes=RunPatch(activity="waiting for approval"),
        )
    # Endpoint names are unique per region across all customers: claim ours now
    # (an endpoint without deployments costs nothing), so a taken name fails the
    # run before the job is submitted, not after hours of training.
    claim = (Action.CREATE_ENDPOINT,) if observed.endpoint is None else ()
    return Decision(
        actions=(*claim, Action.PREPARE_DATA, Action.SUBMIT_JOB),
        state=RunState.TRAINING,
        detail=(f"endpoint {endpoint} claimed; " if claim else "")
        + "data assets registered, fine-tuning job submitted",
        changes=RunPatch(activity="training", endpoint=endpoint),
    )


def _awaiting_approval(run: Run, policy: Policy, waited: float) -> Decision:
    """Go on once approved (or once the plan fits a raised or removed limit); else
    wait, looking again at the deadline or within the hour, whichever is sooner
    (an approval reconciles the run at once; this is the safety net)."""
    approval = run.approval
    if approval:
        by = approval.get("by", "unknown")
        claimed = approval.get("claimed_by")
        who = f"{by} (says {claimed})" if claimed and claimed != by else str(by)
        return Decision(
            state=RunState.REGISTERING_DATA,
            detail=f"approved by {who} at {approval.get('at', '?')}",
            changes=RunPatch(activity="registering data"),
        )
    if not over_budget(run.plan, policy.max_run_cost):
        return Decision(
            state=RunState.REGISTERING_DATA,
            detail=f"within budget now: {describe(run.plan, policy.max_run_cost)}",
            changes=RunPatch(activity="registering data"),
        )
    left = policy.approval_deadline_seconds - waited
    return _wait("waiting for approval", max(0.0, min(APPROVAL_RECHECK_SECONDS, left)))


def _training(run: Run, observed: Observed, policy: Policy) -> Decision:
    job = observed.job
    if job is None:
        return Decision(
            state=RunState.FAILED,
            detail=f"job {run.job_name} no longer exists in the workspace",
            changes=RunPatch(last_error=f"job {run.job_name} not found"),
        )
    if job.status == "Completed":
        model = job.output_model or run.run_id
        return Decision(
            state=RunState.DEPLOYING,
            detail=f"job {job.name} completed; output model {model}",
            changes=RunPatch(
                job_status=job.status,
                activity="deploying",
                endpoint=run.endpoint or policy.endpoint_name,
                deployment=run.deployment or run.run_id,
                model_name=model,
            ),
        )
    if job.status in JOB_FAILED:
        reason = f"job {job.name} {job.status}" + (f": {job.error}" if job.error else "")
        return Decision(
            state=RunState.TRAINING_FAILED,
            detail=reason,
            changes=RunPatch(job_status=job.status, last_error=reason),
        )
    if job.status in JOB_CANCELED:
        return Decision(
            state=RunState.CANCELED,
            detail=f"job {job.name} was canceled",
            changes=RunPatch(job_status=job.status),
        )
    if job.status not in JOB_ACTIVE:
        # Paused or a status this app does not know: keep watching, say so.
        return _wait(f"job is {job.status}", policy.job_poll_seconds, job_status=job.status)
    return _wait(f"job {job.status}", policy.job_poll_seconds, job_status=job.status)


def _deploying(run: Run, observed: Observed, policy: Policy) -> Decision:
    poll = policy.deploy_poll_seconds
    if observed.holder != run.run_id:
        return _wait(f"waiting for run {observed.holder} to finish its rollout", poll)
    model_id = run.model_id or (observed.model.id if observed.model else "")
    if not model_id:
        return _wait(f"waiting for model {run.model_name or run.run_id} to be registered", poll)
    endpoint = observed.endpoint
    if endpoint is None:
        return Decision(
            actions=(Action.CREATE_ENDPOINT,),
            changes=RunPatch(activity="creating endpoint", model_id=model_id),
            recheck_seconds=poll,
        )
    if endpoint.provisioning_state != SUCCEEDED:
        if endpoint.provisioning_state in PROVISIONING:
            return _wait(f"endpoint {endpoint.provisioning_state}", poll, model_id=model_id)
        return Decision(
            state=RunState.DEPLOY_FAILED,
            detail=f"endpoint {endpoint.name} is {endpoint.provisioning_state}",
            changes=RunPatch(last_error=f"endpoint {endpoint.name} {endpoint.provisioning_state}"),
        )
    if run.kind == ROLLBACK:
        superseded = _superseded(run, observed, endpoint)
        if superseded is not None:
            return superseded
    deployment = observed.deployment
    if deployment is None and run.adopted_deployment and not run.owns_deployment:
        # The deployment it was to reuse is gone: make one of its own, of the same model.
        return Decision(
            changes=RunPatch(
                deployment=run.run_id,
                activity=f"deployment {run.adopted_deployment} is gone: deploying the model anew",
            ),
            recheck_seconds=0.0,
        )
    if deployment is None:
        return Decision(
            actions=(Action.CREATE_DEPLOYMENT,),
            changes=RunPatch(activity="creating deployment at 0% traffic", model_id=model_id),
            recheck_seconds=poll,
        )
    if deployment.provisioning_state in PROVISIONING:
        return _wait(f"deployment {deployment.provisioning_state}", poll, model_id=model_id)
    if deployment.provisioning_state != SUCCEEDED:
        reason = f"deployment {deployment.name} {deployment.provisioning_state}" + (
            f": {observed.deployment_error}" if observed.deployment_error else ""
        )
        return Decision(
            actions=_remove_ours(run, policy),
            state=RunState.DEPLOY_FAILED,
            detail=reason,
            changes=RunPatch(last_error=reason, model_id=model_id),
        )
    previous = {n: w for n, w in endpoint.traffic.items() if n != deployment.name and w > 0}
    return Decision(
        state=RunState.SMOKE_TESTING,
        detail=f"deployment {deployment.name} is up at 0% traffic",
        changes=RunPatch(
            previous_deployments=previous, activity="smoke testing", model_id=model_id
        ),
    )


def _smoke_testing(run: Run, observed: Observed, policy: Policy) -> Decision:
    deployment, smoke = observed.deployment, observed.smoke
    if deployment is None or deployment.provisioning_state != SUCCEEDED:
        state = deployment.provisioning_state if deployment else "gone"
        reason = f"deployment {run.deployment} is {state} before its smoke test"
        return Decision(
            state=RunState.DEPLOY_FAILED, detail=reason, changes=RunPatch(last_error=reason)
        )
    if smoke is None:
        return _wait("smoke testing", policy.deploy_poll_seconds)
    if smoke.passed and run.kind == ROLLBACK:
        # Not judged against the model it removes (no evaluation): promoted at once.
        return Decision(
            actions=(Action.SHIFT_TRAFFIC,),
            state=RunState.PROMOTING,
            detail=f"smoke test passed ({len(smoke.results)} prompts); restoring model "
            f"{run.model_id}: shifting traffic",
            changes=RunPatch(smoke=smoke.to_dict(), activity="shifting traffic"),
        )
    if smoke.passed:
        against = champion(run)
        return Decision(
            state=RunState.EVALUATING,
            detail=f"smoke test passed ({len(smoke.results)} prompts); evaluating against "
            + (f"champion {against}" if against else "the floor (first model)"),
            changes=RunPatch(smoke=smoke.to_dict(), evaluation={}, activity="evaluating"),
        )
    return Decision(
        actions=_remove_ours(run, policy),
        state=RunState.ROLLED_BACK,
        detail=f"smoke test failed: {smoke.reason}",
        changes=RunPatch(smoke=smoke.to_dict(), last_error=f"smoke test failed: {smoke.reason}"),
    )


def _evaluating(run: Run, observed: Observed, policy: Policy) -> Decision:
    deployment, progress = observed.deployment, observed.evaluation
    if deployment is None or deployment.provisioning_state != SUCCEEDED:
        state = deployment.provisioning_state if deployment else "gone"
        reason = f"deployment {run.deployment} is {state} while being evaluated"
        return Decision(
            state=RunState.DEPLOY_FAILED, detail=reason, changes=RunPatch(last_error=reason)
        )
    if progress is None:
        return _wait("evaluating", policy.deploy_poll_seconds)
    if not complete(progress):
        done, wanted = answered(progress)
        # Throttled answers are asked again no sooner than the service said.
        return Decision(
            changes=RunPatch(evaluation=progress, activity=f"evaluating: {done} of {wanted}"),
            recheck_seconds=float(progress.get("retry_after") or 0.0),
        )
    record = judge(progress, policy.evaluation)
    detail = f"evaluation: {record['reason']}"
    if record["verdict"] == "promote":
        return Decision(
            actions=(Action.SHIFT_TRAFFIC,),
            state=RunState.PROMOTING,
            detail=detail + "; shifting traffic",
            changes=RunPatch(evaluation=record, activity="shifting traffic"),
        )
    return Decision(
        actions=_remove_ours(run, policy),
        state=RunState.ROLLED_BACK,
        detail=detail,
        changes=RunPatch(evaluation=record, last_error=detail),
    )


def _promoting(run: Run, observed: Observed, policy: Policy) -> Decision:
    endpoint = observed.endpoint
    poll = policy.deploy_poll_seconds
    if endpoint is None or endpoint.provisioning_state not in (SUCCEEDED, *PROVISIONING):
        state = endpoint.provisioning_state if endpoint else "gone"
        reason = f"endpoint {run.endpoint} is {state} while shifting traffic"
        return Decision(
            state=RunState.ROLLED_BACK, detail=reason, changes=RunPatch(last_error=reason)
        )
    if endpoint.provisioning_state != SUCCEEDED:
        return _wait(f"traffic update {endpoint.provisioning_state}", poll)
    if endpoint.traffic.get(run.deployment, 0) != 100:
        return Decision(
            actions=(Action.SHIFT_TRAFFIC,),
            changes=RunPatch(activity="shifting traffic (again)"),
            recheck_seconds=poll,
        )
    actions = (
        ()
        if policy.keep_previous_deployment or not run.previous_deployments
        else (Action.DELETE_PREVIOUS,)
    )
    retired = ", ".join(run.previous_deployments) or "none"
    return Decision(
        actions=actions,
        state=RunState.LIVE,
        detail=f"serving 100% of {endpoint.name}; previous: {retired}",
        changes=RunPatch(activity="serving", replaced=_replaced(run, observed)),
    )


def _replaced(run: Run, observed: Observed) -> dict[str, Any]:
    """What a run going LIVE replaced: the champion and its model ("" if it was not
    found: a rollback then says so); empty for the first model on the endpoint."""
    name = champion(run)
    if not name:
        return {}
    seen = observed.champion
    model = seen.model if seen is not None and seen.name == name else ""
    return {"deployment": name, "model": model, "traffic": run.previous_deployments[name]}


def _superseded(run: Run, observed: Observed, endpoint: EndpointView) -> Decision | None:
    """For a rollback run holding the rollout lock: CANCELED if the deployment it rolls
    back serves nothing any more (another rollout replaced it meanwhile, or someone
    moved the traffic), removing its own deployment if it made one; else None."""
    removes = str(run.config.get("removes", ""))
    traffic = endpoint.traffic
    if not removes or traffic.get(removes, 0) > 0 or traffic.get(run.deployment, 0) > 0:
        return None
    serving = ", ".join(f"{n} {w}%" for n, w in traffic.items() if w > 0) or "nothing"
    mine = observed.deployment is not None and run.owns_deployment
    actions = (Action.DELETE_DEPLOYMENT,) if mine else ()
    detail = (
        f"not needed any more: {removes} no longer serves {endpoint.name} (serving: "
        f"{serving}); nothing rolled back"
    )
    return Decision(
        actions=actions, state=RunState.CANCELED, detail=detail, changes=RunPatch(activity="")
    )
