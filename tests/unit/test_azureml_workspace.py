"""The Azure ML adapter builds its SDK client on first use, once, whoever asks first.

``azure.ai.ml`` is replaced by a stand-in module here (it is not ours, and the
real one takes most of a second to import): what is under test is when and how
often the adapter builds its client.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any

import pytest
from azure.core.credentials import AccessToken

from shared.adapters.azureml import AzureMLWorkspace


class _Credential:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", 0)


class _Jobs:
    def __init__(self) -> None:
        self.cancelled: list[str] = []

    def begin_cancel(self, name: str) -> None:
        self.cancelled.append(name)


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every MLClient the adapter builds (a slow constructor, to widen any race)."""
    clients: list[Any] = []

    class MLClient:
        def __init__(self, credential: Any, **kwargs: Any) -> None:
            time.sleep(0.02)
            self.kwargs = kwargs
            self.jobs = _Jobs()
            clients.append(self)

    module = types.ModuleType("azure.ai.ml")
    module.MLClient = MLClient  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure.ai.ml", module)
    return clients


def test_building_the_adapter_builds_no_client(built: list[Any]) -> None:
    AzureMLWorkspace(_Credential(), "sub", "rg", "ws")
    assert built == []


def test_the_first_use_builds_the_client_with_the_workspace_and_no_retries(
    built: list[Any],
) -> None:
    workspace = AzureMLWorkspace(_Credential(), "sub", "rg", "ws")
    workspace.cancel_job("job-1")
    workspace.cancel_job("job-2")
    assert len(built) == 1
    assert built[0].kwargs == {
        "subscription_id": "sub",
        "resource_group_name": "rg",
        "workspace_name": "ws",
        "retry_total": 0,
    }
    assert built[0].jobs.cancelled == ["job-1", "job-2"]


def test_concurrent_first_uses_share_one_client(built: list[Any]) -> None:
    workspace = AzureMLWorkspace(_Credential(), "sub", "rg", "ws")
    start = threading.Barrier(8)

    def cancel(i: int) -> None:
        start.wait()
        workspace.cancel_job(f"job-{i}")

    threads = [threading.Thread(target=cancel, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert sorted(built[0].jobs.cancelled) == sorted(f"job-{i}" for i in range(8))
