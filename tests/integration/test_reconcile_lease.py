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
