"""A run being reconciled elsewhere is left alone (the lease), through real storage;
the heartbeat keeps a slow step's lease, and a crashed owner's runs out in seconds."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import threading
import time
from typing import Any, cast

import pytest

from local.azurite import Azurite
from shared.domain.azureml import AzureML, JobView
from shared.domain.errors import RetryableError
from shared.domain.ledger import Ledger, StoredRun
from shared.domain.runs import Run, RunState
from shared.pipeline import lease as leases
from shared.pipeline.reconciler import reconcile
from tests.support.app import LocalApp, jsonl, text_examples
from tests.support.azureml import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]


def test_a_leased_run_is_not_acted_on_twice(azurite: Azurite) -> None:
    app = LocalApp.create(azurite)
    app.upload("leased.jsonl", jsonl(text_examples(12)))
    from shared.pipeline.intake import accept_upload

    run_id = accept_upload(app.services, "leased.jsonl").run_id
    assert run_id
    stored = app.services.ledger.get(run_id)
    assert stored is not None and stored.run.state is RunState.TRAINING
    now = app.services.now()
    leased = app.services.ledger.replace(
        stored,
        dataclasses.replace(
            stored.run,
            lease_owner="someone-else",
            lease_until=now + dt.timedelta(minutes=2),
            next_check_at=now,
        ),
    )
    after = reconcile(app.services, run_id)
    assert after == leased.run  # untouched
    # Once the lease expires, reconcile proceeds.
    expired = app.services.ledger.replace(
        leased, dataclasses.replace(leased.run, lease_until=now - dt.timedelta(seconds=1))
    )
    moved = reconcile(app.services, run_id)
    assert moved is not None and moved != expired.run and moved.lease_owner == ""


class _Broken:
    """The Azure ML port with a bug in one call: an exception no adapter translated."""

    def __init__(self, real: object) -> None:
        self._real = real

    def __getattr__(self, name: str) -> object:
        if name == "get_job":

            def broken(*_: object) -> object:
                raise TypeError("'NoneType' object is not subscriptable")

            return broken
        return getattr(self._real, name)


def test_an_unexpected_error_is_recorded_the_lease_freed_and_the_tries_capped(
    azurite: Azurite,
) -> None:
    app = LocalApp.create(azurite, MAX_ATTEMPTS="3")
    app.upload("bug.jsonl", jsonl(text_examples(12)))
    from shared.pipeline.intake import accept_upload

    run_id = accept_upload(app.services, "bug.jsonl").run_id
    assert run_id
    services = dataclasses.replace(
        app.services, azureml=cast(AzureML, _Broken(app.services.azureml))
    )
    ledger = app.services.ledger

    def due_now() -> None:
        stored = ledger.get(run_id)
        assert stored is not None
        ledger.replace(stored, dataclasses.replace(stored.run, next_check_at=services.now()))

    due_now()
    first = reconcile(services, run_id)
    assert first is not None and first.state is RunState.TRAINING
    assert first.attempts == 1 and first.lease_owner == ""  # recorded, not left leased
    assert first.last_error == (
        "unexpected error in TRAINING: TypeError: 'NoneType' object is not subscriptable"
    )
    due_now()
    assert (second := reconcile(services, run_id)) is not None and second.attempts == 2
    due_now()
    final = reconcile(services, run_id)
    assert final is not None and final.state is RunState.FAILED
    assert final.last_error.startswith("gave up after 3 attempts (MAX_ATTEMPTS=3): unexpected")


# -- the heartbeat (shared/pipeline/lease.py) ------------------------------------------------------
# Short leases (a couple of seconds) stand in for the 15 s one, so a step "slower than
# the lease" takes a few seconds here. They keep the real proportions (a renewal every
# third of a lease), so a renewal may be over a second late on a busy machine before a
# lease lapses. Waits poll with deadlines; the assertions on time are orderings (who
# wrote after whose lease ran out) or generous bounds, not durations.

SHORT_LEASE = 2.4  # seconds; renewed every 0.8 s (RENEWALS_PER_LEASE = 3)


@pytest.fixture
def short_lease(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(leases, "LEASE_SECONDS", SHORT_LEASE)
    return SHORT_LEASE


class _SlowJobs:
    """The Azure ML port, with ``get_job`` held until the test lets it go (a slow step)."""

    def __init__(self, real: AzureML) -> None:
        self._real = real
        self.entered = threading.Event()
        self.release = threading.Event()
        self.get_job_calls = 0
        self.cancel_job_calls = 0

    def get_job(self, name: str) -> JobView | None:
        self.get_job_calls += 1
        self.entered.set()
        if not self.release.wait(timeout=60):
            raise RuntimeError("the test never released get_job")
        return self._real.get_job(name)

    def cancel_job(self, name: str) -> None:
        self.cancel_job_calls += 1
        self._real.cancel_job(name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Crashable:
    """A ledger that stops answering at ``crash()``, like a process that was SIGKILLed:
    later calls never return to the caller and write nothing. It notes the lease of
    every write let through before, the last of which a crashed owner may have made.
    ``bury()`` ends the waiting calls with an error so their threads can finish."""

    def __init__(self, real: Ledger) -> None:
        self._real = real
        self._crashed = threading.Event()
        self._buried = threading.Event()
        self.leases_written: list[dt.datetime] = []

    def crash(self) -> None:
        self._crashed.set()

    def bury(self) -> None:
        self._buried.set()

    def replace(self, stored: StoredRun, run: Run) -> StoredRun:
        if self._crashed.is_set():
            self._buried.wait(timeout=60)
            raise RuntimeError("this process is dead")
        if run.lease_until is not None:
            self.leases_written.append(run.lease_until)
        return self._real.replace(stored, run)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _Recording:
    """A ledger that remembers every run it saved, in order."""

    def __init__(self, real: Ledger) -> None:
        self._real = real
        self.saved: list[Run] = []
        self._lock = threading.Lock()

    def replace(self, stored: StoredRun, run: Run) -> StoredRun:
        result = self._real.replace(stored, run)
        with self._lock:
            self.saved.append(result.run)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _training_run(app: LocalApp, name: str) -> str:
    """A run in TRAINING, due now, with no lease."""
    from shared.pipeline.intake import accept_upload

    app.upload(name, jsonl(text_examples(12, name)))
    run_id = accept_upload(app.services, name).run_id
    assert run_id
    stored = app.services.ledger.get(run_id)
    assert stored is not None and stored.run.state is RunState.TRAINING
    app.services.ledger.replace(
        stored, dataclasses.replace(stored.run, next_check_at=app.services.now())
    )
    return run_id


def _stored(app: LocalApp, run_id: str) -> StoredRun:
    stored = app.services.ledger.get(run_id)
    assert stored is not None
    return stored


def test_a_step_slower_than_the_lease_keeps_it_and_saves_over_its_own_heartbeat(
    azurite: Azurite, short_lease: float
) -> None:
    app = LocalApp.create(azurite)
    run_id = _training_run(app, "slow-step.jsonl")
    slow = _SlowJobs(app.services.azureml)
    services = dataclasses.replace(app.services, azureml=cast(AzureML, slow))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        stepping = pool.submit(reconcile, services, run_id)
        assert slow.entered.wait(timeout=30), "the step never started"
        taken = _stored(app, run_id).run
        assert taken.lease_owner and taken.lease_until is not None
        # Watch for two lease lengths: the lease never runs out, it moves forward.
        deadline = taken.lease_until + dt.timedelta(seconds=short_lease)

        def still_leased() -> Run:
            run = _stored(app, run_id).run
            assert run.lease_owner == taken.lease_owner
            assert run.lease_until is not None and run.lease_until > app.services.now()
            return run

        wait_until(
            still_leased,
            lambda run: run.lease_until is not None and run.lease_until > deadline,
            what="the heartbeat to carry the lease past two lease lengths",
            timeout=30,
        )
        # Long past the first lease: another reconcile still leaves the run alone.
        other = reconcile(app.services, run_id)
        assert other is not None and other.lease_owner == taken.lease_owner
        slow.release.set()
        moved = stepping.result(timeout=30)
    assert moved is not None and moved.lease_owner == "" and moved.lease_until is None
    assert moved.state is not RunState.TRAINING or moved.activity.startswith("job ")
    assert _stored(app, run_id).run == moved
    # One step: the final save did not lose its compare-and-swap to its own heartbeat
    # (that would have re-read and stepped again).
    assert slow.get_job_calls == 1


def test_a_crashed_owner_frees_the_run_once_its_lease_runs_out(
    azurite: Azurite, short_lease: float
) -> None:
    app = LocalApp.create(azurite)
    run_id = _training_run(app, "crashed-owner.jsonl")
    slow = _SlowJobs(app.services.azureml)
    dying_ledger = _Crashable(app.services.ledger)
    dying = dataclasses.replace(
        app.services, azureml=cast(AzureML, slow), ledger=cast(Ledger, dying_ledger)
    )
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(reconcile, dying, run_id)
        assert slow.entered.wait(timeout=30), "the step never started"
        first = _stored(app, run_id).run
        first_until = first.lease_until
        assert first_until is not None
        wait_until(
            lambda: _stored(app, run_id).run.lease_until,
            lambda until: until is not None and until > first_until,
            what="a renewal (the heartbeat is running)",
        )
        dying_ledger.crash()  # the owner, mid-step, writes nothing more
        crashed_at = time.monotonic()
        # Another reconcile leaves the run alone until the lease runs out, then takes over.
        taken_over = wait_until(
            lambda: reconcile(app.services, run_id),
            lambda run: run is not None and run.lease_owner != first.lease_owner,
            what="another reconcile to take the run over",
            timeout=30,
            interval=0.1,
        )
        recovery = time.monotonic() - crashed_at
        assert taken_over is not None and taken_over.lease_owner == ""
        assert taken_over.updated_at >= max(dying_ledger.leases_written)  # not a moment early
        assert slow.get_job_calls == 1  # the dead owner's step never went on
        # A bound, not a benchmark: one lease length, plus slack for a busy machine.
        assert recovery < short_lease + 10, recovery
    finally:
        slow.release.set()
        dying_ledger.bury()
        pool.shutdown(wait=True)


def test_a_renewal_that_loses_its_race_never_overwrites_the_other_writer(
    azurite: Azurite, short_lease: float, caplog: pytest.LogCaptureFixture
) -> None:
    app = LocalApp.create(azurite)
    run_id = _training_run(app, "cancel-under-lease.jsonl")
    slow = _SlowJobs(app.services.azureml)
    recording = _Recording(app.services.ledger)
    services = dataclasses.replace(
        app.services, azureml=cast(AzureML, slow), ledger=cast(Ledger, recording)
    )
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        stepping = pool.submit(reconcile, services, run_id)
        assert slow.entered.wait(timeout=30), "the step never started"
        # Someone asks for a cancel while the step works (as request_cancel does).
        leased = _stored(app, run_id)
        cancel = app.services.ledger.replace(
            leased, dataclasses.replace(leased.run, cancel_requested=True, next_check_at=None)
        )
        wait_until(
            lambda: [r.getMessage() for r in caplog.records if r.name == "shared.pipeline.lease"],
            lambda messages: any("lease lost" in m for m in messages),
            what="the next renewal to lose its race",
        )
        assert _stored(app, run_id).etag == cancel.etag  # the lost renewal wrote nothing
        slow.release.set()
        final = stepping.result(timeout=30)
    assert final is not None and final.state is RunState.CANCELED, final
    after_cancel = recording.saved[recording.saved.index(leased.run) + 1 :]
    assert after_cancel and all(run.cancel_requested for run in after_cancel)
    assert slow.get_job_calls == 2  # the stale step dropped its decision; a fresh one ran


def test_the_heartbeat_renews_only_the_lease_and_hands_back_its_newest_version(
    azurite: Azurite,
) -> None:
    app = LocalApp.create(azurite)
    run_id = _training_run(app, "heartbeat.jsonl")
    ledger, clock = app.services.ledger, app.services.now
    read = _stored(app, run_id)
    leased = leases.take(ledger, read, "owner-1", clock(), seconds=2)
    taken_until = leased.run.lease_until
    assert taken_until is not None
    with leases.Heartbeat(ledger, leased, clock, lease_seconds=2, renew_seconds=0.2) as beat:
        wait_until(
            lambda: _stored(app, run_id).run.lease_until,
            lambda until: until is not None and until > taken_until,
            what="a renewal",
        )
        assert beat.held
        beat.check()
    newest = beat.newest()
    assert newest.etag == _stored(app, run_id).etag
    assert newest.run == dataclasses.replace(read.run, **_lease_of(newest.run))  # I1


def test_a_lost_race_loses_the_lease_for_good(azurite: Azurite) -> None:
    app = LocalApp.create(azurite)
    run_id = _training_run(app, "lost-race.jsonl")
    ledger, clock = app.services.ledger, app.services.now
    leased = leases.take(ledger, _stored(app, run_id), "owner-1", clock(), seconds=5)
    beat = leases.Heartbeat(ledger, leased, clock, lease_seconds=5, renew_seconds=0.05)
    with beat:
        other = ledger.replace(leased, dataclasses.replace(leased.run, cancel_requested=True))
        wait_until(lambda: beat.held, lambda held: not held, what="the lease to be lost")
        with pytest.raises(leases.LeaseLost):
            beat.check()
    with pytest.raises(leases.LeaseLost):
        beat.newest()
    assert _stored(app, run_id) == other  # untouched by the heartbeat


class _Unreachable:
    """A ledger whose writes all fail as if the table could not be reached."""

    def __init__(self, real: Ledger) -> None:
        self._real = real

    def replace(self, stored: StoredRun, run: Run) -> StoredRun:
        raise RetryableError("the table did not answer")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_lease_that_cannot_be_renewed_runs_out_and_the_step_may_not_act(
    azurite: Azurite,
) -> None:
    app = LocalApp.create(azurite)
    run_id = _training_run(app, "unrenewable.jsonl")
    ledger, clock = app.services.ledger, app.services.now
    leased = leases.take(ledger, _stored(app, run_id), "owner-1", clock(), seconds=0.5)
    failing = cast(Ledger, _Unreachable(ledger))
    with leases.Heartbeat(failing, leased, clock, lease_seconds=0.5, renew_seconds=0.1) as beat:
        assert beat.held
        wait_until(lambda: beat.held, lambda held: not held, what="the lease to run out")
        with pytest.raises(leases.LeaseLost):
            beat.check()
    # Transient failures are not a lost race: the lease ran out, nobody else wrote.
    assert beat.newest() == leased


class _Flaky:
    """A ledger whose first ``failures`` writes fail as if the table timed out."""

    def __init__(self, real: Ledger, failures: int) -> None:
        self._real = real
        self.failures = failures
        self.calls = 0

    def replace(self, stored: StoredRun, run: Run) -> StoredRun:
        self.calls += 1
        if self.calls <= self.failures:
            raise RetryableError("the table timed out")
        return self._real.replace(stored, run)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_a_failed_renewal_is_tried_again_soon_and_the_lease_holds(
    azurite: Azurite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "RETRY_SECONDS", 0.05)
    app = LocalApp.create(azurite)
    run_id = _training_run(app, "flaky-renewal.jsonl")
    ledger, clock = app.services.ledger, app.services.now
    leased = leases.take(ledger, _stored(app, run_id), "owner-1", clock(), seconds=3)
    flaky = _Flaky(ledger, failures=3)
    beat = leases.Heartbeat(cast(Ledger, flaky), leased, clock, 3, renew_seconds=1)

    def held_calls() -> int:
        assert beat.held  # never lapses: three failures cost 0.15 s, not three beats
        return flaky.calls

    with beat:
        wait_until(held_calls, lambda calls: calls > 3, what="a renewal to land", timeout=10)
    assert beat.newest().etag == _stored(app, run_id).etag


def _lease_of(run: Run) -> dict[str, Any]:
    return {"lease_owner": run.lease_owner, "lease_until": run.lease_until}
