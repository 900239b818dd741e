"""Reconcile: gather what Azure shows, decide (pure), act through the ports, persist.

``reconcile(services, run_id)`` is idempotent and safe to call from any
trigger at any time: it moves the run forward from whatever state it is in.
``reconcile_listed(services, stored)`` is the timer sweep's form of it, for a
run just listed by ``Ledger.active``: it looks before it leases (below).

- **One at a time.** The run is leased (a compare-and-swap write of an owner
  and an expiry) before anything is done; a run leased by another live
  reconcile is left alone. A lost race is not an error: the run is picked up
  again later. The lease is short (15 s) and renewed by a heartbeat while the
  step works, so a slow step keeps it and a crashed one frees the run within
  seconds; the protocol and its invariants are in ``shared/pipeline/lease.py``.
- **Look first, lease only to act.** Most sweeps find a training job still
  running: nothing to do and nothing new to record. For a run whose look has
  no side effect (``observation.READ_ONLY_LOOKS``: a job or an endpoint read),
  ``reconcile_listed`` reads Azure without a lease and decides. A decision
  that only waits and changes nothing on the run writes nothing; one that only
  records something new (a job gone from Queued to Running) is saved with one
  compare-and-swap on the version listed, no lease (no action is taken, and a
  run changed meanwhile is left to its next look). Anything else (an action,
  a state change, an error) takes the lease over the version listed and
  carries out a whole step as ``reconcile`` does, looking again under the
  lease, so nothing is done on a look taken before the lease (an error is
  recorded as it was met: the service is not asked again at once).
  Unrecorded looks leave ``next_check_at`` where the last change put it, so
  the run stays due and the next sweep looks again: the timer's period is the
  floor of the polling interval. A decision to look again later than
  ``QUIET_RECHECK_SECONDS`` (a poll interval longer than the default timer
  period) is recorded, so that longer wait is honoured.
- **Error families.** A ``RetryableError`` leaves the run where it was with a
  next-check time (exponential backoff with jitter, at least the service's
  ``Retry-After``); a ``PermanentError`` ends the run FAILED (DEPLOY_FAILED
  while deploying) with the message. Any other exception (a bug) is recorded
  like a retryable one, so the lease is always given back; after
  ``MAX_ATTEMPTS`` failed tries of one step the run ends FAILED.
- **Telemetry.** Each call is one span, ``reconcile``, carrying the run id (so
  do every span and log record inside it), the state it found, the actions
  decided and the state it left; each saved step sends its state changes,
  time in the states left and smoke and evaluation outcomes to the metrics
  (``shared.domain.telemetry``).
- **Events after the fact.** Lifecycle events for new timeline entries are
  published after the run is saved; a failed publish is kept (``published``)
  and retried by the next reconcile, never failing the run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import uuid
from collections.abc import Callable
from typing import Any

from shared.domain.azureml import DeploymentSpec, JobSpec
from shared.domain.decide import Action, Decision, Observed, Policy, decide
from shared.domain.errors import AutopilotError, ConcurrencyConflict, PermanentError, RetryableError
from shared.domain.evaluation import Criteria
from shared.domain.events import events_for
from shared.domain.ledger import StoredRun
from shared.domain.ports import Services
from shared.domain.runs import Run, RunState
from shared.domain.telemetry import measure
from shared.pipeline import lease as leases
from shared.pipeline.observation import READ_ONLY_LOOKS, gather
from shared.pipeline.splits import prepare_parts

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 600.0
# An unchanged look is not recorded when its next look is due within this (the
# default timer period): the next sweep looks again anyway.
QUIET_RECHECK_SECONDS = 60.0

Observe = Callable[[], Observed]


def backoff_seconds(attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Exponential backoff with +-20% jitter, never sooner than ``retry_after``."""
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * float(2 ** min(attempts, 16)))
    delay *= rng.uniform(0.8, 1.2)
    return max(delay, retry_after or 0.0)


