"""The HTTP routes of function_app, called in-process as the host calls them, against
Azurite and the Azure ML emulator. Every answer is checked against the OpenAPI
document (``tests.api.contract``). Function keys are the host's business and are
not in play here: these calls reach the functions directly.
"""

from __future__ import annotations

import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.azurite import Azurite
from local.ports import free_port
from shared.composition import services
from shared.domain.runs import RunState
from shared.http import api
from tests.api.contract import Answer, invoke
from tests.support.app import app_settings, jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, wait_until
from tests.support.functions import FunctionsDriver, functions_driver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]


def _settings(azurite: Azurite, **overrides: str) -> dict[str, str]:
    return app_settings(
        azurite,
        ENDPOINT_NAME=f"ep-{uuid.uuid4().hex[:10]}",
        JOB_POLL_SECONDS="0",
        DEPLOY_POLL_SECONDS="0",
        SMOKE_PROMPT_COUNT="2",
        **overrides,
    )


@pytest.fixture
def driver(azurite: Azurite, emulator: Any) -> Iterator[FunctionsDriver]:
    with functions_driver(_settings(azurite)) as d:
        yield d


def _container(driver: FunctionsDriver) -> ContainerClient:
    blobs = BlobServiceClient.from_connection_string(driver.settings["DATASET_STORAGE"])
    return blobs.get_container_client(driver.settings["DATASET_CONTAINER"])


def _put(driver: FunctionsDriver, name: str, data: bytes | None = None) -> str:
    """Upload a blob without firing the blob trigger; returns its URL."""
    if data is None:
        data = jsonl(text_examples(30, f"topic {uuid.uuid4().hex[:8]}"))
    blob = _container(driver).get_blob_client(name)
    blob.upload_blob(data, overwrite=True)
    return str(blob.url)


def _start(blob: str, **fields: Any) -> Answer:
    return invoke("start_run", body={"blob": blob, **fields})


def _started(driver: FunctionsDriver, name: str, **fields: Any) -> str:
    _put(driver, name)
    answer = _start(name, **fields)
    assert answer.status == 202, answer.body
    return str(answer.body["run_id"])


def _jobs(admin: EmulatorAdmin, run_id: str) -> dict[str, str]:
    return {
        j["name"]: j["status"]
        for j in admin.state()["jobs"]
        if j["name"] == run_id or j["name"].startswith(run_id + "-r")
    }


def _data_assets(admin: EmulatorAdmin, driver: FunctionsDriver) -> list[str]:
    workspace = f"/workspaces/{driver.settings['AZUREML_WORKSPACE']}/".lower()
    return sorted(d["id"] for d in admin.state()["data"] if workspace in d["id"].lower())


# -- a run's life through the API --


def test_a_run_started_by_post_goes_live_and_the_api_shows_it(driver: FunctionsDriver) -> None:
    _put(driver, "first.jsonl")
    started = _start("first.jsonl")
    assert started.status == 202
    run_id = started.body["run_id"]
    assert started.body["outcome"] == "accepted"
    assert started.body["state"] in ("REGISTERING_DATA", "TRAINING")
    assert started.headers["Location"] == f"/api/runs/{run_id}"

    shown = invoke("get_run", id=run_id)
    assert shown.status == 200 and shown.body["dataset"]["name"] == "first.jsonl"

    run = driver.tick_until(run_id, lambda r: r.state.terminal)
    assert run.state is RunState.LIVE, (run.state, run.last_error)
    record = invoke("get_run", id=run_id).body
    assert record["state"] == "LIVE" and record["deployment"] == run_id
    assert [e["state"] for e in record["timeline"]][-1] == "LIVE"
    assert not {"lease_owner", "lease_until", "published"} & set(record)

    # Traffic has moved: too late to cancel; nothing failed: nothing to retry.
    for route in ("cancel_run", "retry_run"):
        refused = invoke(route, id=run_id)
        assert refused.status == 409, refused.body
        assert refused.body["type"] == api.PROBLEM_TYPE + "not-allowed-now"
        assert "LIVE" in refused.body["detail"]
    # The same upload again is recognised, not run twice.
    again = _start("first.jsonl")
    assert (again.status, again.body["run_id"], again.body["outcome"]) == (202, run_id, "seen")


