"""The run ledger on real Azure Table storage (Azurite), through azure-data-tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid

import pytest
from azure.data.tables import TableServiceClient

from shared.adapters.tables import TableLedger
from shared.domain.errors import ConcurrencyConflict
from shared.domain.runs import DatasetRef, Run, RunState

pytestmark = pytest.mark.integration
NOW = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)


def _run(run_id: str) -> Run:
    dataset = DatasetRef("datasets", "a.jsonl", "http://x/datasets/a.jsonl", '"0x1"', 10)
    return Run.new(run_id, dataset, NOW, "uploaded")


@pytest.fixture
def ledger(table_service: TableServiceClient) -> TableLedger:
    return TableLedger(table_service, "runs" + uuid.uuid4().hex[:12])


def test_create_get_and_compare_and_swap(ledger: TableLedger) -> None:
    stored = ledger.create(_run("ft-a"))
    assert stored is not None
    assert ledger.create(_run("ft-a")) is None  # exists: not an error, not overwritten

    moved = stored.run.moved_to(RunState.REGISTERING_DATA, NOW, "valid")
    saved = ledger.replace(stored, moved)
    assert saved.etag != stored.etag
    assert ledger.get("ft-a") == saved

    with pytest.raises(ConcurrencyConflict):
        ledger.replace(stored, moved.updated(NOW, job_name="late"))  # stale etag
    assert ledger.get("ft-a") == saved


def test_active_lists_only_active_runs(ledger: TableLedger) -> None:
    first = ledger.create(_run("ft-1"))
    second = ledger.create(_run("ft-2"))
    assert first is not None and second is not None
    assert {s.run.run_id for s in ledger.active()} == {"ft-1", "ft-2"}

    rejected = ledger.replace(first, first.run.moved_to(RunState.REJECTED, NOW, "bad line 3"))
    # Ended, but its lifecycle events are not published yet: still listed.
    assert {s.run.run_id for s in ledger.active()} == {"ft-1", "ft-2"}
    done = dataclasses.replace(rejected.run, published=len(rejected.run.timeline))
    ledger.replace(rejected, done)
    assert [s.run.run_id for s in ledger.active()] == ["ft-2"]
    assert ledger.get("ft-1") is not None


def test_large_records_are_split_not_truncated(ledger: TableLedger) -> None:
    big = _run("ft-big").updated(NOW, validation={"notes": "é" * 100_000})
    stored = ledger.create(big)
    assert stored is not None
    loaded = ledger.get("ft-big")
    assert loaded is not None and loaded.run == big


def test_missing_run_is_none(ledger: TableLedger) -> None:
    assert ledger.get("nope") is None


def test_endpoint_lock_is_held_by_one_active_run_and_freed_by_its_end(
    ledger: TableLedger,
) -> None:
    first = ledger.create(_run("ft-first"))
    second = ledger.create(_run("ft-second"))
    assert first is not None and second is not None
    assert ledger.acquire_endpoint("ep", "ft-first") == "ft-first"
    assert ledger.acquire_endpoint("ep", "ft-second") == "ft-first"  # busy
    assert ledger.acquire_endpoint("ep", "ft-first") == "ft-first"  # re-entrant
    ledger.release_endpoint("ep", "ft-first")
    assert ledger.acquire_endpoint("ep", "ft-second") == "ft-second"
    # A holder that ended without releasing (a crash) does not block others.
    ledger.replace(second, second.run.moved_to(RunState.FAILED, NOW, "crashed"))
    assert ledger.acquire_endpoint("ep", "ft-first") == "ft-first"
