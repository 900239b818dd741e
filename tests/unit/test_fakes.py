"""The in-memory ledger keeps the ``Ledger`` port's promises that the service tests
rely on (tests/api/test_ledger_listing.py holds the Table adapter to the same ones)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from shared.domain.errors import ConcurrencyConflict, InvalidInput
from shared.domain.ledger import Ledger
from shared.domain.runs import DatasetRef, Run, RunState
from tests.support.fakes import START, MemoryLedger


def _run(run_id: str, minutes: int) -> Run:
    dataset = DatasetRef("datasets", f"{run_id}.jsonl", "http://x/datasets/a.jsonl", '"0x1"', 10)
    return Run.new(run_id, dataset, START + dt.timedelta(minutes=minutes), "uploaded")


def test_writes_are_compare_and_swap() -> None:
    ledger: Ledger = MemoryLedger()
    created = ledger.create(_run("ft-a", 0))
    assert created is not None and ledger.create(_run("ft-a", 0)) is None
    saved = ledger.replace(created, dataclasses.replace(created.run, activity="one"))
    with pytest.raises(ConcurrencyConflict):
        ledger.replace(created, dataclasses.replace(created.run, activity="stale"))
    assert ledger.get("ft-a") == saved and saved.etag != created.etag


def test_runs_are_listed_newest_first_a_page_at_a_time_and_by_state() -> None:
    ledger = MemoryLedger()
    for i in (3, 0, 4, 1, 2):
        run = _run(f"ft-{i}", i)
        ledger.create(run.moved_to(RunState.REJECTED, run.created_at) if i % 2 else run)
    first, following = ledger.list_runs(None, 2, None)
    assert [s.run_id for s in first] == ["ft-4", "ft-3"] and following
    second, following = ledger.list_runs(None, 2, following)
    third, last = ledger.list_runs(None, 2, following)
    assert [s.run_id for s in second + third] == ["ft-2", "ft-1", "ft-0"] and last is None
    rejected, _ = ledger.list_runs(RunState.REJECTED, 10, None)
    assert [s.run_id for s in rejected] == ["ft-3", "ft-1"]
    with pytest.raises(InvalidInput):
        ledger.list_runs(None, 2, "created|000|x")
    with pytest.raises(ValueError, match="limit"):
        ledger.list_runs(None, 0, None)


def test_the_rollout_lock_is_held_until_released_or_its_run_ends() -> None:
    ledger = MemoryLedger()
    active = _run("ft-a", 0).moved_to(RunState.REGISTERING_DATA, START)
    ledger.create(active)
    assert ledger.acquire_endpoint("EP", "ft-a") == "ft-a"
    assert ledger.acquire_endpoint("ep", "ft-b") == "ft-a"  # names are case-insensitive
    ledger.release_endpoint("ep", "ft-b")  # not the holder: nothing happens
    assert ledger.acquire_endpoint("ep", "ft-b") == "ft-a"
    ledger.put(active.moved_to(RunState.FAILED, START))
    assert ledger.acquire_endpoint("ep", "ft-b") == "ft-b"  # an ended holder is taken over
    ledger.release_endpoint("ep", "ft-b")
    assert ledger.locks["ep"] == ""


def test_the_first_link_of_an_upload_wins() -> None:
    ledger = MemoryLedger()
    assert ledger.upload_run("u1") is None
    assert ledger.link_upload("u1", "ft-a") == "ft-a"
    assert ledger.link_upload("u1", "ft-b") == "ft-a"
    assert ledger.upload_run("u1") == "ft-a"
    ledger.ping()
