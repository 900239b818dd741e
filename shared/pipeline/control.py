"""What people ask of a run by hand: start it, cancel it, retry it, approve it.

Each request is recorded on the run with compare-and-swap, then the run is
reconciled at once; the reconciler does the work (cancelling the job,
removing a deployment at 0%, resuming at the failed step), exactly as it would
on the next timer tick.
"""

from __future__ import annotations

import dataclasses
import logging

from shared.domain.approval import Approver
from shared.domain.errors import ConcurrencyConflict, NotAllowedNow, RunNotFound
from shared.domain.ports import Services
from shared.domain.runs import CANCELLABLE, Run, RunState
from shared.pipeline.reconciler import reconcile

log = logging.getLogger(__name__)


def request_cancel(services: Services, run_id: str) -> Run:
    for _ in range(5):
        stored = services.ledger.get(run_id)
        if stored is None:
            raise RunNotFound(f"run {run_id} does not exist")
        run = stored.run
        # The state decides first: a run that has ended cannot be cancelled, even
        # if a cancel was asked for before it ended.
        if run.state not in CANCELLABLE:
            raise NotAllowedNow(
                f"run {run_id} is {run.state}: only runs in "
                f"{', '.join(sorted(CANCELLABLE))} can be cancelled"
            )
        if run.cancel_requested:
            break
        try:
            services.ledger.replace(
                stored, dataclasses.replace(run, cancel_requested=True, next_check_at=None)
            )
            break
        except ConcurrencyConflict:
            continue
    return reconcile(services, run_id) or run


def request_retry(services: Services, run_id: str) -> Run:
    for _ in range(5):
        stored = services.ledger.get(run_id)
        if stored is None:
            raise RunNotFound(f"run {run_id} does not exist")
        run = stored.run
        if run.resume_state() is None:
            raise NotAllowedNow(
                f"run {run_id} is {run.state}: only TRAINING_FAILED, DEPLOY_FAILED, "
                "ROLLED_BACK and FAILED runs can be retried"
            )
        try:
            services.ledger.replace(stored, run.retried(services.now()))
            break
        except ConcurrencyConflict:
            continue
    return reconcile(services, run_id) or run


def request_approve(services: Services, run_id: str, approver: Approver) -> Run:
    """Let a run held over ``MAX_RUN_COST`` go on: record ``approval`` (who, when,
    the key's fingerprint) with compare-and-swap, only in AWAITING_APPROVAL, then
    reconcile it on to its job at once. Approving an approved run changes nothing
    (the first approval stands); any other run is ``NotAllowedNow``."""
    for _ in range(5):
        stored = services.ledger.get(run_id)
        if stored is None:
            raise RunNotFound(f"run {run_id} does not exist")
        run = stored.run
        if run.approval:
            if run.state is not RunState.AWAITING_APPROVAL:
                return run  # approved before and gone on: nothing more to do
            break  # approved, not moved on yet (the run was busy): move it now
        if run.state is not RunState.AWAITING_APPROVAL:
            raise NotAllowedNow(
                f"run {run_id} is {run.state}: only runs in AWAITING_APPROVAL can be approved"
            )
        if run.cancel_requested:
            raise NotAllowedNow(f"run {run_id} is being canceled: it cannot be approved")
        approval = approver.record(services.now())
        try:
            services.ledger.replace(
                stored, dataclasses.replace(run, approval=approval, next_check_at=None)
            )
        except ConcurrencyConflict:
            continue
        log.info(
            "run %s approved by %s (key %s) at %s",
            run_id,
            approver.by,
            approver.key or "none",
            approval["at"],
        )
        break
    run = reconcile(services, run_id) or run
    if run.state is RunState.REGISTERING_DATA:
        run = reconcile(services, run_id) or run  # released: on to the job now, not next tick
    return run
