"""Contract: a failed fine-tuning job's error message, read through the real SDK.

The ARM job resource (``ml_client.jobs.get``) carries a job's status but no
error text. Azure ML keeps the error in run history, which azure-ai-ml 1.35
reads with ``ml_client.jobs._runs_operations.get_run_details(name)`` (private:
``JobOperations._runs_operations`` is the run-history client the public
``jobs.stream`` uses). A fine-tuning job is a pipeline: the parent run's error
only says "User errors were found in at least one of the child runs."; the
reason is on the failed child step, which the public
``ml_client.jobs.list(parent_job_name=name)`` lists (with statuses) and whose
run details carry the message. The SDK finds run history through the
workspace's discovery document, not through ``AZUREML_DEV_URL_MFE``; these
tests check the whole chain against the emulator, with the environment as the
only setup:

    GET {ARM}/workspaces/{ws}                       -> properties.discoveryUrl
    GET {discoveryUrl}  (anonymous)                 -> {"api": ..., ...}
    GET {api}/history/v1.0/.../runs/{name}/details  -> RunDetails (error.error.message)
    GET {ARM}/workspaces/{ws}/jobs/{name}           -> (jobs.list checks the parent)
    GET {api}/history/v1.0/.../runs/{name}/children -> PaginatedRunList of child Runs
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests
from azure.ai.ml import MLClient
from azure.ai.ml._restclient.runhistory.models import RootError, RunHistoryErrorResponse
from azure.ai.ml.exceptions import JobException
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient

from local.azureml_emulator import AzureMLEmulator
from tests.support.azureml import EmulatorAdmin, wait_until
from tests.support.finetuning import (
    finetuning_job,
    register_data,
    status_of,
    unique,
    upload_jsonl,
    wait_for_job,
)

pytestmark = pytest.mark.integration

TRAINING = [
    {"prompt": "What is the capital of France?", "completion": "Paris."},
    {"prompt": "What is the capital of Japan?", "completion": "Tokyo."},
]
INJECTED = "CUDA out of memory: tried to allocate 2.00 GiB (injected)"
CHILD_FAILED = "User errors were found in at least one of the child runs."
STEPS = ("model_import", "data_import", "finetune", "register_model")


def run_error(ml_client: MLClient, run_id: str) -> str:
    """A run's error message from run history, or "" if it has none."""
    details = ml_client.jobs._runs_operations.get_run_details(run_id)
    root = details.error.error if details.error else None
    return str(root.message or "") if root else ""


def failed_step_error(ml_client: MLClient, name: str) -> str:
    """What an adapter does for the real reason: the failed child step's error."""
    for child in ml_client.jobs.list(parent_job_name=name):
        if child is not None and child.status == "Failed":
            return run_error(ml_client, child.name)
    return ""


@pytest.fixture
def container(blob_service: BlobServiceClient) -> Iterator[ContainerClient]:
    client = blob_service.create_container(f"joberrors{uuid.uuid4().hex[:12]}")
    yield client
    client.delete_container()


@pytest.fixture
def training_data(ml_client: MLClient, container: ContainerClient) -> str:
    """A registered data asset of usable training examples; its id."""
    data = register_data(
        ml_client, unique("data"), upload_jsonl(container, "train.jsonl", TRAINING)
    )
    return str(data.id)


def submit(ml_client: MLClient, name: str, data_id: str) -> None:
    ml_client.jobs.create_or_update(
        finetuning_job(name=name, prefix=unique("model"), training=data_id, validation=data_id)
    )


def history_url(emulator: AzureMLEmulator, ml_client: MLClient, run_id: str) -> str:
    return (
        f"{emulator.base_url}/history/v1.0/subscriptions/{ml_client.subscription_id}"
        f"/resourceGroups/{ml_client.resource_group_name}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{ml_client.workspace_name}"
        f"/runs/{run_id}/details"
    )


# --- run details through the SDK ------------------------------------------------------------


