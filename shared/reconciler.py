"""Reconcile: gather what Azure shows, decide (pure), act through the ports, persist.

``reconcile(services, run_id)`` is idempotent and safe to call from any
trigger at any time: it moves the run forward from whatever state it is in.
Errors follow their family: a ``RetryableError`` leaves the run where it was
with a next-check time (exponential backoff with jitter, at least the
service's ``Retry-After``); a ``PermanentError`` ends the run FAILED with the
message. A lost compare-and-swap is not an error: someone else moved the run,
and the next reconcile starts from their version.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from typing import Any

from shared.azureml import JobSpec
from shared.decide import Action, Decision, Observed, decide
from shared.errors import ConcurrencyConflict, PermanentError, RetryableError
from shared.ledger import StoredRun
from shared.runs import Run, RunState
from shared.services import Services
from shared.splits import prepare_parts

log = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 600.0
_OBSERVES_JOB = {RunState.REGISTERING_DATA, RunState.TRAINING}


def backoff_seconds(attempts: int, retry_after: float | None, rng: random.Random) -> float:
    """Exponential backoff with +-20% jitter, never sooner than ``retry_after``."""
    delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * float(2 ** min(attempts, 16)))
    delay *= rng.uniform(0.8, 1.2)
    return max(delay, retry_after or 0.0)


def reconcile(services: Services, run_id: str) -> Run | None:
    """Move run ``run_id`` forward as far as it can go now; returns its latest state."""
    stored = services.ledger.get(run_id)
    if stored is None:
        log.warning("reconcile skipped: run %s not found", run_id)
        return None
    for _ in range(3):  # a lost race re-reads and tries again, a few times at most
        if not stored.run.active:
            return stored.run
        try:
            return _step(services, stored)
        except ConcurrencyConflict:
            log.info("run %s changed while reconciling; re-reading", run_id)
            latest = services.ledger.get(run_id)
            if latest is None:
                return None
            stored = latest
    return stored.run


def _step(services: Services, stored: StoredRun) -> Run:
    run, now = stored.run, services.now()
    try:
        observed = _gather(services, run)
        decision = decide(run, observed, now)
        changes = _act(services, run, decision)
        updated = _apply(run, decision, changes, now)
    except RetryableError as exc:
        delay = backoff_seconds(run.attempts, exc.retry_after, random.Random())
        log.warning("run %s: retrying in %.0fs after: %s", run.run_id, delay, exc)
        updated = run.retry_later(now, str(exc), delay)
    except PermanentError as exc:
        log.error("run %s failed: %s", run.run_id, exc)
        updated = run.moved_to(RunState.FAILED, now, str(exc), last_error=str(exc))
    if updated == run:
        return run
    saved = services.ledger.replace(stored, updated)
    if saved.run.state != run.state:
        log.info("run %s moved %s -> %s", run.run_id, run.state, saved.run.state)
    return saved.run


def _gather(services: Services, run: Run) -> Observed:
    if run.state in _OBSERVES_JOB:
        return Observed(job=services.azureml.get_job(run.job_name or run.run_id))
    return Observed()


def _act(services: Services, run: Run, decision: Decision) -> dict[str, Any]:
    """Carry out the decision's actions; returns the fields they produced."""
    changes: dict[str, Any] = {}
    for action in decision.actions:
        if action is Action.PREPARE_DATA:
            changes.update(_prepare_data(services, run))
        elif action is Action.SUBMIT_JOB:
            job = services.azureml.submit_job(_job_spec(run, changes))
            changes.update(job_name=job.name, job_status=job.status)
    return changes


def _apply(run: Run, decision: Decision, produced: dict[str, Any], now: dt.datetime) -> Run:
    changes = {**decision.changes, **produced}
    if decision.state is not None:
        return run.moved_to(decision.state, now, decision.detail, **changes)
    next_check = now + dt.timedelta(seconds=decision.recheck_seconds or 0)
    if not changes and decision.recheck_seconds is None:
        return run
    return run.updated(now, next_check_at=next_check, **changes)


def _prepare_data(services: Services, run: Run) -> dict[str, Any]:
    parts = prepare_parts(services.store, run)
    training = services.azureml.register_data(
        f"{run.run_id}-training", "1", parts.training_url, f"Training data of run {run.run_id}"
    )
    validation = services.azureml.register_data(
        f"{run.run_id}-validation",
        "1",
        parts.validation_url,
        f"Validation data of run {run.run_id}",
    )
    return {
        "training_data": training,
        "validation_data": validation,
        "validation": {**run.validation, "split": parts.describe()},
    }


def _job_spec(run: Run, changes: dict[str, Any]) -> JobSpec:
    config = run.config
    return JobSpec(
        name=run.run_id,
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
