"""What the timer's sweep sends for an idle run, through the real SDKs, Azurite and the
emulator: one read of the job, the one listing of active runs, and no write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests.adapters

from local.azurite import Azurite
from shared.domain.runs import RunState
from shared.pipeline.sweep import sweep
from tests.support.app import LocalApp, jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]


def _recording(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """(method, host:port, path) of every request sent from now on."""
    sent: list[tuple[str, str, str]] = []
    original: Callable[..., Any] = requests.adapters.HTTPAdapter.send

    def send(adapter: requests.adapters.HTTPAdapter, request: Any, *args: Any, **kw: Any) -> Any:
        parts = urlsplit(str(request.url))
        sent.append((str(request.method), parts.netloc, parts.path))
        return original(adapter, request, *args, **kw)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    return sent


def test_an_idle_training_run_costs_one_job_read_and_no_ledger_write(
    azurite: Azurite, emulator_admin: EmulatorAdmin, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.pipeline.intake import accept_upload

    app = LocalApp.create(azurite, JOB_POLL_SECONDS="0")
    app.upload("idle.jsonl", jsonl(text_examples(12, "idle")))
    emulator_admin.fault_job("ft-*", "stuck")  # Running for ever
    run_id = accept_upload(app.services, "idle.jsonl").run_id
    assert run_id
    ledger = app.services.ledger

    def swept() -> Any:
        assert sweep(app.services).failed == ()
        stored = ledger.get(run_id)
        assert stored is not None
        return stored

    idle = wait_until(
        swept,
        lambda s: s.run.state is RunState.TRAINING and s.run.job_status == "Running",
        what="the run's record to say its job is Running",
    )
    table = urlsplit(azurite.table_endpoint).netloc
    sent = _recording(monkeypatch)

    result = sweep(app.services)

    assert result.due == 1 and result.failed == ()
    to_table = [(method, path) for method, where, path in sent if where == table]
    elsewhere = [(method, path) for method, where, path in sent if where != table]
    assert to_table == [("GET", to_table[0][1])] and "()" in to_table[0][1]  # the listing
    assert elsewhere == [("GET", elsewhere[0][1])] and elsewhere[0][1].endswith(f"/jobs/{run_id}")
    assert ledger.get(run_id) == idle  # nothing written