def test_failed_job_error_message_comes_back(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, training_data: str
) -> None:
    name = unique("job")
    emulator_admin.fault_job(name, "fail", INJECTED)
    submit(ml_client, name, training_data)
    job, _ = wait_for_job(ml_client, name)

    details = ml_client.jobs._runs_operations.get_run_details(name)

    assert status_of(job) == "Failed"
    assert details.run_id == name
    assert details.status == "Failed"
    assert details.error is not None
    assert details.error.error is not None
    assert details.error.error.code == "UserError"
    assert details.error.error.message == CHILD_FAILED  # the pipeline's generic error
    assert details.end_time_utc is not None
    assert details.created_time_utc is not None
    assert details.end_time_utc >= details.created_time_utc
    assert failed_step_error(ml_client, name) == INJECTED


def test_unusable_training_data_fails_with_the_reason(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, container: ContainerClient
) -> None:
    unusable = [{"text": "no prompt and no completion"}]
    data = register_data(ml_client, unique("data"), upload_jsonl(container, "bad.jsonl", unusable))
    name = unique("job")
    submit(ml_client, name, str(data.id))

    job, _ = wait_for_job(ml_client, name)
    message = failed_step_error(ml_client, name)

    assert status_of(job) == "Failed"
    assert run_error(ml_client, name) == CHILD_FAILED
    [described] = [j for j in emulator_admin.state()["jobs"] if j["name"] == name]
    assert described["error"]
    assert described["failedStep"] == "data_import"  # reading the data is that step's job
    assert message == described["error"]


def test_completed_job_has_no_error(ml_client: MLClient, training_data: str) -> None:
    name = unique("job")
    submit(ml_client, name, training_data)
    job, _ = wait_for_job(ml_client, name)

    details = ml_client.jobs._runs_operations.get_run_details(name)

    assert status_of(job) == "Completed"
    assert details.status == "Completed"
    assert details.error is None
    assert run_error(ml_client, name) == ""
    assert failed_step_error(ml_client, name) == ""


def test_running_job_has_no_error_yet(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, training_data: str
) -> None:
    name = unique("job")
    emulator_admin.fault_job(name, "stuck", "never finishes")
    submit(ml_client, name, training_data)
    try:
        details = wait_until(
            lambda: ml_client.jobs._runs_operations.get_run_details(name),
            lambda found: found.status == "Running",
            what=f"job {name} to be Running",
        )

        assert details.error is None
        assert details.end_time_utc is None
        assert run_error(ml_client, name) == ""
    finally:
        ml_client.jobs.begin_cancel(name).result()


def test_unknown_job_is_not_found(ml_client: MLClient) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        ml_client.jobs._runs_operations.get_run_details(unique("missing"))

    assert missing.value.status_code == 404


# --- the pipeline's child steps ----------------------------------------------------------------


def test_children_list_the_steps_and_the_failed_one_has_the_reason(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, training_data: str
) -> None:
    name = unique("job")
    emulator_admin.fault_job(name, "fail", INJECTED)
    submit(ml_client, name, training_data)
    wait_for_job(ml_client, name)

    children = list(ml_client.jobs.list(parent_job_name=name))
    statuses = {child.display_name: child.status for child in children}
    [failed] = [child for child in children if child.status == "Failed"]
    failed_details = ml_client.jobs._runs_operations.get_run_details(failed.name)
    parent_details = ml_client.jobs._runs_operations.get_run_details(name)

    # The register step never ran: the fine-tune step failed first.
    assert statuses == {
        "model_import": "Completed",
        "data_import": "Completed",
        "finetune": "Failed",
    }
    assert failed.name == f"{name}_finetune_step"
    assert failed_details.parent_run_id == name
    failed_error = _root_error(failed_details.error)
    assert (failed_error.code, failed_error.message) == ("UserError", INJECTED)
    assert _root_error(ml_client.jobs._runs_operations.get_run(failed.name).error).message == (
        INJECTED
    )
    assert _root_error(parent_details.error).message == CHILD_FAILED


