"""The run ledger port: where runs live between invocations.

Writes are compare-and-swap: ``replace`` succeeds only if the stored record is
still the version the caller read (its ``etag``), otherwise it raises
``ConcurrencyConflict`` and the caller re-reads or leaves the run to the next
reconcile. Active runs are listed from an index, never by scanning finished ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from shared.runs import Run


@dataclass(frozen=True)
class StoredRun:
    run: Run
    etag: str


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
