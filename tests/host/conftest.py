"""Fixtures for the local Functions host's tests: the throw-away app and hosts running it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.azurite import Azurite
from local.functions_host import FunctionsHost
from local.ports import free_port
from tests.support.functions_host import HostedApp, HostFactory, Records, app_values, write_test_app

# Short periods keep the tests quick; the behaviour is the same as with the defaults.
SCAN_SECONDS = 0.2
RETRY_SECONDS = 0.05


@pytest.fixture
def hosted_app(tmp_path: Path, azurite: Azurite) -> HostedApp:
    records = tmp_path / "records.jsonl"
    return HostedApp(
        app_dir=write_test_app(tmp_path / "app"),
        state_dir=tmp_path / "state",
        values=app_values(azurite.connection_string, records),
        records=Records(records),
    )


@pytest.fixture
def start_host(hosted_app: HostedApp) -> Iterator[HostFactory]:
    """Start the test app in a host (``start_host(SETTING=value)``); all are stopped after."""
    started: list[FunctionsHost] = []

    def start(*, grace_seconds: float = 10.0, **overrides: str) -> FunctionsHost:
        host = FunctionsHost(
            hosted_app.app_dir,
            {**hosted_app.values, **overrides},
            port=free_port(),
            state_dir=hosted_app.state_dir,
            blob_scan_seconds=SCAN_SECONDS,
            blob_retry_seconds=RETRY_SECONDS,
            grace_seconds=grace_seconds,
        )
        started.append(host)
        host.start()
        return host

    yield start
    for host in started:
        host.stop()
