"""The run: an immutable record, a closed set of states, explicit transitions.

Pure: no I/O, no Azure imports. A run is created when a dataset upload (or an
HTTP request) is accepted and moves forward only through ``Run.moved_to``,
which refuses any transition not in ``TRANSITIONS``::

    RECEIVED -> REJECTED | DUPLICATE | REGISTERING_DATA
              | DEPLOYING (a rollback run: it has its model already)
    REGISTERING_DATA -> TRAINING (job submitted)
                      | AWAITING_APPROVAL (its plan is over MAX_RUN_COST, not approved)
    AWAITING_APPROVAL -> REGISTERING_DATA (approved) | CANCELED (asked, or too late)
    TRAINING -> TRAINING_FAILED | CANCELED | DEPLOYING
    DEPLOYING -> DEPLOY_FAILED | SMOKE_TESTING (new deployment up, at 0% traffic)
    SMOKE_TESTING -> EVALUATING (smoke passed) | ROLLED_BACK
                   | DEPLOY_FAILED (the deployment vanished or failed first)
                   | PROMOTING (a rollback run's smoke passed: it is not judged)
    EVALUATING -> PROMOTING (judged no worse than the champion, or above the floor;
                  traffic shifting) | ROLLED_BACK | DEPLOY_FAILED
    PROMOTING -> LIVE (serving 100%, previous deployment retired) | ROLLED_BACK
    any active state -> FAILED (a permanent error) | CANCELED

Names in Azure derive from the run id, so every step can look before it creates.

A rollback run (``config["kind"] == "rollback"``, made by ``POST
/api/runs/{id}/rollback``) puts back the model a LIVE run replaced: it starts at
DEPLOYING with that model and goes the same deploy, smoke, promote way
(no evaluation).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RunState(StrEnum):
    RECEIVED = "RECEIVED"
    REJECTED = "REJECTED"
    DUPLICATE = "DUPLICATE"
    REGISTERING_DATA = "REGISTERING_DATA"
    AWAITING_APPROVAL = "AWAITING_APPROVAL"
    TRAINING = "TRAINING"
    TRAINING_FAILED = "TRAINING_FAILED"
    CANCELED = "CANCELED"
    DEPLOYING = "DEPLOYING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    SMOKE_TESTING = "SMOKE_TESTING"
    EVALUATING = "EVALUATING"
    PROMOTING = "PROMOTING"
    LIVE = "LIVE"
    ROLLED_BACK = "ROLLED_BACK"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self not in TRANSITIONS


_ANY_ACTIVE = {RunState.FAILED, RunState.CANCELED}
TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.RECEIVED: frozenset(
        {
            RunState.REJECTED,
            RunState.DUPLICATE,
            RunState.REGISTERING_DATA,
            RunState.DEPLOYING,  # a rollback run
            RunState.FAILED,
        }
    ),
    RunState.REGISTERING_DATA: frozenset(
        {RunState.TRAINING, RunState.AWAITING_APPROVAL, *_ANY_ACTIVE}
    ),
    RunState.AWAITING_APPROVAL: frozenset({RunState.REGISTERING_DATA, *_ANY_ACTIVE}),
    RunState.TRAINING: frozenset({RunState.TRAINING_FAILED, RunState.DEPLOYING, *_ANY_ACTIVE}),
    RunState.DEPLOYING: frozenset({RunState.DEPLOY_FAILED, RunState.SMOKE_TESTING, *_ANY_ACTIVE}),
    # The deployment can vanish or fail before its smoke test: a failed deployment.
    RunState.SMOKE_TESTING: frozenset(
        {
            RunState.EVALUATING,
            RunState.PROMOTING,  # a rollback run: not judged against what it removes
            RunState.ROLLED_BACK,
            RunState.DEPLOY_FAILED,
            *_ANY_ACTIVE,
        }
    ),
    RunState.EVALUATING: frozenset(
        {RunState.PROMOTING, RunState.ROLLED_BACK, RunState.DEPLOY_FAILED, *_ANY_ACTIVE}
    ),
    RunState.PROMOTING: frozenset({RunState.LIVE, RunState.ROLLED_BACK, *_ANY_ACTIVE}),
}


# Retrying a failed run resumes at the step that failed, keeping what succeeded.
RETRY_FROM: dict[RunState, RunState] = {
    RunState.TRAINING_FAILED: RunState.REGISTERING_DATA,  # a new job on the same data assets
    RunState.DEPLOY_FAILED: RunState.DEPLOYING,  # a new deployment of the same model
    RunState.ROLLED_BACK: RunState.DEPLOYING,
}
# Cancelling is possible until traffic starts moving.
CANCELLABLE = frozenset(
    {
        RunState.RECEIVED,
        RunState.REGISTERING_DATA,
        RunState.AWAITING_APPROVAL,
        RunState.TRAINING,
        RunState.DEPLOYING,
        RunState.SMOKE_TESTING,
        RunState.EVALUATING,
    }
)


# ``config["kind"]`` of a run that restores the model a LIVE run replaced.
ROLLBACK = "rollback"


class InvalidTransition(Exception):
    """A state change the lifecycle does not allow: a bug, never an input problem."""


@dataclass(frozen=True)
class TimelineEntry:
    state: RunState
    at: dt.datetime
    detail: str = ""


@dataclass(frozen=True)
class DatasetRef:
    """The uploaded blob a run came from, as it was when the run saw it."""

    container: str
    name: str
    url: str
    etag: str = ""
    size: int = 0

    @property
    def upload_id(self) -> str:
        """Identifies this version of this blob: the same upload seen twice, same id."""
        key = f"{self.container}/{self.name}@{self.etag}"
        return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def config_hash(config: Mapping[str, Any]) -> str:
    """A short, stable hash of a training configuration (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(canonical.encode(), digest_size=4).hexdigest()


def run_id_for(sha256: str, config: Mapping[str, Any]) -> str:
    """The run id for training ``config`` on content ``sha256``.

    Also the job name, output model prefix and deployment name, so it must be a
    valid Azure ML name: 3-32 characters, letters, digits and hyphens, starting
    with a letter (``ft-`` + 12 + ``-`` + 8 = 24).
    """
    return f"ft-{sha256[:12]}-{config_hash(config)}"


@dataclass(frozen=True)
class Run:
    run_id: str
    state: RunState
    created_at: dt.datetime
    updated_at: dt.datetime
    dataset: DatasetRef
    sha256: str = ""
    config: Mapping[str, Any] = field(default_factory=dict)
    validation: Mapping[str, Any] = field(default_factory=dict)
    report_url: str = ""
    training_data: str = ""
    validation_data: str = ""
    job_name: str = ""
    job_status: str = ""
    model_name: str = ""  # the output model's name, as the completed job reports it
    model_id: str = ""
    endpoint: str = ""
    deployment: str = ""
    smoke: Mapping[str, Any] = field(default_factory=dict)
    # Champion/challenger scores: progress while EVALUATING, then the verdict.
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    duplicate_of: str = ""
    previous_deployments: Mapping[str, int] = field(default_factory=dict)
    # The preflight plan (``shared.domain.plan``), computed at intake.
    plan: Mapping[str, Any] = field(default_factory=dict)
    # Who let a run over budget go on, and when (``shared.domain.approval``); kept
    # by retries: the approval was for the run, not for one attempt.
    approval: Mapping[str, Any] = field(default_factory=dict)
    # Set when the run goes LIVE: the deployment that served before it (the one
    # with the most traffic) and that deployment's model, so a rollback knows
    # what to put back; empty for the first model on the endpoint.
    replaced: Mapping[str, Any] = field(default_factory=dict)
    # On a LIVE run: the rollback run asked for it (``run_id``), who asked and when.
    rolled_back_by: Mapping[str, Any] = field(default_factory=dict)
    # A rollback run's deployment that it found and reused (another run's, kept by
    # KEEP_PREVIOUS_DEPLOYMENT): never deleted by this run, whatever happens to it.
    adopted_deployment: str = ""
    activity: str = ""  # what the run is waiting on now, for people watching
    cancel_requested: bool = False
    retries: int = 0
    attempts: int = 0
    last_error: str = ""
    next_check_at: dt.datetime | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    # Lifecycle events go out after the run is saved; timeline entries before
    # this index were published (an outbox: a failed publish is retried).
    published: int = 0
    # A reconcile holds the run while acting, so two never act at once.
    lease_owner: str = ""
    lease_until: dt.datetime | None = None

    @classmethod
    def new(
        cls, run_id: str, dataset: DatasetRef, now: dt.datetime, detail: str = "", **fields: Any
    ) -> Run:
        return cls(
            run_id=run_id,
            state=RunState.RECEIVED,
            created_at=now,
            updated_at=now,
            dataset=dataset,
            timeline=(TimelineEntry(RunState.RECEIVED, now, detail),),
            **fields,
        )

    @property
    def active(self) -> bool:
        return not self.state.terminal

    @property
    def kind(self) -> str:
        """``"rollback"`` for a rollback run, else ``"training"``."""
        return str(self.config.get("kind") or "training")

    @property
    def owns_deployment(self) -> bool:
        """Whether ``deployment`` is the run's own to remove (not one it adopted)."""
        return bool(self.deployment) and self.deployment != self.adopted_deployment

    @property
    def state_since(self) -> dt.datetime:
        """When the run entered its current state (deadlines count from here)."""
        for entry in reversed(self.timeline):
            if entry.state is self.state:
                return entry.at
        return self.updated_at

    @property
    def needs_attention(self) -> bool:
        """Active, or terminal with lifecycle events still to publish."""
        return self.active or self.published < len(self.timeline)

    def leased_by_other(self, owner: str, now: dt.datetime) -> bool:
        return bool(
            self.lease_owner
            and self.lease_owner != owner
            and self.lease_until is not None
            and self.lease_until > now
        )

    def moved_to(self, state: RunState, now: dt.datetime, detail: str = "", **changes: Any) -> Run:
        """This run in ``state``, with a timeline entry; attempts and error reset, and
        no leftover ``activity`` once it ends (unless one is given, like "serving")."""
        if state not in TRANSITIONS.get(self.state, frozenset()):
            raise InvalidTransition(f"{self.run_id}: {self.state} -> {state} is not allowed")
        if state.terminal:
            changes.setdefault("activity", "")  # an ended run waits on nothing
        return dataclasses.replace(
            self,
            state=state,
            updated_at=now,
            attempts=0,
            last_error=changes.pop("last_error", ""),
            next_check_at=None if state.terminal else changes.pop("next_check_at", now),
            timeline=(*self.timeline, TimelineEntry(state, now, detail)),
            **changes,
        )

    def resume_state(self) -> RunState | None:
        """Where a retry would resume this run, or None if it cannot be retried."""
        if self.state in RETRY_FROM:
            return RETRY_FROM[self.state]
        if self.state is RunState.FAILED:
            failed_in = next(
                (e.state for e in reversed(self.timeline) if e.state is not RunState.FAILED),
                RunState.RECEIVED,
            )
            if failed_in in (
                RunState.RECEIVED,
                RunState.REGISTERING_DATA,
                RunState.AWAITING_APPROVAL,
                RunState.TRAINING,
            ):
                return RunState.REGISTERING_DATA if self.sha256 else None
            return RunState.DEPLOYING
        return None

    def retried(self, now: dt.datetime) -> Run:
        """This failed run set to resume at the step that failed, with fresh Azure names
        for what must be made anew (``<run id>-r<n>``: a failed job or deployment of the
        old name may still exist)."""
        resume = self.resume_state()
        if resume is None:
            raise InvalidTransition(f"{self.run_id}: a {self.state} run cannot be retried")
        retries = self.retries + 1
        fresh = f"{self.run_id}-r{retries}"
        changes: dict[str, Any] = {}
        if resume is RunState.REGISTERING_DATA:
            changes.update(job_name=fresh, job_status="", model_name="", model_id="")
        else:
            changes.update(deployment=fresh, smoke={}, evaluation={}, previous_deployments={})
        return dataclasses.replace(
            self,
            state=resume,
            updated_at=now,
            attempts=0,
            last_error="",
            retries=retries,
            cancel_requested=False,
            next_check_at=now,
            activity="retrying",
            timeline=(
                *self.timeline,
                TimelineEntry(resume, now, f"retry {retries}: resuming at {resume}"),
            ),
            **changes,
        )

    def updated(self, now: dt.datetime, **changes: Any) -> Run:
        """This run with ``changes`` and no state change."""
        return dataclasses.replace(self, updated_at=now, **changes)

    def retry_later(
        self, now: dt.datetime, error: str, delay_seconds: float, count: bool = True
    ) -> Run:
        """Stay in this state; count the attempt (unless ``count`` is False: a try the
        service throttled), keep the error, check again later."""
        return dataclasses.replace(
            self,
            updated_at=now,
            attempts=self.attempts + 1 if count else self.attempts,
            last_error=error,
            next_check_at=now + dt.timedelta(seconds=delay_seconds),
        )

    # -- persistence --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        data["created_at"] = self.created_at.isoformat()
        data["updated_at"] = self.updated_at.isoformat()
        data["next_check_at"] = self.next_check_at.isoformat() if self.next_check_at else None
        data["lease_until"] = self.lease_until.isoformat() if self.lease_until else None
        data["timeline"] = [
            {"state": e.state.value, "at": e.at.isoformat(), "detail": e.detail}
            for e in self.timeline
        ]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        values = dict(data)
        values["state"] = RunState(values["state"])
        values["dataset"] = DatasetRef(**values["dataset"])
        values["created_at"] = dt.datetime.fromisoformat(values["created_at"])
        values["updated_at"] = dt.datetime.fromisoformat(values["updated_at"])
        nca = values.get("next_check_at")
        values["next_check_at"] = dt.datetime.fromisoformat(nca) if nca else None
        lease = values.get("lease_until")
        values["lease_until"] = dt.datetime.fromisoformat(lease) if lease else None
        values["timeline"] = tuple(
            TimelineEntry(RunState(e["state"]), dt.datetime.fromisoformat(e["at"]), e["detail"])
            for e in values.get("timeline", ())
        )
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
