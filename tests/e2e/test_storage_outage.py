"""Storage that goes away for half a minute must be survived (issue 9), as a test.

Azurite holds everything the app keeps: the datasets, the run ledger, the
host's blob receipts and timer status. It is stopped mid-run, with ten runs in
flight through the local Functions host, and started again 30 s later on the
same ports and data folder, as a storage account comes back after an outage.
This test runs its own Azurite: the session's is shared by every test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from local.azureml_emulator import AzureMLEmulator
from local.azurite import Azurite
from shared.composition import build
from shared.domain.runs import Run, RunState
from tests.e2e.conftest import make_host
from tests.support.app import app_settings, jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, wait_until
from tests.support.functions_host import host_status, poison_messages

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]

DATASETS = 10
OUTAGE_SECONDS = 30.0
ROLLING_OUT = {
    RunState.DEPLOYING,
    RunState.SMOKE_TESTING,
    RunState.EVALUATING,
    RunState.PROMOTING,
    RunState.LIVE,
}


@pytest.fixture
def own_azurite(tmp_path: Path) -> Iterator[Azurite]:
    """An Azurite of this test's own, with its data in a folder that outlives a restart."""
    with Azurite(data_dir=tmp_path / "azurite") as instance:
        yield instance


def _same_place(azurite: Azurite) -> Azurite:
    """A new Azurite on the ports and data folder of ``azurite`` (stopped or running)."""

    def port(url: str) -> int:
        found = urlsplit(url).port
        assert found is not None, url
        return found

    return Azurite(
        data_dir=azurite.data_dir,
        blob_port=port(azurite.blob_endpoint),
        queue_port=port(azurite.queue_endpoint),
        table_port=port(azurite.table_endpoint),
    )


def _runs(settings: dict[str, str]) -> list[Run]:
    services = build(settings)
    summaries, _ = services.ledger.list_runs(None, 100, None)
    found = [services.ledger.get(s.run_id) for s in summaries]
    return [stored.run for stored in found if stored is not None]


def _health(base_url: str) -> int:
    return requests.get(f"{base_url}/api/health", timeout=30).status_code


def test_ten_runs_in_flight_survive_a_30s_storage_outage(
    own_azurite: Azurite,
    emulator: AzureMLEmulator,
    emulator_admin: EmulatorAdmin,
    tmp_path: Path,
) -> None:
    """Nothing is lost (every upload has its run, one job and one deployment each),
    the host keeps running through the outage (health says 503, then 200 again),
    and every run reaches LIVE once storage is back.

    The runs share one endpoint, so they roll out one at a time; "reaches LIVE"
    means each run's timeline has LIVE (later runs retire earlier deployments, see
    README "One rollout per endpoint at a time").

    Storage goes down once every job has finished. A job still importing its data
    would fail for good, since the training data lives in the same storage (the
    emulator reads it from Azurite, as Azure ML reads it from the account): the run
    ends TRAINING_FAILED with the job's reason, and ``POST /api/runs/{id}/retry``
    trains it again. That is the job's failure, reported as such, not something
    the app can resume by itself. What the outage hits here is what the app and
    the host own: the ledger (leases, saves, the endpoint's rollout lock, the
    listing), blob receipts and timer status, and the smoke test's prompts, read
    from the validation split.
    """
    settings = app_settings(
        own_azurite,
        ENDPOINT_NAME=f"ep-{uuid.uuid4().hex[:10]}",
        RECONCILE_SCHEDULE="*/1 * * * * *",
        JOB_POLL_SECONDS="0",
        DEPLOY_POLL_SECONDS="0",
        SMOKE_PROMPT_COUNT="1",
        EVAL_MARGIN="1",  # runs of one shape take over from one another: let each through
        **emulator.client_env(),
        **emulator.identity_env(),
    )
    blobs = BlobServiceClient.from_connection_string(settings["DATASET_STORAGE"])
    container = blobs.create_container(settings["DATASET_CONTAINER"])
    restarted: Azurite | None = None
    try:
        with make_host(settings, tmp_path / "host") as host:
            for i in range(DATASETS):
                records = text_examples(12, f"outage {i} {uuid.uuid4().hex[:8]}")
                container.upload_blob(f"outage-{i}.jsonl", jsonl(records))
            # In flight: every job has finished (see the docstring), runs wait for
            # the endpoint, one is rolling out.
            wait_until(
                lambda: _runs(settings),
                lambda runs: len(runs) == DATASETS
                and all(r.state in ROLLING_OUT for r in runs)
                and any(r.state is not RunState.DEPLOYING for r in runs),
                what="ten runs trained, one of them past DEPLOYING",
                timeout=120,
            )
            own_azurite.stop()
            went_down = time.monotonic()
            # The host stays up and says what is wrong.
            wait_until(
                lambda: _health(host.base_url),
                lambda status: status == 503,
                what="health to report the ledger unreachable",
                timeout=OUTAGE_SECONDS,
            )
            # The outage itself lasts this long; nothing is being waited for.
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - went_down)))
            assert host.running, host.log_tail()
            restarted = _same_place(own_azurite)
            restarted.start()
            runs = wait_until(
                lambda: _runs(settings),
                lambda found: all(run.state.terminal for run in found),
                what="every run to finish once storage is back",
                timeout=240,
            )
            assert _health(host.base_url) == 200
            # The timer kept going: it still fires after the outage.
            fired = host_status(host)["timers"]["reconcile_timer"]["runs"]
            wait_until(
                lambda: host_status(host)["timers"]["reconcile_timer"]["runs"],
                lambda count: count > fired,
                what="the timer to fire again",
            )
            log = host.log_text()
        assert host.returncode == 0, log[-3000:]
        poisoned = poison_messages(settings["DATASET_STORAGE"], settings["DATASET_CONTAINER"])
    finally:
        if restarted is not None:
            restarted.stop()

    # Nothing lost: every upload became exactly one run...
    assert sorted(r.dataset.name for r in runs) == [f"outage-{i}.jsonl" for i in range(DATASETS)]
    assert not poisoned
    # ...and every run reached LIVE, the last one serving.
    assert all(RunState.LIVE in [e.state for e in run.timeline] for run in runs), [
        (run.run_id, run.state, run.last_error) for run in runs
    ]
    assert all(run.state is RunState.LIVE for run in runs)
    # No duplicate work in Azure ML: one job and one deployment created per run.
    jobs = [j["name"] for j in emulator_admin.state()["jobs"]]
    requests_made = emulator_admin.requests(settings["AZUREML_WORKSPACE"])
    for run in runs:
        assert [name for name in jobs if name.startswith(run.run_id)] == [run.run_id]
        assert len(_deployment_puts(requests_made, run.run_id)) == 1


def _deployment_puts(requests_made: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    suffix = f"/deployments/{run_id}".lower()
    return [
        r
        for r in requests_made
        if r["method"] == "PUT" and r["path"].lower().endswith(suffix) and not r["injected"]
    ]
