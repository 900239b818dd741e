"""Rolling back a LIVE run through the local Functions host and the Azure ML emulator:
run A goes LIVE, run B (another dataset) replaces it, ``POST /api/runs/{B}/rollback``
makes a rollback run that goes LIVE, and the endpoint answers with A's model at 100%
again; with KEEP_PREVIOUS_DEPLOYMENT it reuses A's kept deployment, without it it
deploys A's model anew."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from local.azureml_emulator import AzureMLEmulator
from local.functions_host import FunctionsHost
from shared.composition import build
from shared.domain.smoke import route_url
from tests.e2e.conftest import make_host
from tests.support.app import jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]

FUNCTION_KEY = "rollback-test-" + uuid.uuid4().hex
ENDED = ("LIVE", "FAILED", "TRAINING_FAILED", "DEPLOY_FAILED", "ROLLED_BACK", "CANCELED")


def _get(host: FunctionsHost, route: str, **params: str) -> Any:
    response = requests.get(
        host.url(route), params=params, headers={"x-functions-key": FUNCTION_KEY}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def _ended(host: FunctionsHost, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = wait_until(
        lambda: _get(host, f"runs/{run_id}"),
        lambda r: r["state"] in ENDED,
        what=f"run {run_id} to end",
        timeout=180,
    )
    return run


def _live_from(host: FunctionsHost, container: Any, name: str, topic: str) -> dict[str, Any]:
    """Upload ``name`` and wait for its run to end; it must be LIVE."""
    container.upload_blob(name, jsonl(text_examples(30, topic)))
    listed = wait_until(
        lambda: [r for r in _get(host, "runs", limit="100")["runs"] if r["dataset_name"] == name],
        bool,
        what=f"a run of {name}",
        timeout=60,
    )
    run = _ended(host, listed[0]["run_id"])
    assert run["state"] == "LIVE", (run["state"], run["last_error"])
    return run


def _rollback(host: FunctionsHost, run_id: str) -> requests.Response:
    return requests.post(
        host.url(f"runs/{run_id}/rollback"),
        json={"by": "Alice Example"},
        headers={"x-functions-key": FUNCTION_KEY},
        timeout=60,
    )


def _traffic(admin: EmulatorAdmin, endpoint: str) -> dict[str, int]:
    for e in admin.state()["endpoints"]:
        if e["name"] == endpoint:
            return dict(e["properties"]["traffic"])
    raise AssertionError(f"endpoint {endpoint} not found")


def _deployments(admin: EmulatorAdmin, endpoint: str) -> set[str]:
    return {
        d["name"]
        for d in admin.state()["deployments"]
        if d["endpoint"] == endpoint and not d["deleting"]
    }


def _served(settings: dict[str, str], emulator: AzureMLEmulator, prompt: str) -> requests.Response:
    """What the endpoint answers ``prompt`` with, routed by its traffic (no deployment named)."""
    workspace = build(settings).azureml
    endpoint = settings["ENDPOINT_NAME"]
    found = workspace.get_endpoint(endpoint)
    assert found is not None
    response = requests.post(
        route_url(found.scoring_uri, "/completions"),
        json={"prompt": prompt, "max_tokens": 64, "temperature": 0},
        headers={"Authorization": f"Bearer {workspace.endpoint_key(endpoint)}"},
        verify=str(emulator.ca_bundle),
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


@pytest.mark.parametrize("keep_previous", [True, False], ids=["kept", "not-kept"])
def test_rollback_of_a_live_run_restores_the_previous_model(
    host_settings: dict[str, str],
    emulator: AzureMLEmulator,
    emulator_admin: EmulatorAdmin,
    tmp_path: Path,
    keep_previous: bool,
) -> None:
    settings = {
        **host_settings,
        "KEEP_PREVIOUS_DEPLOYMENT": "true" if keep_previous else "false",
        "FUNCTIONS_HOST_FUNCTION_KEY": FUNCTION_KEY,
        "EVENTS_TOPIC_ENDPOINT": emulator.topic_endpoint,
        "EVENTS_TOPIC_KEY": emulator.topic_key,
        # B must replace A whatever the gate thinks of it: this test is about undoing that.
        # (Topic-only variants of one dataset score alike: tests/e2e/test_evaluation_gate.py.)
        "EVAL_MARGIN": "1",
    }
    endpoint = settings["ENDPOINT_NAME"]
    tag = uuid.uuid4().hex[:8]
    prompt = text_examples(30, f"meeting {tag}")[4]["prompt"]
    seen = len(emulator_admin.topic_events())

    with make_host(settings, tmp_path / "host") as host:
        from azure.storage.blob import BlobServiceClient

        blobs = BlobServiceClient.from_connection_string(settings["DATASET_STORAGE"])
        container = blobs.get_container_client(settings["DATASET_CONTAINER"])
        a = _live_from(host, container, "a.jsonl", f"meeting {tag}")
        b = _live_from(host, container, "b.jsonl", f"lunch {tag}")
        assert b["replaced"]["deployment"] == a["deployment"]
        assert b["replaced"]["model"]
        assert _traffic(emulator_admin, endpoint)[b["deployment"]] == 100
        assert f"lunch {tag}" in _served(settings, emulator, prompt).json()["choices"][0]["text"]

        asked = _rollback(host, b["run_id"])
        assert asked.status_code == 202, asked.text
        rollback_id = asked.json()["run_id"]
        assert rollback_id == f"{b['run_id']}-rb1"
        assert asked.headers["Location"] == f"/api/runs/{rollback_id}"
        again = _rollback(host, b["run_id"])  # active still, or LIVE already: the same run
        assert again.status_code in (200, 202) and again.json()["run_id"] == rollback_id

        rollback = _ended(host, rollback_id)
        old = _get(host, f"runs/{b['run_id']}")
        answer = _served(settings, emulator, prompt)
        final_traffic = _traffic(emulator_admin, endpoint)
        deployments = wait_until(
            lambda: _deployments(emulator_admin, endpoint),
            lambda found: keep_previous or b["deployment"] not in found,
            what="the rolled-back deployment to be retired",
        )
        events = wait_until(
            lambda: emulator_admin.topic_events(subject=rollback_id, since=seen),
            lambda found: bool(found) and found[-1]["type"].endswith((".Live", "ed")),
            what="the rollback run's lifecycle events",
        )

    _recorded(rollback, old, events, a, b)
    # The endpoint serves A's model at 100% again, and answers like it.
    if keep_previous:
        assert rollback["deployment"] == a["deployment"] == rollback["adopted_deployment"]
        assert {n: w for n, w in final_traffic.items() if w} == {a["deployment"]: 100}
        assert b["deployment"] in deployments  # kept too, at 0%
    else:
        assert rollback["deployment"] == rollback_id and rollback["adopted_deployment"] == ""
        assert {n: w for n, w in final_traffic.items() if w} == {rollback_id: 100}
        assert b["deployment"] not in deployments and a["deployment"] not in deployments
    assert answer.headers["azureml-model-deployment"] == rollback["deployment"]
    assert answer.json()["model"].lower() == rollback["model_id"].lower()
    assert rollback["model_id"] == b["replaced"]["model"]
    text = answer.json()["choices"][0]["text"]
    assert f"meeting {tag}" in text and "lunch" not in text


def _recorded(
    rollback: dict[str, Any],
    old: dict[str, Any],
    events: list[dict[str, Any]],
    a: dict[str, Any],
    b: dict[str, Any],
) -> None:
    """The rollback run's record and events, and the rolled-back run's record."""
    assert rollback["state"] == "LIVE", (rollback["state"], rollback["last_error"])
    assert [e["state"] for e in rollback["timeline"]] == [
        "RECEIVED",
        "DEPLOYING",
        "SMOKE_TESTING",
        "PROMOTING",
        "LIVE",
    ]
    assert rollback["config"]["kind"] == "rollback"
    assert rollback["config"]["rollback_of"] == b["run_id"]
    assert rollback["config"]["restores"] == a["run_id"]
    assert rollback["smoke"]["passed"] is True
    # The rolled-back run stays LIVE, as a record, and says who rolled it back.
    assert old["state"] == "LIVE"
    assert old["rolled_back_by"]["run_id"] == rollback["run_id"]
    assert old["rolled_back_by"]["claimed_by"] == "Alice Example"
    assert [e["type"].rsplit(".", 1)[1] for e in events] == [
        "Received",
        "Deploying",
        "SmokeTesting",
        "Promoting",
        "Live",
    ]
    assert events[-1]["data"]["rollback"] == {
        "rollback_of": b["run_id"],
        "restores": a["run_id"],
        "removes": b["deployment"],
    }