def policy_of(services: Services) -> Policy:
    s = services.settings
    return Policy(
        endpoint_name=s.endpoint_name,
        job_poll_seconds=s.job_poll_seconds,
        deploy_poll_seconds=s.deploy_poll_seconds,
        keep_previous_deployment=s.keep_previous_deployment,
        keep_failed_deployment=s.keep_failed_deployment,
        training_deadline_seconds=s.training_deadline_hours * 3600.0,
        deploy_deadline_seconds=s.deploy_deadline_minutes * 60.0,
        max_run_cost=s.max_run_cost,
        approval_deadline_seconds=s.approval_deadline_hours * 3600.0,
        evaluation=Criteria(
            margin=s.eval_margin,
            floor=s.eval_floor_rouge_l,
            min_examples=s.eval_min_examples,
            max_error_fraction=s.eval_max_error_fraction,
        ),
    )


def reconcile(services: Services, run_id: str) -> Run | None:
    """Move run ``run_id`` forward as far as it can go now; returns its latest state."""
    with services.telemetry.span("reconcile", run_id):
        return _outcome(services, _reconcile(services, run_id, uuid.uuid4().hex))


def reconcile_listed(services: Services, stored: StoredRun) -> Run | None:
    """``reconcile`` for a run the sweep has just listed (``stored``, with the version
    to compare-and-swap on), looking at Azure before taking the lease; returns the
    run's latest known state. An idle run costs one look and no ledger request."""
    with services.telemetry.span("reconcile", stored.run.run_id, state=stored.run.state.value):
        return _outcome(services, _reconcile_listed(services, stored))


def _outcome(services: Services, run: Run | None) -> Run | None:
    if run is not None:
        services.telemetry.annotate(**{"state.after": run.state.value})
    return run


def _reconcile_listed(services: Services, stored: StoredRun) -> Run | None:
    run, now, owner = stored.run, services.now(), uuid.uuid4().hex
    if not _looks_without_lease(run, owner, now):
        return _reconcile(services, run.run_id, owner, stored)
    try:
        observed = gather(services, run)
    except Exception as exc:  # recorded under the lease as met, not looked up again now
        return _reconcile(services, run.run_id, owner, stored, _replay(exc))
    decision = decide(run, observed, policy_of(services), now)
    if decision.actions or decision.state is not None:
        return _reconcile(services, run.run_id, owner, stored)  # acts on a fresh look
    services.telemetry.annotate(action="none", leased=False)
    updated = _apply(run, decision, {}, now)
    recheck = decision.recheck_seconds or 0.0
    if _unchanged(run, updated) and recheck <= QUIET_RECHECK_SECONDS:
        return run
    try:
        saved = services.ledger.replace(stored, _unleased(updated)).run
        measure(services.telemetry, run, saved)
        return saved
    except ConcurrencyConflict:  # changed since listed: its writer's version stands
        log.info("run %s changed since it was listed; its look is not recorded", run.run_id)
        latest = services.ledger.get(run.run_id)
        return latest.run if latest else None


def _looks_without_lease(run: Run, owner: str, now: dt.datetime) -> bool:
    """Whether a look at ``run`` may come before its lease: it only reads Azure, no
    request (cancel) or unpublished event waits, and no one else has it or waits."""
    return (
        run.state in READ_ONLY_LOOKS
        and not run.cancel_requested
        and run.published >= len(run.timeline)
        and not run.leased_by_other(owner, now)
        and not _backing_off(run, now)
    )


def _unchanged(run: Run, updated: Run) -> bool:
    """Nothing to record: ``updated`` differs from ``run`` only in its timestamps."""
    return (
        dataclasses.replace(updated, updated_at=run.updated_at, next_check_at=run.next_check_at)
        == run
    )


def _replay(error: Exception) -> Observe:
    """A look that raises ``error`` again: the failure of a look taken before the lease,
    handled under it like any other."""

    def observe() -> Observed:
        raise error

    return observe