def test_a_url_of_the_container_names_its_blob_and_hyperparameters_apply(
    driver: FunctionsDriver,
) -> None:
    url = _put(driver, "team/q3 final.jsonl")
    assert "q3%20final" in url
    answer = _start(url, hyperparameters={"num_train_epochs": 2, "learning_rate": "0.0001"})
    assert answer.status == 202, answer.body
    record = invoke("get_run", id=answer.body["run_id"]).body
    assert record["dataset"]["name"] == "team/q3 final.jsonl"
    assert record["config"]["hyperparameters"]["num_train_epochs"] == "2"
    assert record["config"]["hyperparameters"]["learning_rate"] == "0.0001"

    # force: train the same content again, as a new run.
    forced = _start("team/q3 final.jsonl", force=True)
    assert forced.status == 202 and forced.body["outcome"] == "accepted"
    assert forced.body["run_id"] != answer.body["run_id"]


def test_an_invalid_dataset_answers_202_with_a_rejected_run(driver: FunctionsDriver) -> None:
    _put(driver, "broken.jsonl", b'{"prompt": "a", "completion": "b"}\nnot json\n')
    answer = _start("broken.jsonl")
    assert answer.status == 202
    assert answer.body["outcome"] == "rejected" and answer.body["state"] == "REJECTED"
    assert "line 2" in answer.body["detail"]
    record = invoke("get_run", id=answer.body["run_id"]).body
    assert record["state"] == "REJECTED" and record["report_url"].endswith(".report.json")


def test_cancel_during_training_cancels_the_job(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_job("ft-*", "stuck")
    run_id = _started(driver, "long.jsonl")
    driver.tick_until(run_id, lambda r: r.state is RunState.TRAINING or r.state.terminal)
    assert _jobs(emulator_admin, run_id)[run_id] in ("NotStarted", "Queued", "Running")

    answer = invoke("cancel_run", id=run_id)

    assert answer.status == 202, answer.body
    assert answer.body["state"] == "CANCELED" and answer.body["run_id"] == run_id
    assert answer.headers["Location"] == f"/api/runs/{run_id}"
    wait_until(
        lambda: _jobs(emulator_admin, run_id)[run_id],
        lambda status: status == "Canceled",
        what="the job to be cancelled",
    )
    assert invoke("get_run", id=run_id).body["state"] == "CANCELED"
    # The run has ended: cancelling it again is refused (409), as for any ended run.
    again = invoke("cancel_run", id=run_id)
    assert again.status == 409 and "CANCELED" in again.body["detail"]
    # A cancelled run cannot be retried.
    assert invoke("retry_run", id=run_id).status == 409


def test_retry_of_a_failed_training_trains_again_on_the_same_data_and_goes_live(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_job("ft-*", "fail", "CUDA out of memory on node 0")
    run_id = _started(driver, "oom.jsonl")
    failed = driver.tick_until(run_id, lambda r: r.state.terminal)
    assert failed.state is RunState.TRAINING_FAILED
    assert "CUDA out of memory" in invoke("get_run", id=run_id).body["last_error"]
    assets = _data_assets(emulator_admin, driver)
    assert assets
    emulator_admin.clear_faults()

    answer = invoke("retry_run", id=run_id)

    assert answer.status == 202, answer.body
    assert answer.body["job_name"] == f"{run_id}-r1"
    assert answer.body["state"] in ("REGISTERING_DATA", "TRAINING")
    run = driver.tick_until(run_id, lambda r: r.state.terminal)
    assert run.state is RunState.LIVE, (run.state, run.last_error)
    assert run.job_name == f"{run_id}-r1" and run.retries == 1
    assert run.training_data == failed.training_data
    assert run.validation_data == failed.validation_data
    assert _data_assets(emulator_admin, driver) == assets  # reused, none made anew
    assert _jobs(emulator_admin, run_id) == {run_id: "Failed", f"{run_id}-r1": "Completed"}


# -- listing --


def test_runs_are_listed_newest_first_in_pages_and_by_state(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_job("ft-*", "stuck")
    made = []
    for i in range(5):
        if i % 2:
            made.append(_started(driver, f"good-{i}.jsonl"))
        else:
            _put(driver, f"bad-{i}.jsonl", b"not json\n")
            made.append(_start(f"bad-{i}.jsonl").body["run_id"])

    seen: list[dict[str, Any]] = []
    params = {"limit": "2", "code": "a-function-key"}
    pages = 0
    while True:
        page = invoke("list_runs", params=params)
        assert page.status == 200 and len(page.body["runs"]) <= 2
        seen.extend(page.body["runs"])
        pages += 1
        if page.body["continuation"] is None:
            break
        params = {**params, "continuation": page.body["continuation"]}
    assert pages == 3
    assert [s["run_id"] for s in seen] == list(reversed(made))
    assert [s["created_at"] for s in seen] == sorted((s["created_at"] for s in seen), reverse=True)
    names = [s["dataset_name"] for s in seen]
    assert names == ["bad-4.jsonl", "good-3.jsonl", "bad-2.jsonl", "good-1.jsonl", "bad-0.jsonl"]

    by_state = {
        state: [s["run_id"] for s in invoke("list_runs", params={"state": state}).body["runs"]]
        for state in ("REJECTED", "TRAINING", "LIVE")
    }
    assert by_state == {
        "REJECTED": [made[4], made[2], made[0]],
        "TRAINING": [made[3], made[1]],
        "LIVE": [],
    }
    # A state change shows in the listing at once.
    invoke("cancel_run", id=made[3])
    canceled = invoke("list_runs", params={"state": "CANCELED"}).body["runs"]
    assert [(s["run_id"], s["state"]) for s in canceled] == [(made[3], "CANCELED")]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "live"}, "state"),
        ({"state": "NOPE"}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"continuation": "garbage"}, "continuation"),
        # Well-formed tokens that point outside the listing: refused by the ledger.
        ({"continuation": api.encode_continuation('{"from": "run|x"}')}, "continuation"),
        ({"continuation": api.encode_continuation("not a position")}, "continuation"),
    ],
)
def test_bad_listing_parameters_are_400_naming_them(
    driver: FunctionsDriver, params: dict[str, str], field: str
) -> None:
    answer = invoke("list_runs", params=params)
    assert answer.status == 400
    assert list(answer.field_errors()) == [field]
    assert answer.body["errors"][0]["in"] == "query"


