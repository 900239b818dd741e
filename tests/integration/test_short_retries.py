"""Which refused Azure ML calls the app retries inside the call (``shared/adapters/retry.py``).

The app's own adapter against the emulator: a 429/503 asking for a short wait is
sent again after that wait, within the call; anything else comes back at once
as a ``RetryableError`` for the reconciler to schedule.
"""

from __future__ import annotations

import uuid

import pytest

from local.azurite import Azurite
from shared.adapters.retry import SHORT_RETRIES, SHORT_WAIT_SECONDS
from shared.domain.errors import RetryableError
from tests.support.app import LocalApp
from tests.support.azureml import EmulatorAdmin

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]


@pytest.fixture
def app(azurite: Azurite) -> LocalApp:
    return LocalApp.create(azurite)


def _job_route(name: str) -> str:
    return f"GET .*/jobs/{name}$"


@pytest.mark.parametrize("status", [429, 503])
def test_a_short_retry_after_is_waited_out_inside_the_call(
    app: LocalApp, emulator_admin: EmulatorAdmin, status: int
) -> None:
    name = f"nojob-{uuid.uuid4().hex[:8]}"
    emulator_admin.fault_requests(
        _job_route(name), status=status, count=1, retry_after=1, kinds=["arm"]
    )

    assert app.services.azureml.get_job(name) is None  # the retried GET found no such job

    tries = emulator_admin.requests(f"/jobs/{name}")
    assert [(t["status"], t["injected"]) for t in tries] == [(status, True), (404, False)]
    assert float(tries[1]["at"]) - float(tries[0]["replied"]) >= 1.0  # waited as asked


def test_a_long_retry_after_goes_back_to_the_reconciler_at_once(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    name = f"nojob-{uuid.uuid4().hex[:8]}"
    wait = int(SHORT_WAIT_SECONDS) + 28
    emulator_admin.fault_requests(_job_route(name), status=429, count=1, retry_after=wait)

    with pytest.raises(RetryableError) as raised:
        app.services.azureml.get_job(name)

    assert raised.value.retry_after == wait
    assert len(emulator_admin.requests(f"/jobs/{name}")) == 1


def test_a_5xx_without_retry_after_is_not_retried_in_the_call(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    name = f"nojob-{uuid.uuid4().hex[:8]}"
    emulator_admin.fault_requests(_job_route(name), status=503, count=1)

    with pytest.raises(RetryableError):
        app.services.azureml.get_job(name)

    assert len(emulator_admin.requests(f"/jobs/{name}")) == 1


def test_in_call_retries_are_bounded(app: LocalApp, emulator_admin: EmulatorAdmin) -> None:
    name = f"nojob-{uuid.uuid4().hex[:8]}"
    emulator_admin.fault_requests(_job_route(name), status=429, retry_after=1)  # every time

    with pytest.raises(RetryableError):
        app.services.azureml.get_job(name)

    assert len(emulator_admin.requests(f"/jobs/{name}")) == 1 + SHORT_RETRIES
