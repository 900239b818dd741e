"""A run over MAX_RUN_COST through the local Functions host and the Azure ML emulator:
it waits in AWAITING_APPROVAL with nothing created in the workspace, and goes LIVE once
approved over HTTP, the approval's audit fields on the run and in its events."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from local.azureml_emulator import AzureMLEmulator
from local.functions_host import FunctionsHost
from tests.e2e.conftest import make_host
from tests.support.app import jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]

A100 = "Standard_NC24ads_A100_v4"
FUNCTION_KEY = "approval-test-" + uuid.uuid4().hex
FINGERPRINT = hashlib.sha256(FUNCTION_KEY.encode()).hexdigest()[:12]


def _get(host: FunctionsHost, route: str, **params: str) -> Any:
    response = requests.get(
        host.url(route), params=params, headers={"x-functions-key": FUNCTION_KEY}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def _in_workspace(admin: EmulatorAdmin, run_id: str, endpoint: str) -> dict[str, list[str]]:
    """What the emulator holds for the run: jobs, data assets and the endpoint."""
    state = admin.state()
    return {
        "jobs": [j["name"] for j in state["jobs"] if j["name"].startswith(run_id)],
        "data": [d["id"] for d in state["data"] if run_id in d["id"]],
        "endpoints": [e["name"] for e in state["endpoints"] if e["name"] == endpoint],
    }


def test_an_expensive_run_waits_for_approval_and_goes_live_once_approved(
    host_settings: dict[str, str],
    emulator: AzureMLEmulator,
    emulator_admin: EmulatorAdmin,
    tmp_path: Path,
) -> None:
    settings = {
        **host_settings,
        "MAX_RUN_COST": "0.01",
        "TRAINING_TOKENS_PER_SECOND": "100",
        "INSTANCE_PRICES": json.dumps({A100: 4.0}),
        "APPROVER_KEYS": json.dumps({FINGERPRINT: "alice"}),
        "FUNCTIONS_HOST_FUNCTION_KEY": FUNCTION_KEY,
        "EVENTS_TOPIC_ENDPOINT": emulator.topic_endpoint,
        "EVENTS_TOPIC_KEY": emulator.topic_key,
    }
    endpoint = settings["ENDPOINT_NAME"]
    seen = len(emulator_admin.topic_events())

    with make_host(settings, tmp_path / "host") as host:
        from azure.storage.blob import BlobServiceClient

        blobs = BlobServiceClient.from_connection_string(settings["DATASET_STORAGE"])
        container = blobs.get_container_client(settings["DATASET_CONTAINER"])
        container.upload_blob("expensive.jsonl", jsonl(text_examples(30, uuid.uuid4().hex[:8])))

        listed = wait_until(
            lambda: _get(host, "runs", state="AWAITING_APPROVAL")["runs"],
            bool,
            what="the run to wait for approval",
            timeout=60,
        )
        run_id = listed[0]["run_id"]
        # A later tick looked at it again and chose to wait (within the hour): the
        # timer has had its chance to act, and did nothing.
        held = wait_until(
            lambda: _get(host, f"runs/{run_id}"),
            lambda r: (
                r["next_check_at"] is not None
                and dt.datetime.fromisoformat(r["next_check_at"])
                > dt.datetime.fromisoformat(r["updated_at"]) + dt.timedelta(minutes=30)
            ),
            what="the waiting run to be looked at again by the timer",
            timeout=60,
        )
        assert held["state"] == "AWAITING_APPROVAL" and held["activity"] == "waiting for approval"
        assert held["approval"] == {} and held["endpoint"] == ""
        plan = held["plan"]
        assert plan["over_budget"] is True and plan["missing"] == []
        assert plan["total"] > 0.01 and plan["max_run_cost"] == 0.01
        assert plan["tokens_source"] == "tokens.training_tokens"  # the tokenizer's count
        assert plan["deployment_cost_per_hour"] == 4.0
        # Nothing spent: no job, no data asset, no endpoint claimed.
        assert _in_workspace(emulator_admin, run_id, endpoint) == {
            "jobs": [],
            "data": [],
            "endpoints": [],
        }
        # At least once, with stable ids: a publish whose marker write lost a race is
        # sent again (reconciler._publish), so count each event id once.
        waiting_events = list(
            {e["id"]: e for e in emulator_admin.topic_events(subject=run_id, since=seen)}.values()
        )
        assert [e["type"].rsplit(".", 1)[1] for e in waiting_events] == [
            "Received",
            "RegisteringData",
            "AwaitingApproval",
        ]
        assert waiting_events[-1]["data"]["plan"] == plan

        approved = requests.post(
            host.url(f"runs/{run_id}/approve"),
            json={"by": "Alice Example"},
            headers={"x-functions-key": FUNCTION_KEY},
            timeout=30,
        )
        assert approved.status_code == 200, approved.text
        approval = approved.json()["approval"]
        assert approval["by"] == "alice" and approval["key"] == FINGERPRINT
        assert approval["claimed_by"] == "Alice Example"
        assert approved.json()["state"] == "TRAINING"  # submitted at once, not next tick

        final = wait_until(
            lambda: _get(host, f"runs/{run_id}"),
            lambda r: r["state"] in ("LIVE", "FAILED", "TRAINING_FAILED", "DEPLOY_FAILED"),
            what="the approved run to finish",
            timeout=180,
        )
        assert FUNCTION_KEY not in host.log_text()

    assert final["state"] == "LIVE", (final["state"], final["last_error"])
    assert final["approval"] == approval
    timeline = [(e["state"], e["detail"]) for e in final["timeline"]]
    waited = [s for s, _ in timeline].index("AWAITING_APPROVAL")
    assert timeline[waited + 1] == (
        "REGISTERING_DATA",
        f"approved by alice (says Alice Example) at {approval['at']}",
    )
    assert timeline[-1][0] == "LIVE"
    in_workspace = _in_workspace(emulator_admin, run_id, endpoint)
    assert in_workspace["jobs"] == [run_id] and in_workspace["endpoints"] == [endpoint]
    events = wait_until(
        lambda: emulator_admin.topic_events(subject=run_id, since=seen),
        lambda found: found[-1]["type"].endswith(".Live"),
        what="the run's lifecycle events",
    )
    resumed = [e for e in events if e["type"].endswith(".RegisteringData")][-1]
    assert resumed["data"]["approval"] == approval