def _reconcile(
    services: Services,
    run_id: str,
    owner: str,
    stored: StoredRun | None = None,
    observe: Observe | None = None,
) -> Run | None:
    """Lease the run (``stored`` if given, else as read now) and step it. ``observe``
    stands in for the step's own look (``gather``) on the first try only."""
    for _ in range(3):  # a lost race re-reads and tries again, a few times at most
        if stored is None:
            stored = services.ledger.get(run_id)
        if stored is None:
            log.warning("reconcile skipped: run %s not found", run_id)
            return None
        run, now = stored.run, services.now()
        if not run.needs_attention:
            return run
        if run.leased_by_other(owner, now):
            log.info("run %s is being reconciled elsewhere; left alone", run_id)
            return run
        if _backing_off(run, now):
            # An event or a repeated trigger is no reason to call a throttled or
            # failing service again before the time the last error set.
            log.info("run %s is backing off until %s; left alone", run_id, run.next_check_at)
            return run
        try:
            return _step(services, leases.take(services.ledger, stored, owner, now), observe)
        except ConcurrencyConflict:
            if observe is not None:
                # A failed look, and the run changed since: whoever changed it has it.
                # Asking the service again at once would not honour its refusal.
                log.info("run %s changed while recording a failed look; left", run_id)
                break
            log.info("run %s changed while reconciling; re-reading", run_id)
        stored = None
    latest = services.ledger.get(run_id)
    return latest.run if latest else None


def _backing_off(run: Run, now: dt.datetime) -> bool:
    """Waiting after an error (its next check still ahead), and not asked to cancel."""
    due = run.next_check_at
    return bool(run.active and run.last_error and due and due > now and not run.cancel_requested)


def _step(services: Services, leased: StoredRun, observe: Observe | None = None) -> Run:
    """One step under the lease: work while a heartbeat renews it, stop the heartbeat,
    then save the result over the newest version the lease wrote (``shared/pipeline/lease.py``).
    A lost lease raises ``LeaseLost`` (a ``ConcurrencyConflict``) and saves nothing."""
    with leases.Heartbeat(services.ledger, leased, services.now) as heartbeat:
        updated = _advance(services, leased.run, heartbeat, observe)
    saved = services.ledger.replace(heartbeat.newest(), _unleased(updated))
    measure(services.telemetry, leased.run, saved.run)
    return _publish(services, saved)


def _advance(
    services: Services, run: Run, heartbeat: leases.Heartbeat, observe: Observe | None
) -> Run:
    """The run after one step: observed (by ``observe`` if given), decided, acted on
    (never saved here)."""
    now = services.now()
    updated = run
    produced: dict[str, Any] = {}
    if run.active:
        try:
            observed = observe() if observe is not None else gather(services, run)
            decision = decide(run, observed, policy_of(services), now)
            services.telemetry.annotate(
                state=run.state.value,
                action=",".join(a.value for a in decision.actions) or "none",
                leased=True,
            )
            heartbeat.check()  # act on Azure only while the run is still ours
            _act(services, run, observed, decision, produced)
            updated = _apply(run, decision, produced, now)
        except leases.LeaseLost:
            raise  # another writer has the run: record nothing over it
        except RetryableError as exc:
            # Keep what the actions produced before the error (a registered asset,
            # a submitted job's name): the next try starts from there.
            progressed = run.updated(now, **produced) if produced else run
            # The wait counts from the refusal, not from the step's start: a
            # Retry-After is the time from the reply on.
            refused_at = services.now()
            updated = _retry_or_give_up(services, progressed, refused_at, str(exc), exc.retry_after)
        except PermanentError as exc:
            # A permanent error while deploying (a quota or validation 400 on the
            # deployment, say) is a failed deployment: the live one is untouched.
            ended = RunState.DEPLOY_FAILED if run.state is RunState.DEPLOYING else RunState.FAILED
            log.error("run %s %s: %s", run.run_id, ended.value, exc)
            updated = run.moved_to(ended, now, str(exc), last_error=str(exc), activity="")
        except Exception as exc:  # a bug or an SDK surprise: recorded, and the lease freed
            log.exception("run %s: unexpected error in %s", run.run_id, run.state)
            error = f"unexpected error in {run.state}: {type(exc).__name__}: {exc}"
            updated = _retry_or_give_up(services, run, now, error, None)
        if updated.state != run.state:
            log.info("run %s moved %s -> %s", run.run_id, run.state, updated.state)
            if updated.state in (RunState.FAILED, RunState.DEPLOY_FAILED):
                _stop_what_it_started(services, run)
        if updated.state.terminal and run.endpoint:
            _release(services, updated)
    return updated


