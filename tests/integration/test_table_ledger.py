"""The run ledger on real Azure Table storage (Azurite), through azure-data-tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from typing import Any

import pytest
import requests.adapters
from azure.data.tables import TableServiceClient, UpdateMode

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
    assert [s.run for s in ledger.active()] == [big]


def test_listing_active_runs_is_one_request_whatever_their_number(
    ledger: TableLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = [ledger.create(_run(f"ft-{i}")) for i in range(5)]
    sent: list[str] = []
    original = requests.adapters.HTTPAdapter.send

    def send(adapter: requests.adapters.HTTPAdapter, request: Any, *args: Any, **kw: Any) -> Any:
        sent.append(str(request.method))
        return original(adapter, request, *args, **kw)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)

    listed = ledger.active()

    assert sent == ["GET"]  # one range query; no run row read
    assert {s.run.run_id: s.run for s in listed} == {c.run.run_id: c.run for c in created if c}


def test_a_listed_run_is_swapped_on_the_version_it_was_listed_at(ledger: TableLedger) -> None:
    stored = ledger.create(_run("ft-1"))
    assert stored is not None
    [listed] = ledger.active()

    saved = ledger.replace(listed, listed.run.updated(NOW, activity="looked at"))

    assert ledger.get("ft-1") == saved  # the run row's version, for the next write
    assert [s.run for s in ledger.active()] == [saved.run]
    with pytest.raises(ConcurrencyConflict):  # listed before that write: stale
        ledger.replace(listed, listed.run.updated(NOW, activity="late"))
    with pytest.raises(ConcurrencyConflict):  # read before that write: stale too
        ledger.replace(stored, stored.run.updated(NOW, activity="late"))
    assert ledger.get("ft-1") == saved


def test_a_listed_version_loses_to_a_write_that_ended_the_run(ledger: TableLedger) -> None:
    stored = ledger.create(_run("ft-1"))
    assert stored is not None
    [listed] = ledger.active()
    rejected = stored.run.moved_to(RunState.REJECTED, NOW, "bad line 3")
    ended = ledger.replace(stored, dataclasses.replace(rejected, published=len(rejected.timeline)))
    assert ledger.active() == []  # its active| row is gone

    with pytest.raises(ConcurrencyConflict):
        ledger.replace(listed, listed.run.updated(NOW, activity="late"))
    assert ledger.get("ft-1") == ended and ledger.active() == []


def test_a_listed_run_that_ends_leaves_the_listing(ledger: TableLedger) -> None:
    stored = ledger.create(_run("ft-1"))
    assert stored is not None
    [listed] = ledger.active()
    rejected = listed.run.moved_to(RunState.REJECTED, NOW, "bad line 3")

    ledger.replace(listed, dataclasses.replace(rejected, published=len(rejected.timeline)))

    assert ledger.active() == []
    after = ledger.get("ft-1")
    assert after is not None and after.run.state is RunState.REJECTED


def test_an_index_row_without_the_run_is_listed_from_the_run_row(
    ledger: TableLedger, table_service: TableServiceClient
) -> None:
    stored = ledger.create(_run("ft-old"))
    assert stored is not None
    # An active| row as written before the rows carried the run.
    table = table_service.get_table_client(ledger._table_name)
    old_row = {"PartitionKey": "runs", "RowKey": "active|ft-old", "State": "RECEIVED"}
    table.upsert_entity(old_row, mode=UpdateMode.REPLACE)

    [listed] = ledger.active()
    assert listed == ledger.get("ft-old")  # read from the run row, with its version
    saved = ledger.replace(listed, listed.run.updated(NOW, activity="looked at"))
    [relisted] = ledger.active()  # the write brought the index row up to date
    assert relisted.run == saved.run and relisted.etag != saved.etag


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
