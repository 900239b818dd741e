"""A run being reconciled elsewhere is left alone (the lease), through real storage."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from local.azurite import Azurite
from shared.reconciler import reconcile
from shared.runs import RunState
from tests.support.app import LocalApp, jsonl, text_examples

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]


def test_a_leased_run_is_not_acted_on_twice(azurite: Azurite) -> None:
    app = LocalApp.create(azurite)
    app.upload("leased.jsonl", jsonl(text_examples(12)))
    from shared.intake import accept_upload

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
    from shared.intake import accept_upload

    run_id = accept_upload(app.services, "bug.jsonl").run_id
    assert run_id
    services = dataclasses.replace(app.services, azureml=_Broken(app.services.azureml))
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