def _retry_or_give_up(
    services: Services, run: Run, now: dt.datetime, error: str, retry_after: float | None
) -> Run:
    """Try the step again later, or, after ``MAX_ATTEMPTS`` failed tries, end the run
    FAILED with the last error.

    A try the service throttled (it sent ``Retry-After``) waits what the service
    asked (plus up to 20% jitter) and does not count as a failed try: under a
    long throttling storm the run keeps going at the service's pace instead of
    backing off exponentially and giving up. Other failures back off
    exponentially and count.
    """
    if retry_after is not None:
        delay = retry_after * random.uniform(1.0, 1.2)
        log.warning("run %s: throttled; retrying in %.1fs: %s", run.run_id, delay, error)
        return run.retry_later(now, error, delay, count=False)
    limit = services.settings.max_attempts
    if run.attempts + 1 >= limit:
        reason = f"gave up after {run.attempts + 1} attempts (MAX_ATTEMPTS={limit}): {error}"
        log.error("run %s failed: %s", run.run_id, reason)
        return run.moved_to(RunState.FAILED, now, reason, last_error=reason)
    delay = backoff_seconds(run.attempts, retry_after, random.Random())
    log.warning("run %s: retrying in %.0fs after: %s", run.run_id, delay, error)
    return run.retry_later(now, error, delay)


def _stop_what_it_started(services: Services, run: Run) -> None:
    """Best effort, for a run ended by an error (not by a decision, which cleans up
    itself): cancel its job, or remove its deployment at 0%, so nothing keeps
    running on GPUs that no run watches any more. Both are idempotent."""
    azureml = services.azureml
    try:
        if run.state is RunState.TRAINING:
            azureml.cancel_job(run.job_name or run.run_id)
        elif (
            run.state in (RunState.DEPLOYING, RunState.SMOKE_TESTING, RunState.EVALUATING)
            and run.owns_deployment  # never a deployment a rollback run adopted
            and not services.settings.keep_failed_deployment
        ):
            azureml.begin_delete_deployment(run.endpoint, run.deployment)
    except Exception as exc:  # clean-up must never hide the error that ended the run
        log.warning("run %s: could not stop what it started: %s", run.run_id, exc)


def _unleased(run: Run) -> Run:
    return dataclasses.replace(run, lease_owner="", lease_until=None)


def _release(services: Services, run: Run) -> None:
    try:
        services.ledger.release_endpoint(run.endpoint, run.run_id)
    except AutopilotError as exc:  # a stale lock is taken over by the next rollout anyway
        log.warning("run %s: could not release endpoint %s: %s", run.run_id, run.endpoint, exc)


def _publish(services: Services, saved: StoredRun) -> Run:
    run = saved.run
    if run.published >= len(run.timeline):
        return run
    try:
        services.publisher.publish(events_for(run, run.published))
    except AutopilotError as exc:
        log.warning("run %s: lifecycle events not published yet (%s); will retry", run.run_id, exc)
        return run
    try:
        done = services.ledger.replace(saved, dataclasses.replace(run, published=len(run.timeline)))
    except ConcurrencyConflict:
        return run  # published again later; event ids are stable, consumers can dedupe
    return done.run


# -- act -------------------------------------------------------------------------------------


