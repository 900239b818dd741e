"""Dataset intake end to end through Azurite and the Azure ML emulator, real SDKs."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any

import pytest
from azure.core.pipeline import PipelineRequest
from azure.storage.blob import BlobServiceClient

from local.azurite import Azurite
from shared.adapters.blobs import BlobDatasetStore
from shared.domain.runs import RunState
from shared.pipeline.intake import accept_upload
from shared.pipeline.splits import part_names
from tests.support.app import BASE_MODEL, LocalApp, chat_examples, jsonl, text_examples
from tests.support.azureml import EmulatorAdmin

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]


@pytest.fixture
def app(azurite: Azurite) -> LocalApp:
    return LocalApp.create(azurite)


def _jobs_of(admin: EmulatorAdmin, run_id: str) -> list[dict[str, Any]]:
    return [j for j in admin.state()["jobs"] if j["name"] == run_id]


def test_text_dataset_becomes_one_job_with_the_right_inputs(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    app.upload("summaries.jsonl", jsonl(text_examples(40)))

    result = accept_upload(app.services, "summaries.jsonl")

    assert result.outcome == "accepted" and result.run_id
    stored = app.services.ledger.get(result.run_id)
    assert stored is not None
    run = stored.run
    assert run.state is RunState.TRAINING
    assert run.job_name == result.run_id
    assert run.validation["examples"] == 40 and run.validation["task"] == "text"
    assert run.validation["estimated_tokens"] > 0
    assert (
        run.validation["split"]["training_examples"]
        + run.validation["split"]["validation_examples"]
        == 40
    )
    assert [e.state for e in run.timeline] == [
        RunState.RECEIVED,
        RunState.REGISTERING_DATA,
        RunState.TRAINING,
    ]
    jobs = _jobs_of(emulator_admin, run.run_id)
    assert len(jobs) == 1
    details = jobs[0]["fineTuningDetails"]
    assert details["model"]["uri"] == BASE_MODEL
    assert details["taskType"] == "textCompletion"
    assert details["trainingData"]["uri"] == run.training_data
    assert details["validationData"]["uri"] == run.validation_data
    assert run.training_data.endswith(f"/data/{run.run_id}-training/versions/1")
    assert jobs[0]["tags"]["finetune-autopilot.dataset-sha256"] == run.sha256
    # Data assets point at the split parts in place, under the app's prefix.
    data = {d["id"]: d["properties"]["dataUri"] for d in emulator_admin.state()["data"]}
    training_name, _ = part_names(run.dataset.upload_id, 0.1)
    assert data[run.training_data] == f"{app.work.url}/{training_name}"


def test_an_intake_downloads_the_dataset_once_and_writes_only_to_the_work_container(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    seen: list[tuple[str, str]] = []

    def record(request: PipelineRequest[Any]) -> None:
        seen.append((request.http_request.method, request.http_request.url.split("?")[0]))

    blobs = BlobServiceClient.from_connection_string(
        app.settings["DATASET_STORAGE"], raw_request_hook=record
    )
    services = dataclasses.replace(
        app.services,
        store=BlobDatasetStore(blobs.get_container_client(app.container.container_name)),
        work=BlobDatasetStore(blobs.get_container_client(app.work.container_name)),
    )
    upload = app.upload("once.jsonl", jsonl(text_examples(60, "once")))

    result = accept_upload(services, "once.jsonl")

    assert result.outcome == "accepted" and result.run_id
    stored = services.ledger.get(result.run_id)
    assert stored is not None and stored.run.state is RunState.TRAINING
    assert [m for m, url in seen if url == upload.url] == ["HEAD", "GET"]
    # The app wrote nothing where the trigger listens: every write went to its own
    # container (created on the first write: the test leaves that to the app).
    writes = [url for m, url in seen if m in ("PUT", "POST", "DELETE")]
    assert writes and all(url.startswith(app.work.url) for url in writes)
    assert app.work.url in writes
    assert {m for m, url in seen if url.startswith(app.container.url + "/")} == {"HEAD", "GET"}


def test_chat_dataset_is_detected_and_submitted_as_chat(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    app.upload("chat.jsonl", jsonl(chat_examples(20)))
    result = accept_upload(app.services, "chat.jsonl")
    assert result.outcome == "accepted" and result.run_id
    jobs = _jobs_of(emulator_admin, result.run_id)
    assert jobs[0]["fineTuningDetails"]["taskType"] == "chatCompletion"


def test_five_concurrent_invocations_submit_exactly_one_job(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    app.upload("burst.jsonl", jsonl(text_examples(30, "standup")))
    with concurrent.futures.ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda _: accept_upload(app.services, "burst.jsonl"), range(5)))
    run_ids = {r.run_id for r in results}
    assert len(run_ids) == 1
    (run_id,) = run_ids
    assert run_id is not None
    assert len(_jobs_of(emulator_admin, run_id)) == 1
    stored = app.services.ledger.get(run_id)
    assert stored is not None
    # Later invocations reconcile again: on the emulator's fast clock the job may
    # already have completed.
    assert stored.run.state in (RunState.TRAINING, RunState.DEPLOYING)
    assert stored.run.job_name == run_id


def test_same_bytes_under_another_name_is_a_duplicate(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    data = jsonl(text_examples(25, "review"))
    app.upload("first.jsonl", data)
    first = accept_upload(app.services, "first.jsonl")
    app.upload("copy.jsonl", data)
    second = accept_upload(app.services, "copy.jsonl")

    assert second.outcome == "duplicate"
    assert second.run_id and first.run_id
    duplicate = app.services.ledger.get(second.run_id)
    assert duplicate is not None
    assert duplicate.run.state is RunState.DUPLICATE
    assert duplicate.run.duplicate_of == first.run_id
    assert len(_jobs_of(emulator_admin, first.run_id)) == 1
    assert not _jobs_of(emulator_admin, second.run_id)


def test_new_bytes_under_the_same_name_start_a_new_run(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    app.upload("evolving.jsonl", jsonl(text_examples(20, "sync")))
    first = accept_upload(app.services, "evolving.jsonl")
    app.upload("evolving.jsonl", jsonl(text_examples(21, "sync")))
    second = accept_upload(app.services, "evolving.jsonl")
    assert first.outcome == second.outcome == "accepted"
    assert first.run_id != second.run_id


def test_the_same_upload_seen_again_is_not_validated_again(app: LocalApp) -> None:
    app.upload("again.jsonl", jsonl(text_examples(15)))
    first = accept_upload(app.services, "again.jsonl")
    again = accept_upload(app.services, "again.jsonl")
    assert again.outcome == "seen" and again.run_id == first.run_id


@pytest.mark.parametrize(
    "name",
    ["notes.txt", "_autopilot/reports/x.jsonl", "data.validation.jsonl", "data.json"],
)
def test_names_outside_the_contract_are_skipped(app: LocalApp, name: str) -> None:
    app.upload(name, jsonl(text_examples(12)))
    assert accept_upload(app.services, name).outcome == "skipped"


def test_hyperparameter_overrides_from_blob_metadata(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    app.upload("tuned.jsonl", jsonl(text_examples(12)), finetune_num_train_epochs="3")
    result = accept_upload(app.services, "tuned.jsonl")
    assert result.run_id
    (job,) = _jobs_of(emulator_admin, result.run_id)
    assert job["fineTuningDetails"]["hyperParameters"]["num_train_epochs"] == "3"


def test_bad_metadata_override_is_rejected_with_the_reason(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    app.upload("badmeta.jsonl", jsonl(text_examples(12)), finetune_learning_rate="fast")
    result = accept_upload(app.services, "badmeta.jsonl")
    assert result.outcome == "rejected"
    assert "learning_rate" in result.detail
    assert result.run_id and not _jobs_of(emulator_admin, result.run_id)


def test_sibling_validation_file_is_used_in_place(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    app.upload("pair.validation.jsonl", jsonl(text_examples(10, "check")))
    app.upload("pair.jsonl", jsonl(text_examples(20, "plan")))
    result = accept_upload(app.services, "pair.jsonl")
    assert result.outcome == "accepted" and result.run_id
    stored = app.services.ledger.get(result.run_id)
    assert stored is not None
    data = {d["id"]: d["properties"]["dataUri"] for d in emulator_admin.state()["data"]}
    assert data[stored.run.training_data].endswith("/pair.jsonl")
    assert data[stored.run.validation_data].endswith("/pair.validation.jsonl")


def test_throttling_leaves_the_run_in_place_with_a_next_check(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_requests(r"^PUT .*/jobs/", status=429, count=1, retry_after=7)
    app.upload("throttled.jsonl", jsonl(text_examples(14, "retro")))
    result = accept_upload(app.services, "throttled.jsonl")
    assert result.run_id
    stored = app.services.ledger.get(result.run_id)
    assert stored is not None
    run = stored.run
    assert run.state is RunState.REGISTERING_DATA
    assert run.attempts == 0 and "429" in run.last_error  # throttled: not a failed try
    assert run.next_check_at is not None
    assert (run.next_check_at - run.updated_at).total_seconds() >= 7  # honours Retry-After
    # What the step did before the refusal is kept: the data assets are recorded.
    assert run.training_data and run.validation_data

    from shared.pipeline.reconciler import reconcile

    # Before the Retry-After has passed, a reconcile leaves the run alone.
    assert reconcile(app.services, result.run_id) == run
    app.services.ledger.replace(stored, dataclasses.replace(run, next_check_at=run.updated_at))
    after = reconcile(app.services, result.run_id)
    assert after is not None and after.state is RunState.TRAINING
    assert len(_jobs_of(emulator_admin, result.run_id)) == 1


def test_a_4xx_that_cannot_succeed_fails_the_run_with_the_service_message(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    app.upload("doomed.jsonl", jsonl(text_examples(16, "audit")), finetune_lora_r="8")
    emulator_admin.fault_requests(r"^PUT .*/jobs/", status=400, count=1)
    result = accept_upload(app.services, "doomed.jsonl")
    assert result.run_id
    stored = app.services.ledger.get(result.run_id)
    assert stored is not None
    assert stored.run.state is RunState.FAILED
    assert "400" in stored.run.last_error and "Injected fault" in stored.run.last_error