def _root_error(response: RunHistoryErrorResponse | None) -> RootError:
    """A run's error as run history reports it (both levels are Optional in the SDK)."""
    assert response is not None and response.error is not None
    return response.error


def test_a_completed_job_lists_every_step_completed(
    ml_client: MLClient, training_data: str
) -> None:
    name = unique("job")
    submit(ml_client, name, training_data)
    wait_for_job(ml_client, name)

    children = list(ml_client.jobs.list(parent_job_name=name))

    assert [c.name for c in children] == [f"{name}_{step}_step" for step in STEPS]
    assert {c.status for c in children} == {"Completed"}
    for child in children:
        details = ml_client.jobs._runs_operations.get_run_details(child.name)
        assert details.error is None
        assert details.root_run_id == name


def test_child_steps_raise_their_own_events(
    ml_client: MLClient, emulator_admin: EmulatorAdmin, training_data: str
) -> None:
    name = unique("job")
    emulator_admin.fault_job(name, "fail", INJECTED)
    submit(ml_client, name, training_data)
    wait_for_job(ml_client, name)

    events = [e for e in emulator_admin.events() if e["data"]["runId"].startswith(name)]
    step_events = {
        (e["data"]["runId"], e["data"]["runStatus"])
        for e in events
        if e["data"].get("runStatus") and e["data"]["runType"] == "azureml.StepRun"
    }

    assert (f"{name}_finetune_step", "Running") in step_events
    assert (f"{name}_finetune_step", "Failed") in step_events
    assert (f"{name}_data_import_step", "Completed") in step_events
    parent = [e["data"]["runStatus"] for e in events if e["data"]["runId"] == name]
    assert parent[-1] == "Failed"


def test_children_of_an_unknown_job_are_not_found(ml_client: MLClient) -> None:
    with pytest.raises(ResourceNotFoundError):
        list(ml_client.jobs.list(parent_job_name=unique("missing")))


# --- the public fallback ----------------------------------------------------------------------


def test_public_stream_raises_the_failed_jobs_error(
    ml_client: MLClient,
    emulator_admin: EmulatorAdmin,
    training_data: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    failed, completed = unique("job"), unique("job")
    emulator_admin.fault_job(failed, "fail", INJECTED)
    for name in (failed, completed):
        submit(ml_client, name, training_data)
    for name in (failed, completed):
        wait_for_job(ml_client, name)

    with pytest.raises(JobException) as raised:
        ml_client.jobs.stream(failed)
    streamed = ml_client.jobs.stream(completed)

    # The message is the parent run's error dumped as JSON: a pipeline's is generic.
    assert CHILD_FAILED in raised.value.message
    assert INJECTED not in raised.value.message
    assert '"code": "UserError"' in raised.value.message
    assert streamed is None
    assert f"RunId: {completed}" in capsys.readouterr().out


# --- how the SDK gets there -------------------------------------------------------------------


def test_workspace_discovery_points_the_sdk_at_the_emulator(
    ml_client: MLClient, emulator: AzureMLEmulator
) -> None:
    workspace = ml_client.workspaces.get(ml_client.workspace_name)

    response = requests.get(str(workspace.discovery_url), timeout=10)  # anonymous, as on Azure

    assert str(workspace.discovery_url).startswith(emulator.base_url)
    assert response.status_code == 200
    assert response.json()["api"] == emulator.base_url


def test_run_history_requires_a_bearer_token(
    ml_client: MLClient, emulator: AzureMLEmulator
) -> None:
    url = history_url(emulator, ml_client, unique("missing"))

    anonymous = requests.get(url, timeout=10)
    with_token = requests.get(url, headers={"Authorization": "Bearer token"}, timeout=10)

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "AuthenticationFailed"
    assert with_token.status_code == 404  # authenticated, and no such run
    assert with_token.json()["error"]["innerError"]["code"] == "NotFoundError"
