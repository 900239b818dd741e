"""What people ask of a run by hand: start it, cancel it, retry it, approve it,
roll it back.

Each request is recorded on the run with compare-and-swap, then the run is
reconciled at once; the reconciler does the work (cancelling the job,
removing a deployment at 0%, resuming at the failed step), exactly as it would
on the next timer tick.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re

from shared.domain.approval import Approver
from shared.domain.azureml import SUCCEEDED
from shared.domain.errors import ConcurrencyConflict, NotAllowedNow, RunNotFound
from shared.domain.ledger import MAX_PAGE
from shared.domain.ports import Services
from shared.domain.runs import CANCELLABLE, ROLLBACK, Run, RunState
from shared.pipeline.reconciler import reconcile

log = logging.getLogger(__name__)

# A rollback run's id is ``<id>-rb<n>``, ``<id>`` the training run's (a rollback of a
# rollback run counts on from its ``n``): at most 24 + 4 = 28 characters, so its
# deployment, and a retry's ``-r<n>``, stay within Azure's 32.
MAX_ROLLBACK_ID = 28
_ROLLBACK_SUFFIX = re.compile(r"-rb[0-9]+$")
# How many pages of LIVE runs a rollback looks through for the run it restores.
RESTORED_SCAN_PAGES = 10


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


def request_rollback(services: Services, run_id: str, requester: Approver) -> Run:
    """Put back the model LIVE run ``run_id`` replaced, through a new rollback run.

    The run must be LIVE, serve 100% of its endpoint now, and have replaced a
    model (``replaced``); otherwise ``NotAllowedNow`` says why. The new run
    (``<id>-rb<n>``, ``kind`` rollback) has the replaced model and reuses the
    replaced deployment if it is still there (``adopted_deployment``: never
    removed by the rollback), else deploys the model anew under its own name; it
    starts at DEPLOYING and is reconciled at once. The LIVE run records
    ``rolled_back_by`` (the new run, who asked, when) with compare-and-swap before
    the new run is created, so concurrent requests make one rollback run; asking
    again while it is active (or after it went LIVE) returns it, changing nothing.
    """
    for _ in range(5):
        stored = services.ledger.get(run_id)
        if stored is None:
            raise RunNotFound(f"run {run_id} does not exist")
        live = stored.run
        asked = str(live.rolled_back_by.get("run_id", ""))
        earlier = services.ledger.get(asked) if asked else None
        if earlier is not None and (earlier.run.active or earlier.run.state is RunState.LIVE):
            return earlier.run  # asked before: that rollback, as it is now
        model, deployment = _rollback_target(services, live)
        # A request that recorded its run and crashed before creating it: make that one.
        new_id = asked if asked and earlier is None else _free_rollback_id(services, live.run_id)
        now = services.now()
        if new_id != asked:
            record = {"run_id": new_id, **requester.record(now)}
            try:
                services.ledger.replace(stored, live.updated(now, rolled_back_by=record))
            except ConcurrencyConflict:
                continue  # another request got there first: see what it asked for
        rollback = _rollback_run(services, live, new_id, model, deployment, requester, now)
        if services.ledger.create(rollback) is None:
            continue  # created meanwhile by a request like this one: return it
        log.info(
            "run %s: rollback %s requested by %s (key %s): restoring %s on %s",
            run_id,
            new_id,
            requester.by,
            requester.key or "none",
            model,
            rollback.deployment,
        )
        return reconcile(services, new_id) or rollback
    raise ConcurrencyConflict(f"run {run_id} kept changing while a rollback was asked for")


def _rollback_target(services: Services, live: Run) -> tuple[str, str]:
    """The model to put back and the deployment it is served by now, "" if that is gone
    (``NotAllowedNow`` unless ``live`` can be rolled back)."""
    if live.state is not RunState.LIVE:
        raise NotAllowedNow(
            f"run {live.run_id} is {live.state}: only a LIVE run can be rolled back"
        )
    replaced = live.replaced
    if not replaced.get("deployment"):
        raise NotAllowedNow(
            f"run {live.run_id}: first model on this endpoint: nothing to roll back to"
        )
    endpoint = services.azureml.get_endpoint(live.endpoint)
    serving = endpoint.traffic.get(live.deployment, 0) if endpoint is not None else 0
    if endpoint is None or serving != 100:
        traffic = dict(endpoint.traffic) if endpoint is not None else "endpoint not found"
        raise NotAllowedNow(
            f"run {live.run_id} does not serve all of endpoint {live.endpoint} now "
            f"(traffic: {traffic}): only the run serving 100% can be rolled back"
        )
    name, model = str(replaced["deployment"]), str(replaced.get("model") or "")
    found = services.azureml.get_deployment(live.endpoint, name)
    if (
        found is not None
        and found.provisioning_state == SUCCEEDED
        and found.model
        and (not model or found.model == model)
    ):
        return found.model, name  # kept (KEEP_PREVIOUS_DEPLOYMENT): reused as it is
    if not model:
        restored = _restored_run(services, name)
        model = restored.model_id if restored is not None else ""
    if not model:
        raise NotAllowedNow(
            f"run {live.run_id}: the model of deployment {name}, which it replaced, is not "
            "known and the deployment is gone: nothing to roll back to"
        )
    return model, ""


def _free_rollback_id(services: Services, live_id: str) -> str:
    """``<training run id>-rb<n>`` for the smallest ``n`` after the one ``live_id`` has
    (if it is a rollback run) that names no run yet."""
    base = _ROLLBACK_SUFFIX.sub("", live_id)
    suffix = live_id[len(base) :]
    n = int(suffix[3:]) + 1 if suffix else 1
    while len(candidate := f"{base}-rb{n}") <= MAX_ROLLBACK_ID:
        if services.ledger.get(candidate) is None:
            return candidate
        n += 1
    raise NotAllowedNow(f"run {live_id}: no rollback id left (ids are at most {MAX_ROLLBACK_ID})")


def _restored_run(services: Services, deployment: str) -> Run | None:
    """The newest LIVE run whose deployment is ``deployment`` (the run whose model a
    rollback restores), looked for in a bounded number of pages; None if not found."""
    position: str | None = None
    for _ in range(RESTORED_SCAN_PAGES):
        summaries, position = services.ledger.list_runs(RunState.LIVE, MAX_PAGE, position)
        for summary in summaries:
            if summary.deployment == deployment:
                stored = services.ledger.get(summary.run_id)
                return stored.run if stored is not None else None
        if position is None:
            break
    return None


def _rollback_run(
    services: Services,
    live: Run,
    new_id: str,
    model: str,
    adopted: str,
    requester: Approver,
    now: dt.datetime,
) -> Run:
    """The rollback run, at DEPLOYING: the restored run's data and configuration (its
    validation split gives the smoke test's prompts), else the rolled-back run's."""
    restored = _restored_run(services, str(live.replaced["deployment"]))
    source = restored if restored is not None else live
    who = requester.by + (
        f" (says {requester.claimed_by})"
        if requester.claimed_by and requester.claimed_by != requester.by
        else ""
    )
    config = {
        **source.config,
        "kind": ROLLBACK,
        "rollback_of": live.run_id,
        "restores": restored.run_id if restored is not None else "",
        "removes": live.deployment,
    }
    received = Run.new(
        new_id,
        source.dataset,
        now,
        f"rollback of run {live.run_id} asked by {who} at {now.isoformat()}",
        sha256=source.sha256,
        config=config,
        validation=source.validation,
        model_name=restored.model_name if restored is not None else "",
        model_id=model,
        endpoint=live.endpoint,
        deployment=adopted or new_id,
        adopted_deployment=adopted,
    )
    how = f"reusing deployment {adopted}" if adopted else f"as new deployment {new_id}"
    what = f"run {restored.run_id}'s model" if restored is not None else "model"
    return received.moved_to(
        RunState.DEPLOYING,
        now,
        f"restoring {what} {model} {how}, in place of {live.deployment}",
        activity="deploying",
    )
