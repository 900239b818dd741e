"""What a timer sweep costs per idle run, and that looking before leasing is safe.

An idle run (its job still Running, its record already saying so) is looked at once
and costs no ledger request beyond the sweep's one listing: no read, no lease, no
save. Anything else (something new to record, an action, an error, a run someone
else holds) goes the way it went before, through the lease where it acts. Counts
come from the fakes (every port call is counted in ``faults.calls``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from shared.domain.errors import RetryableError
from shared.domain.ledger import StoredRun
from shared.domain.runs import Run, RunState
from shared.pipeline.reconciler import QUIET_RECHECK_SECONDS
from shared.pipeline.sweep import sweep
from tests.support.fakes import Harness, accept, drive

POLL = 60.0  # JOB_POLL_SECONDS, and the timer's period in these tests


@pytest.fixture
def h() -> Harness:
    return Harness().configure(job_poll_seconds=POLL, deploy_poll_seconds=30.0)


class Writes:
    """The runs the ledger was asked to save, in order (attach before the sweep)."""

    def __init__(self, h: Harness) -> None:
        self.runs: list[Run] = []
        h.ledger.before_replace = lambda _stored, run: self.runs.append(run)

    @property
    def leased(self) -> list[Run]:
        return [run for run in self.runs if run.lease_owner]


def _idle(h: Harness) -> str:
    """A TRAINING run whose job stays Running, swept until its record says so."""
    run_id = accept(h)
    h.azureml.jobs[run_id].script.replace("Running")
    _sweep(h)
    run = h.ledger.run(run_id)
    assert run.state is RunState.TRAINING and run.job_status == "Running", run
    return run_id


def _sweep(h: Harness, seconds: float = POLL) -> None:
    """The next tick of the timer: the clock moves on, then one sweep."""
    h.clock.advance(seconds)
    h.ledger.faults.calls.clear()
    h.azureml.faults.calls.clear()
    assert sweep(h.services).failed == ()


def test_an_idle_run_costs_one_look_and_no_ledger_read_or_write(h: Harness) -> None:
    run_id = _idle(h)
    version = h.ledger.version(run_id)
    writes = Writes(h)

    _sweep(h)

    assert h.azureml.faults.calls == {"get_job": 1}
    assert h.ledger.faults.calls == {"active": 1}  # the listing, and nothing per run
    assert writes.runs == [] and h.ledger.version(run_id) == version


def test_an_idle_run_is_looked_at_by_every_sweep_when_nothing_is_recorded(h: Harness) -> None:
    run_id = _idle(h)
    due = h.ledger.run(run_id).next_check_at
    assert due is not None

    for _ in range(3):
        _sweep(h)
        assert h.azureml.faults.calls["get_job"] == 1  # the timer's period is the floor
    assert h.ledger.run(run_id).next_check_at == due  # where the last change put it


def test_a_longer_poll_than_the_timer_is_recorded_and_honoured(h: Harness) -> None:
    h.configure(job_poll_seconds=5 * 60.0)
    assert h.settings.job_poll_seconds > QUIET_RECHECK_SECONDS
    run_id = _idle(h)
    _sweep(h, 5 * 60.0)  # due: looked at, nothing new, the next look recorded
    writes = Writes(h)

    _sweep(h, 5 * 60.0)

    assert h.azureml.faults.calls == {"get_job": 1}
    assert len(writes.runs) == 1 and writes.leased == []  # one save, no lease
    for _ in range(4):  # the next minutes: not due, not looked at
        _sweep(h, 60.0)
        assert h.azureml.faults.calls == {}
    _sweep(h, 60.0)
    assert h.azureml.faults.calls == {"get_job": 1}
    assert h.ledger.run(run_id).state is RunState.TRAINING


def test_something_new_is_saved_once_without_a_lease(h: Harness) -> None:
    run_id = accept(h)
    h.azureml.jobs[run_id].script.replace("Queued", "Running")
    _sweep(h)  # Queued
    writes = Writes(h)

    _sweep(h)  # Running: news

    run = h.ledger.run(run_id)
    assert run.job_status == "Running" and run.activity == "job Running"
    assert h.azureml.faults.calls == {"get_job": 1}
    assert h.ledger.faults.calls == {"active": 1, "replace": 1}
    assert len(writes.runs) == 1 and writes.leased == []


def test_a_job_that_completed_is_looked_at_again_under_the_lease_before_the_run_moves(
    h: Harness,
) -> None:
    run_id = _idle(h)
    h.azureml.jobs[run_id].script.replace("Completed")
    writes = Writes(h)

    _sweep(h)

    run = h.ledger.run(run_id)
    assert run.state is RunState.DEPLOYING and run.lease_owner == ""
    assert h.azureml.faults.calls["get_job"] == 2  # the look, then the step's own
    assert writes.leased and writes.runs[0].lease_owner  # leased first, then acted


def test_a_throttled_look_is_recorded_without_asking_again(h: Harness) -> None:
    run_id = _idle(h)
    h.azureml.fail("get_job", RetryableError("429 Too Many Requests", retry_after=30.0))

    _sweep(h)

    run = h.ledger.run(run_id)
    assert h.azureml.faults.calls == {"get_job": 1}
    assert run.state is RunState.TRAINING and run.lease_owner == ""
    assert run.last_error.startswith("429") and run.next_check_at is not None
    assert run.next_check_at >= h.clock.now + dt.timedelta(seconds=30)
    _sweep(h, 10.0)  # still backing off: not asked
    assert h.azureml.faults.calls == {}


def test_a_run_changed_after_it_was_listed_is_not_overwritten_by_its_look(h: Harness) -> None:
    run_id = accept(h)
    h.azureml.jobs[run_id].script.replace("Queued", "Running")
    _sweep(h)

    def cancel_first(stored: StoredRun, _run: Run) -> None:
        # A cancel request lands between the listing and the look's save.
        h.ledger.before_replace = None
        current = h.ledger.run(run_id)
        h.ledger.put(dataclasses.replace(current, cancel_requested=True))

    h.ledger.before_replace = cancel_first
    _sweep(h)

    run = h.ledger.run(run_id)
    assert run.cancel_requested and run.job_status != "Running"  # the look lost its race
    assert drive(h, run_id, RunState.CANCELED).cancel_requested


def test_a_run_leased_by_a_live_reconcile_is_not_looked_at(h: Harness) -> None:
    run_id = _idle(h)
    current = h.ledger.run(run_id)
    until = h.clock.now + dt.timedelta(seconds=POLL + 30)
    h.ledger.put(dataclasses.replace(current, lease_owner="elsewhere", lease_until=until))
    writes = Writes(h)

    _sweep(h)

    assert h.azureml.faults.calls == {}
    assert writes.runs == [] and h.ledger.run(run_id).lease_owner == "elsewhere"


def test_an_idle_promotion_is_looked_at_without_a_lease(h: Harness) -> None:
    h.azureml.traffic_states = ("Updating",) * 50  # the traffic update takes a while
    run_id = accept(h)
    drive(h, run_id, RunState.PROMOTING)
    _sweep(h)  # records "traffic update Updating" if it was not yet
    writes = Writes(h)

    _sweep(h)

    assert h.ledger.run(run_id).state is RunState.PROMOTING
    assert h.azureml.faults.calls == {"get_endpoint": 1}
    assert h.ledger.faults.calls == {"active": 1} and writes.runs == []