# -- bad requests --


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"blob"}),
        ({"blob": 5}, {"blob"}),
        ({"blob": ""}, {"blob"}),
        ({"blob": "a.jsonl", "hyperparameters": {"lora_r": 0, "seed": 1}}, None),
        ({"blob": "a.jsonl", "hyperparameters": "lora_r=8"}, {"hyperparameters"}),
        ({"blob": "a.jsonl", "force": "yes"}, {"force"}),
        ({"blob": "a.jsonl", "blobs": ["b.jsonl"]}, {"blobs"}),
        (b"blob=a.jsonl", {""}),
        (b"", {""}),
        (b"[]", {""}),
    ],
)
def test_bad_bodies_are_400_naming_each_field(
    driver: FunctionsDriver, body: Any, fields: set[str] | None
) -> None:
    _put(driver, "a.jsonl")
    answer = invoke("start_run", body=body)
    assert answer.status == 400, answer.body
    assert answer.body["type"] == api.PROBLEM_TYPE + "invalid-request"
    expected = fields or {"hyperparameters.lora_r", "hyperparameters.seed"}
    assert set(answer.field_errors()) == expected
    assert not invoke("list_runs").body["runs"]  # nothing was started


def test_a_body_over_the_limit_is_413(driver: FunctionsDriver) -> None:
    answer = invoke("start_run", body=b" " * (api.MAX_BODY_BYTES + 1))
    assert answer.status == 413


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("notes.txt", "not a .jsonl file"),
        ("_autopilot/reports/x.jsonl", "written by the app"),
        ("a.validation.jsonl", "validation file"),
    ],
)
def test_names_the_blob_trigger_skips_are_422_naming_blob(
    driver: FunctionsDriver, name: str, why: str
) -> None:
    _put(driver, name)
    answer = _start(name)
    assert answer.status == 422
    assert answer.body["type"] == api.PROBLEM_TYPE + "not-a-dataset"
    assert why in answer.field_errors()["blob"]


def test_a_blob_that_does_not_exist_is_404(driver: FunctionsDriver) -> None:
    answer = _start("missing.jsonl")
    assert answer.status == 404
    assert answer.body["type"] == api.PROBLEM_TYPE + "blob-not-found"
    assert "missing.jsonl" in answer.body["detail"]


