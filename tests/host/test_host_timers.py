"""The host's timers: on schedule, never overlapping, run on start-up, past due when behind."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

from local.azurite import Azurite
from local.functions_host import FunctionsHost
from tests.support.azureml import wait_until
from tests.support.functions_host import HostedApp, HostFactory, host_status

pytestmark = pytest.mark.integration

EVERY_SECOND = "*/1 * * * * *"


def test_a_timer_fires_on_its_schedule(hosted_app: HostedApp, start_host: HostFactory) -> None:
    start_host(TICK_SCHEDULE=EVERY_SECOND)

    ticks = hosted_app.records.wait_for("tick", 3)

    seconds = [int(t["start"]) for t in ticks]
    assert len(set(seconds)) == len(seconds), seconds  # one run per occurrence


def test_a_slow_timer_never_overlaps_itself(hosted_app: HostedApp, start_host: HostFactory) -> None:
    host = start_host(TICK_SCHEDULE=EVERY_SECOND, TICK_SECONDS="2.5")

    ticks = hosted_app.records.wait_for("tick", 3, timeout=60)

    ordered = sorted(ticks, key=lambda t: t["start"])
    for earlier, later in itertools.pairwise(ordered):
        assert later["start"] >= earlier["end"], (earlier, later)
    assert host_status(host)["timers"]["tick"]["skipped"] > 0
    assert "skipped the occurrence" in host.log_text()


def test_run_on_startup_runs_once_at_start(hosted_app: HostedApp, start_host: HostFactory) -> None:
    host = start_host()

    started = hosted_app.records.wait_for("startup")
    wait_until(
        lambda: host_status(host)["timers"]["on_start"],
        lambda timer: timer["runs"] == 1 and not timer["running"],
        what="the start-up run to finish",
    )

    assert started == [{"kind": "startup", "at": started[0]["at"], "past_due": False}]


def test_a_monitored_timer_missed_while_down_runs_past_due_at_start(
    hosted_app: HostedApp, start_host: HostFactory, azurite: Azurite
) -> None:
    # Schedule status as a previous host left it: the next occurrence has passed.
    host_id = FunctionsHost(hosted_app.app_dir, hosted_app.values).host_id
    missed = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    status = {"Last": (missed - dt.timedelta(days=1)).isoformat(), "Next": missed.isoformat()}
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        hosts = service.get_container_client("azure-webjobs-hosts")
        with contextlib.suppress(ResourceExistsError):
            hosts.create_container()
        hosts.upload_blob(
            f"timers/{host_id}/Host.Functions.monitored/status", json.dumps(status), overwrite=True
        )

    host = start_host()
    runs = hosted_app.records.wait_for("monitored")

    assert runs[0]["past_due"] is True
    assert runs[0]["status"]["Next"] == missed.isoformat()
    assert "is past due" in host.log_text()


def test_the_admin_api_runs_a_timer_now(hosted_app: HostedApp, start_host: HostFactory) -> None:
    host = start_host()
    url = f"{host.base_url}/admin/functions/tick"

    assert requests.post(url, json={"input": ""}, timeout=10).status_code == 401
    answer = requests.post(
        url, json={"input": ""}, headers={"x-functions-key": host.master_key}, timeout=10
    )

    assert answer.status_code == 202
    assert hosted_app.records.wait_for("tick")[0]["past_due"] is False


# --- shutdown ---------------------------------------------------------------------------------


def _start_tick(host: FunctionsHost) -> None:
    answer = requests.post(
        f"{host.base_url}/admin/functions/tick",
        headers={"x-functions-key": host.master_key},
        timeout=10,
    )
    assert answer.status_code == 202
    wait_until(
        lambda: host_status(host)["timers"]["tick"]["running"],
        bool,
        what="the tick to be running",
    )


def test_stopping_lets_a_running_invocation_finish_within_the_grace_period(
    hosted_app: HostedApp, start_host: HostFactory
) -> None:
    host = start_host(TICK_SECONDS="1.5")
    _start_tick(host)

    host.stop()  # SIGTERM

    assert host.returncode == 0
    assert len(hosted_app.records.of("tick")) == 1  # it finished before the host exited
    assert "Host stopped" in host.log_text()


def test_stopping_abandons_an_invocation_that_outlives_the_grace_period(
    hosted_app: HostedApp, start_host: HostFactory
) -> None:
    host = start_host(grace_seconds=0.5, TICK_SECONDS="120")
    _start_tick(host)

    host.stop()

    assert host.returncode == 0
    assert hosted_app.records.of("tick") == []
    assert "Abandoning 1 invocation(s) still running after the 0.5s grace period" in (
        host.log_text()
    )
