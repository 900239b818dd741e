"""What would break a first real run, rehearsed through the local host (issue 8).

Each test runs the app in the local Functions host (a separate process) on
Azurite and the Azure ML emulator, with the emulator answering the way real
Azure does in one case the app must survive: an endpoint name taken in the
region, a missing role, an MLflow scoring container, a model registered under
another name or late, a duplicate job submission answered with a 400,
NotResponding, a quota 400 with its reason nested, a failed pipeline step.
Every test checks the documented end state and message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from local.functions_host import FunctionsHost
from shared.composition import build
from shared.domain.runs import Run, RunState
from tests.e2e.conftest import make_host
from tests.support.app import jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]


@contextmanager
def _host(settings: dict[str, str], tmp_path: Path, **overrides: str) -> Iterator[FunctionsHost]:
    with make_host({**settings, **overrides}, tmp_path / "host") as host:
        yield host


def _upload(settings: dict[str, str], topic: str) -> str:
    """Upload a fresh dataset; returns the run id the app gave it."""
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(settings["DATASET_STORAGE"])
    data = jsonl(text_examples(30, f"{topic} {uuid.uuid4().hex}"))
    blobs.get_blob_client(settings["DATASET_CONTAINER"], f"{topic}.jsonl").upload_blob(data)
    ledger = build(settings).ledger
    found = wait_until(
        lambda: ledger.list_runs(None, 10, None)[0], bool, what="the run to be created"
    )
    return str(found[0].run_id)


def _run(settings: dict[str, str], run_id: str) -> Run:
    stored = build(settings).ledger.get(run_id)
    assert stored is not None
    return stored.run


def _until(settings: dict[str, str], run_id: str, done: Callable[[Run], bool], what: str) -> Run:
    return wait_until(lambda: _run(settings, run_id), done, what=what, timeout=120)


def _finished(settings: dict[str, str], run_id: str) -> Run:
    return _until(settings, run_id, lambda r: r.state.terminal, "the run to end")


def _jobs(admin: EmulatorAdmin, run_id: str) -> list[dict[str, Any]]:
    return [j for j in admin.state()["jobs"] if j["name"].startswith(run_id)]


# -- 1. endpoint names are unique per region ------------------------------------------------


def test_an_endpoint_name_taken_in_the_region_fails_the_run_before_training(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    taken = host_settings["ENDPOINT_NAME"]
    emulator_admin.reserve_endpoint_name(taken)  # another customer holds it
    with _host(host_settings, tmp_path):
        run_id = _upload(host_settings, "taken")
        run = _finished(host_settings, run_id)
    assert run.state is RunState.FAILED
    assert f"endpoint name '{taken}' is not available" in run.last_error
    assert "ENDPOINT_NAME" in run.last_error and "nothing was trained" in run.last_error
    assert _jobs(emulator_admin, run_id) == []  # no GPU spent


# -- 2. a missing role ----------------------------------------------------------------------


def test_a_missing_role_ends_the_run_with_who_what_and_where(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    client_id = f"uami-{uuid.uuid4().hex[:8]}"
    emulator_admin.deny(client_id, actions="Microsoft.MachineLearningServices/*")
    with _host(host_settings, tmp_path, AZURE_CLIENT_ID=client_id):
        run_id = _upload(host_settings, "denied")
        run = _finished(host_settings, run_id)
    assert run.state is RunState.FAILED
    error = run.last_error
    assert "403 permission denied" in error and f"identity {client_id}" in error
    assert "'AzureML Data Scientist' (f6c7c914-8db3-469d-8ca1-694a8f32e121)" in error
    workspace = host_settings["AZUREML_WORKSPACE"]
    assert "--scope /subscriptions/" in error and f"/workspaces/{workspace}" in error
    # Ended at the first refusal, not retried: one FAILED entry, right after intake.
    assert [e.state for e in run.timeline] == [
        RunState.RECEIVED,
        RunState.REGISTERING_DATA,
        RunState.FAILED,
    ]
    assert _jobs(emulator_admin, run_id) == []


# -- 3. the scoring contract ----------------------------------------------------------------


def test_an_mlflow_container_is_smoke_tested_on_score_with_input_data(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.scoring_contract("ft-*", "mlflow")
    with _host(host_settings, tmp_path, SMOKE_ROUTE="/score"):
        run_id = _upload(host_settings, "mlflow")
        run = _finished(host_settings, run_id)
    assert run.state is RunState.LIVE, (run.state, run.last_error)
    results = run.smoke["results"]
    # Up to SMOKE_PROMPT_COUNT (2) prompts: a random dataset's split may hold fewer.
    assert 1 <= len(results) <= 2
    assert all(r["status"] == 200 and r["answer"] for r in results)


def test_a_route_the_container_does_not_serve_says_which_route_and_shape(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.scoring_contract("ft-*", "openai")  # a vLLM-style container: no /score
    with _host(host_settings, tmp_path, SMOKE_ROUTE="/score"):
        run_id = _upload(host_settings, "wrongroute")
        run = _finished(host_settings, run_id)
    assert run.state is RunState.ROLLED_BACK
    assert "HTTP 404" in run.last_error
    assert "route /score (MLflow input_data shape) answered 404" in run.last_error
    assert "set SMOKE_ROUTE" in run.last_error


# -- 4. the output model, and deadlines -----------------------------------------------------


def test_the_model_is_found_by_the_name_the_job_reports(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_job("ft-*", outcome="model_renamed", model_name="renamed-by-pipeline")
    with _host(host_settings, tmp_path):
        run_id = _upload(host_settings, "renamed")
        run = _finished(host_settings, run_id)
    assert run.state is RunState.LIVE, (run.state, run.last_error)
    assert run.model_name == "renamed-by-pipeline"
    assert "/models/renamed-by-pipeline/" in run.model_id


def test_a_model_registered_late_is_waited_for_without_errors(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    speed = float(emulator_admin.state()["speed"])
    emulator_admin.fault_job("ft-*", outcome="model_late", seconds=4 * speed)  # 4 s of wall time
    with _host(host_settings, tmp_path):
        run_id = _upload(host_settings, "late")
        waiting = _until(
            host_settings,
            run_id,
            lambda r: r.activity.startswith("waiting for model"),
            "the run to wait for its model",
        )
        # Waiting is not an error: no backoff, no last_error (the SDK's "does not
        # exist" ValidationException used to be caught as an AzureError).
        assert waiting.last_error == "" and waiting.attempts == 0
        run = _finished(host_settings, run_id)
    assert run.state is RunState.LIVE, (run.state, run.last_error)


def test_deploying_past_its_deadline_ends_and_gives_the_endpoint_back(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_job("ft-*", outcome="model_late", seconds=10**6)  # never, in practice
    with _host(host_settings, tmp_path, DEPLOY_DEADLINE_MINUTES="0.05"):  # 3 s
        run_id = _upload(host_settings, "deadline")
        run = _finished(host_settings, run_id)
    assert run.state is RunState.DEPLOY_FAILED
    assert "DEPLOY_DEADLINE_MINUTES" in run.last_error
    assert f"waiting for model {run_id} to be registered" in run.last_error
    ledger = build(host_settings).ledger
    assert ledger.acquire_endpoint(run.endpoint, "next-run") == "next-run"  # lock given back


# -- 5. a duplicate submission answered with a 400 ------------------------------------------


def test_a_job_already_submitted_is_adopted_when_azure_answers_400(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    # The PUT is carried out but its reply is lost (a 503 after the fact); on the
    # retry the job lookup misses it once (replication lag), so the app submits
    # again and Azure answers "A job with this name already exists" (a 400).
    emulator_admin.fault_requests(r"PUT .*/jobs/ft-", status=503, count=1, after=True)
    with _host(host_settings, tmp_path) as host:
        run_id = _upload(host_settings, "resubmit")
        wait_until(lambda: _jobs(emulator_admin, run_id), bool, what="the job to exist")
        _until(host_settings, run_id, lambda r: bool(r.last_error), "the lost reply")
        emulator_admin.fault_requests(f"GET .*/jobs/{run_id}[?]", status=404, count=1)
        run = _finished(host_settings, run_id)
        log = host.log_text()
    assert run.state is RunState.LIVE, (run.state, run.last_error)
    assert len(_jobs(emulator_admin, run_id)) == 1
    assert f"job {run_id} was already submitted" in log  # the 400 was read as "adopt"


# -- 6. transient statuses, quota, failed steps ----------------------------------------------


def test_not_responding_is_waited_out(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    speed = float(emulator_admin.state()["speed"])
    emulator_admin.fault_job("ft-*", outcome="not_responding", seconds=4 * speed)
    with _host(host_settings, tmp_path):
        run_id = _upload(host_settings, "heartbeat")
        _until(
            host_settings,
            run_id,
            lambda r: r.job_status == "NotResponding",
            "the job to be seen NotResponding",
        )
        run = _finished(host_settings, run_id)
    assert run.state is RunState.LIVE, (run.state, run.last_error)


def test_a_quota_refusal_keeps_its_reason_and_leaves_the_live_deployment(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_deployment("ft-*", quota=True)
    with _host(host_settings, tmp_path):
        run_id = _upload(host_settings, "quota")
        run = _finished(host_settings, run_id)
    assert run.state is RunState.DEPLOY_FAILED
    assert "The request is invalid." in run.last_error
    assert "Not enough quota available for Standard_NC24ads_A100_v4" in run.last_error
    deployments = [d for d in emulator_admin.state()["deployments"] if d["name"] == run_id]
    assert deployments == []


def test_a_failed_pipeline_step_gives_its_own_error(
    host_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_job("ft-*", outcome="fail", message="CUDA out of memory on step 3")
    with _host(host_settings, tmp_path):
        run_id = _upload(host_settings, "oom")
        run = _finished(host_settings, run_id)
    assert run.state is RunState.TRAINING_FAILED
    assert "CUDA out of memory on step 3" in run.last_error
