"""The one pure decision: given a run and what was just observed, what next.

``decide(run, observed, now, policy)`` returns a ``Decision``: the actions to
take (idempotent, carried out by the reconciler through the ports) and the
state to move to once they succeed, or the fields to record while staying put.
No I/O here; this is where most unit tests live.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from shared.azureml import JOB_ACTIVE, JOB_CANCELED, JOB_FAILED, JobView
from shared.runs import Run, RunState


class Action(StrEnum):
    PREPARE_DATA = "prepare_data"  # split the upload into parts (or reuse them), register assets
    SUBMIT_JOB = "submit_job"


@dataclass(frozen=True)
class Observed:
    """What the reconciler saw in Azure just now (None: not looked up or absent)."""

    job: JobView | None = None


@dataclass(frozen=True)
class Policy:
    job_poll_seconds: float = 60.0


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...] = ()
    state: RunState | None = None  # move here once the actions succeeded
    detail: str = ""
    changes: Mapping[str, Any] = field(default_factory=dict)
    recheck_seconds: float | None = None  # when staying put: next look


DEFAULT_POLICY = Policy()


def decide(
    run: Run, observed: Observed, now: dt.datetime, policy: Policy = DEFAULT_POLICY
) -> Decision:
    if run.state is RunState.REGISTERING_DATA:
        return _registering(observed)
    if run.state is RunState.TRAINING:
        return _training(run, observed, policy)
    return Decision()  # nothing to do in this state (yet)


def _registering(observed: Observed) -> Decision:
    job = observed.job
    if job is not None:
        # The job exists (submitted before a crash, or by a concurrent invocation).
        return Decision(
            state=RunState.TRAINING,
            detail=f"adopted existing job {job.name} ({job.status})",
            changes={"job_name": job.name, "job_status": job.status},
        )
    return Decision(
        actions=(Action.PREPARE_DATA, Action.SUBMIT_JOB),
        state=RunState.TRAINING,
        detail="data assets registered, fine-tuning job submitted",
    )


def _training(run: Run, observed: Observed, policy: Policy) -> Decision:
    job = observed.job
    if job is None:
        return Decision(
            state=RunState.FAILED,
            detail=f"job {run.job_name} no longer exists in the workspace",
            changes={"last_error": f"job {run.job_name} not found"},
        )
    if job.status == "Completed":
        return Decision(
            state=RunState.DEPLOYING,
            detail=f"job {job.name} completed",
            changes={"job_status": job.status},
        )
    if job.status in JOB_FAILED:
        reason = job.error or f"job {job.name} ended {job.status}"
        return Decision(
            state=RunState.TRAINING_FAILED,
            detail=reason,
            changes={"job_status": job.status, "last_error": reason},
        )
    if job.status in JOB_CANCELED:
        return Decision(
            state=RunState.CANCELED,
            detail=f"job {job.name} was canceled",
            changes={"job_status": job.status},
        )
    if job.status not in JOB_ACTIVE:
        # Paused or a status this app does not know: keep watching, say so.
        detail = f"job {job.name} is {job.status}"
        return Decision(
            changes={"job_status": job.status, "last_error": detail},
            recheck_seconds=policy.job_poll_seconds,
        )
    return Decision(changes={"job_status": job.status}, recheck_seconds=policy.job_poll_seconds)
