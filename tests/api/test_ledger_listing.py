"""Listing runs from the ledger on Azurite: newest first, paged, filtered by state,
kept current by every write; and the cheap reachability check behind health."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from azure.data.tables import TableServiceClient

from local.ports import free_port
from shared.adapters import tables
from shared.adapters.tables import TableLedger
from shared.domain.errors import InvalidInput, RetryableError
from shared.domain.ledger import RunSummary
from shared.domain.runs import DatasetRef, Run, RunState

pytestmark = pytest.mark.integration
T0 = dt.datetime(2026, 11, 29, 8, 0, tzinfo=dt.UTC)


def _run(run_id: str, minutes: int) -> Run:
    dataset = DatasetRef("datasets", f"{run_id}.jsonl", "http://x/datasets/a.jsonl", '"0x1"', 10)
    created = T0 + dt.timedelta(minutes=minutes)
    return Run.new(run_id, dataset, created, "uploaded")


@pytest.fixture
def ledger(table_service: TableServiceClient) -> TableLedger:
    return TableLedger(table_service, "runs" + uuid.uuid4().hex[:12])


def _all(
    ledger: TableLedger, state: RunState | None, limit: int
) -> tuple[list[str], list[list[str]]]:
    pages: list[list[str]] = []
    continuation = None
    while True:
        summaries, continuation = ledger.list_runs(state, limit, continuation)
        pages.append([s.run_id for s in summaries])
        if continuation is None:
            return [r for page in pages for r in page], pages


def test_runs_are_listed_newest_first_a_page_at_a_time(ledger: TableLedger) -> None:
    # Created out of order: the listing follows creation time, not insertion.
    for i in (3, 0, 4, 1, 2):
        assert ledger.create(_run(f"ft-{i}", i)) is not None
    every, pages = _all(ledger, None, 2)
    assert every == ["ft-4", "ft-3", "ft-2", "ft-1", "ft-0"]
    assert pages == [["ft-4", "ft-3"], ["ft-2", "ft-1"], ["ft-0"]]
    # An exact fit ends with no continuation, not an empty page after it.
    assert _all(ledger, None, 5)[1] == [["ft-4", "ft-3", "ft-2", "ft-1", "ft-0"]]
    assert ledger.list_runs(None, 100, None) == (
        [RunSummary.of(_run(f"ft-{i}", i)) for i in (4, 3, 2, 1, 0)],
        None,
    )


def test_an_empty_ledger_lists_nothing(ledger: TableLedger) -> None:
    assert ledger.list_runs(None, 20, None) == ([], None)
    assert ledger.list_runs(RunState.LIVE, 20, None) == ([], None)


def test_the_listing_follows_every_change_of_state(ledger: TableLedger) -> None:
    stored = {}
    for i in range(5):
        created = ledger.create(_run(f"ft-{i}", i))
        assert created is not None
        stored[i] = created
    for i in (1, 3):
        moved = stored[i].run.moved_to(
            RunState.REJECTED, T0 + dt.timedelta(hours=1), "bad", last_error="line 3: bad"
        )
        stored[i] = ledger.replace(stored[i], moved)
    stored[4] = ledger.replace(
        stored[4],
        dataclasses.replace(
            stored[4].run.moved_to(RunState.REGISTERING_DATA, T0, "valid"),
            activity="submitting the job",
            job_name="ft-4",
        ),
    )

    assert _all(ledger, RunState.REJECTED, 1) == (["ft-3", "ft-1"], [["ft-3"], ["ft-1"]])
    assert _all(ledger, RunState.RECEIVED, 10)[0] == ["ft-2", "ft-0"]
    summaries, _ = ledger.list_runs(None, 10, None)
    assert summaries[0] == RunSummary.of(stored[4].run)
    assert summaries[0].activity == "submitting the job" and summaries[0].job_name == "ft-4"
    rejected = next(s for s in summaries if s.run_id == "ft-3")
    assert rejected.state is RunState.REJECTED and rejected.last_error == "line 3: bad"
    assert ledger.list_runs(RunState.LIVE, 10, None) == ([], None)


def test_a_lost_compare_and_swap_leaves_the_listing_as_it_was(ledger: TableLedger) -> None:
    stored = ledger.create(_run("ft-a", 0))
    assert stored is not None
    ledger.replace(stored, stored.run.updated(T0, activity="first"))
    with pytest.raises(Exception, match="changed since it was read"):
        ledger.replace(stored, stored.run.updated(T0, activity="stale"))
    assert ledger.list_runs(None, 1, None)[0][0].activity == "first"


def test_a_listing_that_runs_out_of_round_trips_resumes_where_the_service_stopped(
    ledger: TableLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Azure answers a sparse filtered query with short (even empty) pages and a
    # continuation; Azurite does not, so its pages are cut to one row here, and
    # a listing may make two round trips: two rows, then the service's position.
    for i in range(5):
        assert ledger.create(_run(f"ft-{i}", i)) is not None
    client = ledger._client()
    query = client.query_entities

    def one_row_pages(*args: Any, **kwargs: Any) -> Any:
        return query(*args, **{**kwargs, "results_per_page": 1})

    monkeypatch.setattr(client, "query_entities", one_row_pages)
    monkeypatch.setattr(tables, "LIST_ROUND_TRIPS", 2)
    _, pages = _all(ledger, None, 3)
    assert pages == [["ft-4", "ft-3"], ["ft-2", "ft-1"], ["ft-0"]]


def test_a_continuation_outside_the_listing_is_refused(ledger: TableLedger) -> None:
    for bad in (
        "run|ft-a",
        "",
        "[]",
        json.dumps({"from": "run|ft-a"}),
        json.dumps({"from": "active|ft-a"}),
        json.dumps({"from": "created}"}),
        json.dumps({"from": 3}),
        json.dumps({"from": "created|", "other": 1}),
        json.dumps({"from": "created|", "resume": "x"}),
        json.dumps({"from": "created|", "resume": {"PartitionKey": "runs"}}),
    ):
        with pytest.raises(InvalidInput):
            ledger.list_runs(None, 10, bad)
    with pytest.raises(ValueError):
        ledger.list_runs(None, 101, None)


def test_ping_answers_quickly_even_before_the_table_exists(ledger: TableLedger) -> None:
    ledger.ping()  # no table yet: the service answered, that is reachable
    ledger.create(_run("ft-a", 0))
    ledger.ping()


def test_ping_of_a_closed_port_fails_fast_and_retryable() -> None:
    port = free_port()
    service = TableServiceClient.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"TableEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    started = dt.datetime.now(dt.UTC)
    with pytest.raises(RetryableError, match="reaching the run ledger"):
        TableLedger(service, "runs").ping()
    assert dt.datetime.now(dt.UTC) - started < dt.timedelta(seconds=3)
