"""Run records: closed transitions, timeline, persistence round trip."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.domain.runs import DatasetRef, InvalidTransition, Run, RunState, config_hash, run_id_for

NOW = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
DATASET = DatasetRef("datasets", "a.jsonl", "https://acct/datasets/a.jsonl", '"0x1"', 123)


def test_transitions_outside_the_table_are_refused() -> None:
    run = Run.new("ft-x", DATASET, NOW)
    with pytest.raises(InvalidTransition):
        run.moved_to(RunState.LIVE, NOW)
    done = run.moved_to(RunState.REJECTED, NOW, "bad")
    assert done.state.terminal and not done.active and done.next_check_at is None
    with pytest.raises(InvalidTransition):
        done.moved_to(RunState.REGISTERING_DATA, NOW)


def test_moving_records_the_timeline_and_resets_attempts() -> None:
    run = Run.new("ft-x", DATASET, NOW, "uploaded").moved_to(RunState.REGISTERING_DATA, NOW)
    retried = run.retry_later(NOW, "429 throttled", 30)
    assert retried.attempts == 1 and retried.last_error == "429 throttled"
    assert retried.next_check_at == NOW + dt.timedelta(seconds=30)
    moved = retried.moved_to(RunState.TRAINING, NOW, "submitted", job_name="ft-x")
    assert moved.attempts == 0 and moved.last_error == ""
    assert [e.state for e in moved.timeline] == [
        RunState.RECEIVED,
        RunState.REGISTERING_DATA,
        RunState.TRAINING,
    ]
    assert moved.timeline[-1].detail == "submitted"


def test_round_trip_through_dict() -> None:
    run = Run.new("ft-x", DATASET, NOW, config={"a": [1, 2]}, validation={"examples": 3})
    run = run.moved_to(RunState.REGISTERING_DATA, NOW, "ok")
    assert Run.from_dict(run.to_dict()) == run


def test_run_ids_depend_on_content_and_config_only() -> None:
    sha = "ab" * 32
    assert run_id_for(sha, {"a": 1, "b": 2}) == run_id_for(sha, {"b": 2, "a": 1})
    assert run_id_for(sha, {"a": 1}) != run_id_for(sha, {"a": 2})
    assert run_id_for(sha, {"a": 1}) != run_id_for("cd" * 32, {"a": 1})
    run_id = run_id_for(sha, {"a": 1})
    assert len(run_id) <= 32 and run_id[0].isalpha()
    assert len(config_hash({})) == 8


def test_upload_id_is_per_blob_version() -> None:
    other_version = DatasetRef("datasets", "a.jsonl", DATASET.url, '"0x2"', 123)
    assert DATASET.upload_id != other_version.upload_id
    same = DatasetRef("datasets", "a.jsonl", "elsewhere", '"0x1"', 9)
    assert DATASET.upload_id == same.upload_id


def test_an_ended_run_keeps_no_stale_activity() -> None:
    now = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    dataset = DatasetRef("datasets", "a.jsonl", "https://acct/datasets/a.jsonl")
    run = Run.new("ft-x", dataset, now).moved_to(RunState.REGISTERING_DATA, now)
    training = run.moved_to(RunState.TRAINING, now, activity="job Running")
    assert training.activity == "job Running"
    assert training.moved_to(RunState.CANCELED, now).activity == ""
    deploying = training.moved_to(RunState.DEPLOYING, now, activity="deployment Creating")
    smoke = deploying.moved_to(RunState.SMOKE_TESTING, now, activity="smoke testing")
    assert smoke.moved_to(RunState.ROLLED_BACK, now).activity == ""
    assert (
        smoke.moved_to(RunState.EVALUATING, now)
        .moved_to(RunState.PROMOTING, now)
        .moved_to(RunState.LIVE, now, activity="serving")
        .activity
        == "serving"
    )
