"""Lifecycle events built from a run's timeline: types, ids, order, data."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from shared.domain.events import DisabledPublisher, events_for, pascal
from shared.domain.runs import DatasetRef, Run, RunState, TimelineEntry

T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
DATASET = DatasetRef(
    container="datasets",
    name="support.jsonl",
    url="https://acct.blob.core.windows.net/datasets/support.jsonl",
    etag='"0x1"',
    size=1234,
)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def trained_run() -> Run:
    """A run through to TRAINING_FAILED, built with the run model's own transitions."""
    run = Run.new("ft-abc123def456-0a1b2c3d", DATASET, T0, "upload accepted", sha256="f" * 64)
    run = run.moved_to(RunState.REGISTERING_DATA, at(1), "dataset valid: 120 examples")
    run = run.moved_to(
        RunState.TRAINING, at(2), "job submitted", job_name=run.run_id, job_status="NotStarted"
    )
    return run.moved_to(
        RunState.TRAINING_FAILED,
        at(30),
        "job Failed: CUDA out of memory",
        job_status="Failed",
        last_error="CUDA out of memory",
    )


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (RunState.RECEIVED, "Received"),
        (RunState.REGISTERING_DATA, "RegisteringData"),
        (RunState.TRAINING_FAILED, "TrainingFailed"),
        (RunState.DEPLOY_FAILED, "DeployFailed"),
        (RunState.SMOKE_TESTING, "SmokeTesting"),
        (RunState.LIVE, "Live"),
        (RunState.ROLLED_BACK, "RolledBack"),
        ("SOME_NEW_STATE", "SomeNewState"),
    ],
)
def test_pascal(state: str, expected: str) -> None:
    assert pascal(state) == expected


def test_every_state_has_a_distinct_event_type() -> None:
    names = [pascal(state) for state in RunState]

    assert len(set(names)) == len(names)
    assert all(name.isalnum() and name[0].isupper() for name in names)


def test_one_event_per_timeline_entry_in_order() -> None:
    run = trained_run()

    events = events_for(run, 0)

    assert [e.type for e in events] == [
        "FinetuneAutopilot.Run.Received",
        "FinetuneAutopilot.Run.RegisteringData",
        "FinetuneAutopilot.Run.Training",
        "FinetuneAutopilot.Run.TrainingFailed",
    ]
    assert [e.id for e in events] == [
        f"{run.run_id}:0:RECEIVED",
        f"{run.run_id}:1:REGISTERING_DATA",
        f"{run.run_id}:2:TRAINING",
        f"{run.run_id}:3:TRAINING_FAILED",
    ]
    assert [e.time for e in events] == [T0, at(1), at(2), at(30)]
    assert {e.subject for e in events} == {run.run_id}


def test_since_index_skips_what_was_published() -> None:
    run = trained_run()

    later = events_for(run, 2)

    assert [e.id for e in later] == [e.id for e in events_for(run, 0)[2:]]
    assert events_for(run, len(run.timeline)) == []
    assert events_for(run, 99) == []


def test_negative_since_index_is_a_bug() -> None:
    with pytest.raises(ValueError, match="since_index"):
        events_for(trained_run(), -1)


def test_ids_are_stable_across_republishing_and_growth() -> None:
    run = trained_run()
    earlier = run.timeline[:2]
    shorter = dataclasses.replace(run, timeline=earlier)

    assert [e.id for e in events_for(shorter, 0)] == [e.id for e in events_for(run, 0)[:2]]
    assert events_for(run, 1) == events_for(run, 1)


def test_a_state_entered_twice_gets_two_ids() -> None:
    # The index keeps ids unique even if a state repeats in the timeline.
    run = dataclasses.replace(
        trained_run(),
        timeline=(
            TimelineEntry(RunState.RECEIVED, T0),
            TimelineEntry(RunState.TRAINING, at(1)),
            TimelineEntry(RunState.TRAINING, at(2)),
        ),
    )

    ids = [e.id for e in events_for(run, 0)]

    assert len(set(ids)) == 3


def test_event_data_describes_the_run_and_the_entry() -> None:
    run = trained_run()

    last = events_for(run, 0)[-1]

    assert last.data == {
        "run_id": run.run_id,
        "state": "TRAINING_FAILED",
        "dataset": {
            "container": "datasets",
            "name": "support.jsonl",
            "url": DATASET.url,
            "sha256": "f" * 64,
        },
        "job": {"name": run.run_id, "status": "Failed"},
        "model": "",
        "endpoint": "",
        "deployment": "",
        "summary": "job Failed: CUDA out of memory",
        "last_error": "CUDA out of memory",
        "evaluation": {},
    }
    assert json.loads(json.dumps(last.data)) == last.data


def test_live_run_events_name_model_endpoint_and_deployment() -> None:
    run = dataclasses.replace(
        trained_run(),
        state=RunState.LIVE,
        model_id="azureml:ft-abc123def456-0a1b2c3d:1",
        endpoint="ep-support",
        deployment="ft-abc123def456-0a1b2c3d",
        last_error="",
        timeline=(
            TimelineEntry(RunState.RECEIVED, T0),
            TimelineEntry(RunState.LIVE, at(90), "serving 100% of traffic"),
        ),
    )

    live = events_for(run, 1)

    assert [(e.id, e.type) for e in live] == [
        (f"{run.run_id}:1:LIVE", "FinetuneAutopilot.Run.Live")
    ]
    assert live[0].data["model"] == "azureml:ft-abc123def456-0a1b2c3d:1"
    assert live[0].data["endpoint"] == "ep-support"
    assert live[0].data["deployment"] == "ft-abc123def456-0a1b2c3d"
    assert live[0].data["summary"] == "serving 100% of traffic"
    assert live[0].data["state"] == "LIVE"


def test_disabled_publisher_accepts_and_drops() -> None:
    DisabledPublisher().publish(events_for(trained_run(), 0))
    DisabledPublisher().publish([])
