"""The app's blob trigger through the local host, with either source: one invocation
per upload, and none for what the app writes itself (its work container)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from local.azurite import Azurite
from local.functions_host import FunctionsHost
from local.storage_events import StorageEvents
from shared.composition import build
from shared.domain.runs import Run, RunState
from shared.domain.storage import SPLITS_PREFIX
from tests.e2e.conftest import make_host
from tests.support.app import jsonl, text_examples
from tests.support.azureml import wait_until
from tests.support.functions_host import host_status, settle_blob_trigger

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]
FUNCTION = "dataset_uploaded"


def _accepted_run(settings: dict[str, str]) -> Run:
    def runs() -> list[Run]:
        return [s.run for s in build(settings).ledger.active()]

    found = wait_until(
        runs,
        lambda found: bool(found) and found[0].state is not RunState.REGISTERING_DATA,
        what="the upload to become a run with its job",
        timeout=60,
    )
    return found[0]


def _blob_names(connection_string: str, container: str) -> list[str]:
    with BlobServiceClient.from_connection_string(connection_string) as service:
        return sorted(str(b.name) for b in service.get_container_client(container).list_blobs())


def _trigger(host: FunctionsHost) -> dict[str, Any]:
    status: dict[str, Any] = host_status(host)["blobTriggers"][FUNCTION]
    return status


@pytest.fixture
def host_factory(tmp_path: Path) -> Iterator[Any]:
    hosts: list[FunctionsHost] = []

    def start(settings: dict[str, str]) -> FunctionsHost:
        host = make_host(settings, tmp_path / f"host-{len(hosts)}")
        hosts.append(host)
        host.start()
        return host

    yield start
    for host in hosts:
        host.stop()


def test_polling_the_dataset_container_invokes_once_per_upload_not_for_the_apps_outputs(
    host_settings: dict[str, str], host_factory: Any
) -> None:
    host = host_factory(host_settings)
    storage, container = host_settings["DATASET_STORAGE"], host_settings["DATASET_CONTAINER"]
    with BlobServiceClient.from_connection_string(storage) as service:
        service.get_blob_client(container, "scan.jsonl").upload_blob(
            jsonl(text_examples(30, f"scan {uuid.uuid4().hex}"))
        )

    run = _accepted_run(host_settings)
    settle_blob_trigger(host, FUNCTION)  # two more scans after the parts were written

    assert run.state in (RunState.TRAINING, RunState.DEPLOYING), run
    assert _trigger(host)["invocations"] == 1
    assert "written by the app itself" not in host.log_text()
    assert _blob_names(storage, container) == ["scan.jsonl"]
    parts = _blob_names(storage, host_settings["WORK_CONTAINER"])
    assert len(parts) == 2 and all(name.startswith(SPLITS_PREFIX) for name in parts)


def test_the_event_grid_source_invokes_once_per_upload_not_for_the_apps_outputs(
    host_settings: dict[str, str], host_factory: Any, azurite: Azurite
) -> None:
    with StorageEvents(azurite, retry_seconds=0.2) as events:
        # The app's storage account raises events for its own writes too, as on Azure.
        settings = {
            **host_settings,
            "DATASET_TRIGGER_SOURCE": "EventGrid",
            "DATASET_STORAGE": events.connection_string,
        }
        host = host_factory(settings)
        container = settings["DATASET_CONTAINER"]
        blobs = f"/blobServices/default/containers/{container}/blobs/"
        # As scripts/postdeploy.sh subscribes the deployed app.
        subscription = events.subscribe(
            "datasets",
            host.blobs_url(FUNCTION),
            subject_begins_with=blobs,
            subject_not_begins_with=[f"{blobs}_autopilot/"],
        )
        with BlobServiceClient.from_connection_string(events.connection_string) as service:
            service.get_blob_client(container, "event.jsonl").upload_blob(
                jsonl(text_examples(30, f"event {uuid.uuid4().hex}"))
            )

        run = _accepted_run(settings)
        status = wait_until(
            lambda: _trigger(host),
            lambda s: s["succeeded"] >= 1 and s["inFlight"] == 0,
            what="the invocation to finish",
        )

        assert run.state in (RunState.TRAINING, RunState.DEPLOYING), run
        assert status["source"] == "EventGrid"
        assert (status["received"], status["invocations"]) == (1, 1)
        created = [p.event["subject"] for p in events.published]
        work = f"/containers/{settings['WORK_CONTAINER']}/blobs/{SPLITS_PREFIX}"
        assert sum(work in subject for subject in created) == 2  # the parts raised events...
        assert [p.event["subject"] for p in subscription.delivered] == [f"{blobs}event.jsonl"]
        assert scan_free(host)  # ...that never reached the app, and nothing scanned


def scan_free(host: FunctionsHost) -> bool:
    """An Event Grid-source trigger has no container scan (no ``scans`` counter)."""
    return "scans" not in _trigger(host)
