"""Intake against in-memory fakes: which uploads become runs, which are rejected,
repeated or duplicated, and what each leaves behind (runs, reports, jobs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.domain.errors import RetryableError
from shared.domain.runs import RunState
from shared.domain.storage import REPORTS_PREFIX, SPLITS_PREFIX
from shared.pipeline.intake import accept_upload, skip_reason
from tests.support.app import chat_examples, jsonl, text_examples
from tests.support.fakes import Harness

CORPUS = Path(__file__).resolve().parents[1] / "data" / "malformed"
EXPECTED: dict[str, dict[str, object]] = json.loads((CORPUS / "EXPECTED.json").read_text())


@pytest.fixture
def h() -> Harness:
    return Harness()


def _report(h: Harness, report_url: str) -> dict[str, object]:
    name = report_url.split(f"/{h.work.container}/", 1)[1]
    assert name.startswith(REPORTS_PREFIX)
    report: dict[str, object] = json.loads(h.work.blobs[name].text())
    return report


# -- skipped ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("notes.txt", "not a .jsonl file"),
        ("data.JSON", "not a .jsonl file"),
        ("_autopilot/reports/x.jsonl", "written by the app itself"),
        ("_autopilot/splits/abc/0.1/training.jsonl", "written by the app itself"),
        ("data.validation.jsonl", "a validation file"),
        ("team/Data.Validation.JSONL", "a validation file"),
    ],
)
def test_names_outside_the_contract_are_skipped(h: Harness, name: str, why: str) -> None:
    h.store.upload(name, jsonl(text_examples(20)))
    result = accept_upload(h.services, name)
    assert result.outcome == "skipped" and why in result.detail
    assert result.run_id is None and h.ledger.runs == {}


def test_dataset_names_are_not_skipped() -> None:
    assert skip_reason("team/q3/DATA.JSONL") is None


def test_a_blob_deleted_before_it_was_handled_is_skipped(h: Harness) -> None:
    result = accept_upload(h.services, "gone.jsonl")
    assert (result.outcome, result.detail) == ("skipped", "the blob no longer exists")
    assert h.ledger.runs == {}


# -- accepted ---------------------------------------------------------------------------------


def test_a_valid_upload_becomes_a_training_run(h: Harness) -> None:
    blob = h.store.upload("team/data.jsonl", jsonl(text_examples(20)))

    result = accept_upload(h.services, "team/data.jsonl")

    assert result.outcome == "accepted" and result.detail == "20 examples"
    assert result.run_id is not None and result.run_id.startswith("ft-")
    run = h.ledger.run(result.run_id)
    assert run.state is RunState.TRAINING
    assert run.dataset.name == "team/data.jsonl" and run.dataset.etag == blob.etag
    assert run.timeline[0].detail == "uploaded as team/data.jsonl"
    assert run.timeline[1].detail.startswith("VALID")
    assert run.validation["examples"] == 20 and run.validation["epochs"] == 1
    assert run.validation["training_tokens"] > 0
    assert run.config["task"] == "text" and run.config["sibling_validation"] is None
    assert run.config["base_model"] == h.settings.base_model
    assert h.ledger.uploads[run.dataset.upload_id] == run.run_id
    assert [job.name for job in h.azureml.submitted()] == [run.run_id]
    # The upload itself is only read, never rewritten.
    assert h.store.blobs["team/data.jsonl"] is blob


def test_an_upload_is_read_once_to_validate_split_and_submit(h: Harness) -> None:
    h.store.upload("data.jsonl", jsonl(text_examples(40)))

    result = accept_upload(h.services, "data.jsonl")

    assert result.outcome == "accepted" and result.run_id
    assert h.store.reads == ["data.jsonl"]  # one download, for validation and split alike
    run = h.ledger.run(result.run_id)
    split = run.validation["split"]
    parts = {name: h.work.blobs[name] for name in h.work.names(SPLITS_PREFIX)}
    assert sorted(parts) == sorted(
        [split["validation_name"], split["validation_name"].replace("validation", "training")]
    )
    assert sum(len(blob.lines()) for blob in parts.values()) == 40
    assert split["training_examples"] + split["validation_examples"] == 40
    assert split["validation_container"] == h.work.container
    # The run named its parts when it was created; the data assets point at them.
    assert h.azureml.data[run.training_data] == split["training_url"]
    assert h.azureml.data[run.validation_data] == split["validation_url"]
    assert h.work.reads == []


def test_an_invalid_upload_commits_no_parts(h: Harness) -> None:
    data = jsonl(text_examples(20)) + b"not json\n"
    h.store.upload("bad.jsonl", data)
    assert accept_upload(h.services, "bad.jsonl").outcome == "rejected"
    assert h.store.reads == ["bad.jsonl"]
    assert h.work.names(SPLITS_PREFIX) == []  # only the report was written
    assert h.work.names() == h.work.names(REPORTS_PREFIX)


def test_the_run_id_is_the_content_and_the_configuration(h: Harness) -> None:
    data = jsonl(text_examples(20))
    h.store.upload("a.jsonl", data)
    first = accept_upload(h.services, "a.jsonl")
    h.configure(hyperparameters={"num_train_epochs": "3"})
    h.store.upload("b.jsonl", data)
    second = accept_upload(h.services, "b.jsonl")
    assert first.outcome == second.outcome == "accepted"
    assert first.run_id and second.run_id and first.run_id != second.run_id
    assert first.run_id[:15] == second.run_id[:15]  # same content hash prefix


def test_hyperparameter_overrides_in_blob_metadata_are_normalised(h: Harness) -> None:
    h.store.upload(
        "data.jsonl",
        jsonl(text_examples(20)),
        finetune_num_train_epochs="2",
        finetune_LEARNING_RATE="0.0002",
        owner="team-a",  # not a finetune_ key: ignored
        finetune_max_seq_length="20",  # the job's own limit: over it is a warning
    )
    result = accept_upload(h.services, "data.jsonl")
    assert result.outcome == "accepted" and result.run_id
    run = h.ledger.run(result.run_id)
    assert run.validation["tokens"]["max_seq_length"] == 20
    assert run.validation["warning_count"] == run.validation["tokens"]["over_max_seq_length"] > 0
    hyper = run.config["hyperparameters"]
    assert hyper["num_train_epochs"] == "2" and hyper["learning_rate"] == "0.0002"
    assert run.validation["epochs"] == 2
    tokens = run.validation["tokens"]  # the tokenizer's count, times the epochs
    assert tokens["exact"] and tokens["epochs"] == 2
    assert tokens["training_tokens"] == 2 * tokens["total"] == run.validation["training_tokens"]
    [job] = h.azureml.submitted()
    assert job.spec is not None and job.spec.hyperparameters == hyper


def test_a_chat_dataset_is_submitted_as_chat(h: Harness) -> None:
    h.store.upload("chat.jsonl", jsonl(chat_examples(12)))
    result = accept_upload(h.services, "chat.jsonl")
    assert result.outcome == "accepted" and result.run_id
    [job] = h.azureml.submitted()
    assert job.spec is not None and job.spec.task == "chat"


# -- seen, duplicate, forced -------------------------------------------------------------------


def test_the_same_upload_seen_again_is_only_reconciled(h: Harness) -> None:
    h.store.upload("data.jsonl", jsonl(text_examples(20)))
    first = accept_upload(h.services, "data.jsonl")
    assert first.run_id
    reads = len(h.store.reads)

    again = accept_upload(h.services, "data.jsonl")

    assert (again.outcome, again.run_id) == ("seen", first.run_id)
    assert len(h.store.reads) == reads  # not validated again
    assert list(h.ledger.runs) == [first.run_id]
    assert h.ledger.run(first.run_id).activity == "job Queued"  # reconciled: job observed


def test_a_new_version_of_the_same_blob_is_a_new_upload(h: Harness) -> None:
    h.store.upload("data.jsonl", jsonl(text_examples(20)))
    first = accept_upload(h.services, "data.jsonl")
    h.store.upload("data.jsonl", jsonl(text_examples(25)))
    second = accept_upload(h.services, "data.jsonl")
    assert first.outcome == second.outcome == "accepted"
    assert first.run_id != second.run_id and len(h.azureml.submitted()) == 2


def test_the_same_content_under_another_name_is_a_duplicate(h: Harness) -> None:
    data = jsonl(text_examples(20))
    h.store.upload("first.jsonl", data)
    original = accept_upload(h.services, "first.jsonl")
    h.store.upload("copy.jsonl", data)

    result = accept_upload(h.services, "copy.jsonl")

    assert result.outcome == "duplicate" and result.run_id and original.run_id
    run = h.ledger.run(result.run_id)
    assert run.state is RunState.DUPLICATE and run.duplicate_of == original.run_id
    assert original.run_id in result.detail and "first.jsonl" in result.detail
    assert run.sha256 == h.ledger.run(original.run_id).sha256
    assert len(h.azureml.submitted()) == 1  # no new job
    assert accept_upload(h.services, "copy.jsonl").outcome == "seen"


def test_force_trains_the_same_content_again(h: Harness) -> None:
    h.store.upload("data.jsonl", jsonl(text_examples(20)))
    first = accept_upload(h.services, "data.jsonl")
    h.clock.advance(60)

    forced = accept_upload(h.services, "data.jsonl", force=True)

    assert forced.outcome == "accepted" and forced.run_id != first.run_id
    assert forced.run_id is not None
    assert h.ledger.run(forced.run_id).config["forced"] == h.clock.now.isoformat()
    assert len(h.azureml.submitted()) == 2
    # A request by hand does not take over the upload's link to its first run.
    assert h.ledger.uploads == {h.ledger.run(first.run_id or "").dataset.upload_id: first.run_id}


def test_training_an_upload_again_by_hand_keeps_its_parts(h: Harness) -> None:
    # An earlier job may still be reading them: they are not written again.
    h.store.upload("data.jsonl", jsonl(text_examples(20)))
    first = accept_upload(h.services, "data.jsonl")
    parts = dict(h.work.blobs)

    forced = accept_upload(h.services, "data.jsonl", force=True)

    assert forced.outcome == "accepted" and forced.run_id and first.run_id
    assert h.work.blobs == parts and all(h.work.blobs[n] is b for n, b in parts.items())
    split = h.ledger.run(forced.run_id).validation["split"]
    assert split == {
        **h.ledger.run(first.run_id).validation["split"],
        "method": "hash split at 0.1 (reused)",
    }
    assert h.store.reads == ["data.jsonl", "data.jsonl"]  # validated again, by hand


def test_a_request_by_hand_repeating_a_config_is_seen_not_duplicated(h: Harness) -> None:
    h.store.upload("data.jsonl", jsonl(text_examples(20)))
    overrides = {"num_train_epochs": 2}
    first = accept_upload(h.services, "data.jsonl", overrides=overrides)
    again = accept_upload(h.services, "data.jsonl", overrides=overrides)
    assert first.outcome == "accepted" and first.run_id
    assert (again.outcome, again.run_id) == ("seen", first.run_id)
    assert again.detail == "this upload was already run with this config"
    assert h.ledger.run(first.run_id).config["hyperparameters"]["num_train_epochs"] == "2"
    assert len(h.azureml.submitted()) == 1


def test_a_crash_between_creating_the_run_and_linking_the_upload_heals(h: Harness) -> None:
    h.store.upload("data.jsonl", jsonl(text_examples(20)))
    h.ledger.fail("link_upload", RetryableError("table unavailable"))
    with pytest.raises(RetryableError):
        accept_upload(h.services, "data.jsonl")
    [run_id] = h.ledger.runs
    assert h.ledger.run(run_id).state is RunState.REGISTERING_DATA

    result = accept_upload(h.services, "data.jsonl")  # the trigger fires again

    assert (result.outcome, result.run_id) == ("accepted", run_id)
    assert h.ledger.uploads == {h.ledger.run(run_id).dataset.upload_id: run_id}
    assert h.ledger.run(run_id).state is RunState.TRAINING
    assert len(h.azureml.submitted()) == 1


# -- rejected ---------------------------------------------------------------------------------


def test_an_invalid_upload_is_rejected_with_a_report_and_left_untouched(h: Harness) -> None:
    lines = jsonl(text_examples(20)).splitlines(keepends=True)
    lines[3] = b'{"prompt": "no completion"}\n'
    blob = h.store.upload("bad.jsonl", b"".join(lines))

    result = accept_upload(h.services, "bad.jsonl")

    assert result.outcome == "rejected" and result.run_id
    run = h.ledger.run(result.run_id)
    assert run.state is RunState.REJECTED and run.run_id.startswith("rej-")
    assert run.last_error == result.detail.splitlines()[0]
    assert "line 4" in result.detail
    report = _report(h, run.report_url)
    assert report["valid"] is False and report["etag"] == blob.etag
    errors = report["errors"]
    assert isinstance(errors, list) and errors[0]["line"] == 4
    text = h.work.blobs[
        run.report_url.split("/autopilot-work/", 1)[1].removesuffix(".json") + ".txt"
    ]
    assert text.content_type.startswith("text/plain") and "INVALID" in text.text()
    assert h.store.blobs["bad.jsonl"] is blob
    assert h.store.names() == ["bad.jsonl"]  # the app wrote nothing into the watched container
    assert h.azureml.jobs == {} and h.azureml.data == {}
    assert h.ledger.uploads[run.dataset.upload_id] == run.run_id
    assert run.needs_attention  # its events are still to go out (the timer publishes them)
    assert accept_upload(h.services, "bad.jsonl").outcome == "seen"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_malformed_file_of_the_corpus_is_rejected_at_its_line(h: Harness, name: str) -> None:
    h.configure(min_examples=10)
    h.store.upload(name, (CORPUS / name).read_bytes())
    result = accept_upload(h.services, name)
    assert result.outcome == "rejected" and result.run_id
    errors = _report(h, h.ledger.run(result.run_id).report_url)["errors"]
    assert isinstance(errors, list)
    expected = EXPECTED[name]
    at_line = [e for e in errors if e["line"] == expected["line"]]
    assert at_line and at_line[0]["code"] == expected["code"], errors[:3]
    assert h.azureml.jobs == {}


@pytest.mark.parametrize(
    ("metadata", "overrides", "problem"),
    [
        ({"finetune_num_train_epochs": "0"}, None, "an integer from 1 to 100"),
        ({"finetune_optimizer": "adam"}, None, "not an allowed hyperparameter"),
        ({}, {"learning_rate": "fast"}, "learning_rate"),
    ],
)
def test_bad_hyperparameters_reject_the_upload_without_reading_it(
    h: Harness, metadata: dict[str, str], overrides: dict[str, object] | None, problem: str
) -> None:
    h.store.upload("data.jsonl", jsonl(text_examples(20)), **metadata)
    result = accept_upload(h.services, "data.jsonl", overrides=overrides)
    assert result.outcome == "rejected" and problem in result.detail
    assert result.run_id is not None
    run = h.ledger.run(result.run_id)
    report = _report(h, run.report_url)
    assert report["error_count"] == 1
    assert report["errors"] == [run.validation["errors"][0]]
    assert run.validation["errors"][0]["code"] == "invalid_metadata"
    assert h.store.reads == []


def test_a_file_over_the_size_limit_is_rejected_unread(h: Harness) -> None:
    h.configure(max_dataset_bytes=1000)
    h.store.upload("big.jsonl", jsonl(text_examples(20)))
    result = accept_upload(h.services, "big.jsonl")
    assert result.outcome == "rejected"
    assert "over the size limit of 1,000 bytes" in result.detail
    assert result.run_id is not None
    assert h.ledger.run(result.run_id).validation["errors"][0]["code"] == "file_too_large"
    assert h.store.reads == []


def test_a_dataset_of_the_wrong_task_is_rejected(h: Harness) -> None:
    h.configure(task="chat")
    h.store.upload("data.jsonl", jsonl(text_examples(20)))
    result = accept_upload(h.services, "data.jsonl")
    assert result.outcome == "rejected"


def test_too_few_examples_are_rejected(h: Harness) -> None:
    h.store.upload("small.jsonl", jsonl(text_examples(3)))
    result = accept_upload(h.services, "small.jsonl")
    assert result.outcome == "rejected" and "3" in result.detail


# -- a user's own validation file --------------------------------------------------------------


def test_a_sibling_validation_file_is_used_in_place(h: Harness) -> None:
    h.store.upload("team/data.jsonl", jsonl(text_examples(20)))
    sibling = h.store.upload("team/data.validation.jsonl", jsonl(text_examples(6, "review")))

    result = accept_upload(h.services, "team/data.jsonl")

    assert result.outcome == "accepted" and result.run_id
    run = h.ledger.run(result.run_id)
    config = run.config["sibling_validation"]
    assert config["name"] == "team/data.validation.jsonl" and config["examples"] == 6
    assert config["url"] == h.store.url("team/data.validation.jsonl")
    assert len(config["sha256"]) == 64
    split = run.validation["split"]
    assert split["method"] == "sibling validation file"
    assert split["validation_name"] == "team/data.validation.jsonl"
    # Both files are registered where they are; nothing is split or copied.
    assert h.azureml.data[run.training_data] == h.store.url("team/data.jsonl")
    assert h.azureml.data[run.validation_data] == h.store.url("team/data.validation.jsonl")
    assert h.work.names(SPLITS_PREFIX) == [] and h.store.names(SPLITS_PREFIX) == []
    assert h.store.blobs["team/data.validation.jsonl"] is sibling


def test_the_sibling_is_part_of_the_run_id(h: Harness) -> None:
    data = jsonl(text_examples(20))
    h.store.upload("a.jsonl", data)
    alone = accept_upload(h.services, "a.jsonl")
    h.store.upload("b.jsonl", data)
    h.store.upload("b.validation.jsonl", jsonl(text_examples(6, "review")))
    with_sibling = accept_upload(h.services, "b.jsonl")
    assert with_sibling.outcome == "accepted" and with_sibling.run_id != alone.run_id


@pytest.mark.parametrize(
    ("sibling", "problem"),
    [
        (b'{"prompt": "p"}\n' * 12, "validation file data.validation.jsonl: "),
        (jsonl(chat_examples(12)), "validation file data.validation.jsonl: "),
    ],
)
def test_an_invalid_sibling_rejects_the_upload(h: Harness, sibling: bytes, problem: str) -> None:
    h.store.upload("data.jsonl", jsonl(text_examples(20)))
    h.store.upload("data.validation.jsonl", sibling)
    result = accept_upload(h.services, "data.jsonl")
    assert result.outcome == "rejected" and result.detail.startswith(problem)
    assert result.run_id is not None
    assert h.ledger.run(result.run_id).state is RunState.REJECTED
    assert h.azureml.jobs == {}