def test_other_hosts_accounts_containers_and_paths_are_refused_and_nothing_is_fetched(
    driver: FunctionsDriver, azurite: Azurite
) -> None:
    container = driver.settings["DATASET_CONTAINER"]
    _put(driver, "a.jsonl")
    # A valid dataset in another container of the same account: must not be reachable.
    other = BlobServiceClient.from_connection_string(azurite.connection_string)
    other_name = f"other-{uuid.uuid4().hex[:8]}"
    other.create_container(other_name).upload_blob("a.jsonl", jsonl(text_examples(30, "elsewhere")))
    other_url = f"{azurite.blob_endpoint}/{other_name}/a.jsonl"
    own_url = _put(driver, "a.jsonl")
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen()
        trap.setblocking(False)
        port = trap.getsockname()[1]
        refused = [
            f"http://127.0.0.1:{port}/devstoreaccount1/{container}/a.jsonl",
            f"http://localhost:{port}/a.jsonl",
            "http://169.254.169.254/metadata/identity/oauth2/token",
            other_url,
            own_url.replace("/devstoreaccount1/", "/otheraccount/"),
            own_url.replace(f"/{container}/", f"/{container}/../{container}-x/"),
            own_url.replace("a.jsonl", "%2e%2e/x/a.jsonl"),
            own_url + "?sv=2024-01-01&sig=abc",
            own_url + "#a",
            own_url.replace("http://", "https://"),
            "file:///etc/passwd",
            f"ftp://127.0.0.1:{port}/a.jsonl",
            "../a.jsonl",
            "x/../../a.jsonl",
            "/a.jsonl",
            "\\\\server\\share\\a.jsonl",
            "a.jsonl?comp=list",
        ]
        for blob in refused:
            answer = _start(blob)
            assert answer.status == 400, (blob, answer.body)
            assert list(answer.field_errors()) == ["blob"], blob
        with pytest.raises(BlockingIOError):
            trap.accept()  # nobody came
    assert not invoke("list_runs").body["runs"]


def test_unknown_runs_are_404_on_every_run_route(driver: FunctionsDriver) -> None:
    for run_id in ("ft-000000000000-00000000", "../ft-x", "a b", "x" * 300):
        for route in ("get_run", "cancel_run", "retry_run", "approve_run", "rollback_run"):
            answer = invoke(route, id=run_id)
            assert answer.status == 404, (route, run_id, answer.body)
            assert answer.body["type"] == api.PROBLEM_TYPE + "run-not-found"


# -- health, settings and unreachable storage --


def _closed_table_port(settings: dict[str, str]) -> dict[str, str]:
    closed = re.sub(
        r"TableEndpoint=http://127\.0\.0\.1:\d+/",
        f"TableEndpoint=http://127.0.0.1:{free_port()}/",
        settings["AzureWebJobsStorage"],
    )
    return {**settings, "AzureWebJobsStorage": closed}


def test_health_is_ok_when_the_ledger_answers(driver: FunctionsDriver) -> None:
    answer = invoke("health")
    assert answer.status == 200
    assert answer.body == {"status": "ok", "service": "finetune-autopilot", "ledger": "reachable"}


def test_health_is_503_quickly_when_the_ledger_is_unreachable(azurite: Azurite) -> None:
    with functions_driver(_closed_table_port(_settings(azurite))):
        started = time.monotonic()
        answer = invoke("health")
        assert time.monotonic() - started < 5
    assert answer.status == 503
    assert answer.body["ledger"] == "unreachable" and answer.body["status"] == 503
    assert "reaching the run ledger" in answer.body["detail"]


def test_routes_answer_503_when_storage_is_unreachable(azurite: Azurite) -> None:
    with functions_driver(_closed_table_port(_settings(azurite))):
        answer = invoke("list_runs")
    assert answer.status == 503
    assert answer.body["type"] == api.PROBLEM_TYPE + "unavailable"


def test_missing_settings_are_500_naming_each_and_health_503(
    driver: FunctionsDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID")
    monkeypatch.delenv("FINETUNE_BASE_MODEL")
    services.cache_clear()
    for answer in (
        invoke("list_runs"),
        invoke("get_run", id="ft-x"),
        _start("a.jsonl"),
        invoke("cancel_run", id="ft-x"),
    ):
        assert answer.status == 500, answer.body
        assert answer.body["type"] == api.PROBLEM_TYPE + "settings-invalid"
        assert "AZURE_SUBSCRIPTION_ID is missing" in answer.body["detail"]
        assert "FINETUNE_BASE_MODEL is missing" in answer.body["detail"]
        assert len(answer.body["settings"]) == 2
    health = invoke("health")
    assert health.status == 503 and len(health.body["settings"]) == 2