def _act(
    services: Services,
    run: Run,
    observed: Observed,
    decision: Decision,
    changes: dict[str, Any],
) -> None:
    """Carry out the decision's actions, recording the fields they produce in ``changes``
    as they go (so what succeeded before an error is kept: progress under throttling)."""
    azureml, settings = services.azureml, services.settings
    fields = decision.changes.fields()
    for action in decision.actions:
        if action is Action.PREPARE_DATA:
            _prepare_data(services, run, changes)
        elif action is Action.SUBMIT_JOB:
            job = azureml.submit_job(_job_spec(run, changes))
            changes.update(job_name=job.name, job_status=job.status)
        elif action is Action.CREATE_ENDPOINT:
            azureml.begin_create_endpoint(
                str(fields.get("endpoint") or run.endpoint),
                "Fine-tuned models deployed by finetune-autopilot",
            )
        elif action is Action.CREATE_DEPLOYMENT:
            azureml.begin_create_deployment(
                DeploymentSpec(
                    endpoint=run.endpoint,
                    name=run.deployment,
                    model_id=str(fields.get("model_id") or run.model_id),
                    instance_type=settings.deployment_instance_type,
                    instance_count=settings.deployment_instance_count,
                    liveness_initial_delay=settings.liveness_initial_delay,
                    readiness_initial_delay=settings.readiness_initial_delay,
                    request_timeout_ms=settings.request_timeout_ms,
                    tags={"finetune-autopilot.run": run.run_id},
                )
            )
        elif action is Action.SHIFT_TRAFFIC:
            current = observed.endpoint.traffic if observed.endpoint else {}
            traffic = {name: 0 for name in current}
            traffic[run.deployment] = 100
            azureml.begin_set_traffic(run.endpoint, traffic)
        elif action is Action.DELETE_DEPLOYMENT and run.owns_deployment:
            azureml.begin_delete_deployment(run.endpoint, run.deployment)
        elif action is Action.DELETE_PREVIOUS:
            for name in run.previous_deployments:
                azureml.begin_delete_deployment(run.endpoint, name)
        elif action is Action.CANCEL_JOB:
            azureml.cancel_job(run.job_name or run.run_id)


def _apply(run: Run, decision: Decision, produced: dict[str, Any], now: dt.datetime) -> Run:
    changes = {**decision.changes.fields(), **produced}
    if decision.state is not None:
        return run.moved_to(decision.state, now, decision.detail, **changes)
    if not changes and decision.recheck_seconds is None:
        return run
    next_check = now + dt.timedelta(seconds=decision.recheck_seconds or 0)
    return run.updated(now, next_check_at=next_check, attempts=0, last_error="", **changes)


def _prepare_data(services: Services, run: Run, changes: dict[str, Any]) -> None:
    """Register both parts as data assets: those intake recorded, else the parts
    ``prepare_parts`` finds or writes (a run from before intake split uploads).
    An asset this run already recorded is not looked up again."""
    split = run.validation.get("split") or {}
    training_url, validation_url = split.get("training_url"), split.get("validation_url")
    if not (training_url and validation_url):
        parts = prepare_parts(services.store, services.work, run)
        changes["validation"] = {**run.validation, "split": parts.describe()}
        training_url, validation_url = parts.training_url, parts.validation_url
    if not run.training_data:
        changes["training_data"] = services.azureml.register_data(
            f"{run.run_id}-training", "1", str(training_url), f"Training data of run {run.run_id}"
        )
    if not run.validation_data:
        changes["validation_data"] = services.azureml.register_data(
            f"{run.run_id}-validation",
            "1",
            str(validation_url),
            f"Validation data of run {run.run_id}",
        )


def _job_spec(run: Run, changes: dict[str, Any]) -> JobSpec:
    config = run.config
    return JobSpec(
        name=run.job_name or run.run_id,
        experiment_name=str(config["experiment_name"]),
        base_model=str(config["base_model"]),
        task=str(config["task"]),
        training_data=changes.get("training_data") or run.training_data,
        validation_data=changes.get("validation_data") or run.validation_data,
        output_model_prefix=run.run_id,
        compute=config.get("compute") or None,
        instance_types=tuple(config.get("instance_types") or ()),
        hyperparameters=dict(config["hyperparameters"]),
        tags={
            "finetune-autopilot.run": run.run_id,
            "finetune-autopilot.dataset-sha256": run.sha256,
            "finetune-autopilot.dataset": f"{run.dataset.container}/{run.dataset.name}",
        },
    )
