"""The run ledger port: where runs live between invocations.

Writes are compare-and-swap: ``replace`` succeeds only if the stored record is
still the version the caller read (its ``etag``), otherwise it raises
``ConcurrencyConflict`` and the caller re-reads or leaves the run to the next
reconcile. Active runs are listed from an index, never by scanning finished ones.

People browse runs through ``list_runs``: newest first, optionally in one
state, a page at a time, as ``RunSummary`` values (what a list shows) rather
than whole records, so a listing never loads every run's JSON.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from shared.domain.runs import Run, RunState

MAX_PAGE = 100  # the most runs one ``list_runs`` call answers


@dataclass(frozen=True)
class StoredRun:
    run: Run
    etag: str


@dataclass(frozen=True)
class RunSummary:
    """A run as a listing shows it: identity, where it is, what it is waiting on."""

    run_id: str
    state: RunState
    activity: str
    dataset_name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    job_name: str
    deployment: str
    last_error: str

    @classmethod
    def of(cls, run: Run) -> RunSummary:
        return cls(
            run_id=run.run_id,
            state=run.state,
            activity=run.activity,
            dataset_name=run.dataset.name,
            created_at=run.created_at,
            updated_at=run.updated_at,
            job_name=run.job_name,
            deployment=run.deployment,
            last_error=run.last_error,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "state": self.state.value,
            "activity": self.activity,
            "dataset_name": self.dataset_name,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "job_name": self.job_name,
            "deployment": self.deployment,
            "last_error": self.last_error,
        }


class Ledger(Protocol):
    def get(self, run_id: str) -> StoredRun | None:
        """The run and its version, or None."""
        ...

    def create(self, run: Run) -> StoredRun | None:
        """Store a new run; None if a run with this id already exists."""
        ...

    def replace(self, stored: StoredRun, run: Run) -> StoredRun:
        """Store ``run`` over ``stored`` if unchanged since read; else ConcurrencyConflict."""
        ...

    def active(self) -> list[StoredRun]:
        """Every run that needs attention: active, or with events still to publish."""
        ...

    def list_runs(
        self, state: RunState | None, limit: int, continuation: str | None
    ) -> tuple[list[RunSummary], str | None]:
        """A page of runs, newest first (by creation), only those in ``state`` if given.

        Answers at most ``limit`` (1 to ``MAX_PAGE``) summaries and a continuation
        to pass back for the next page, or None after the last one. A page may hold
        fewer than ``limit`` runs while a continuation follows (a filtered listing
        stops after a bounded amount of work). A continuation is opaque to callers;
        one the ledger cannot have given raises ``InvalidInput``.
        """
        ...

    def ping(self) -> None:
        """Return if the ledger's store answers; raise ``RetryableError`` (unreachable)
        or ``PermanentError`` (e.g. refused credentials) otherwise. Cheap: one point read
        at most, without retries."""
        ...

    def acquire_endpoint(self, endpoint: str, run_id: str) -> str:
        """Take the rollout lock of ``endpoint`` for ``run_id`` if it is free (or held
        by a run that has ended); returns the run holding it afterwards."""
        ...

    def release_endpoint(self, endpoint: str, run_id: str) -> None:
        """Give the lock back, if ``run_id`` holds it."""
        ...

    def link_upload(self, upload_id: str, run_id: str) -> str:
        """Remember which run an upload became; returns the run id linked first."""
        ...

    def upload_run(self, upload_id: str) -> str | None:
        """The run an upload became, if it was handled before."""
        ...
