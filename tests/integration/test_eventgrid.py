"""Lifecycle events through the real azure-eventgrid client to the emulator's topic.

``EventGridTopicPublisher`` wraps ``EventGridPublisherClient``; the emulator
serves a stand-in of an Event Grid custom topic (CloudEvents 1.0 schema,
``local/azureml_emulator/topic.py``) that keeps what it receives. Each test
publishes events of its own run, so it reads only its own subject.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
import requests

from local.azureml_emulator import AzureMLEmulator
from shared.adapters.eventgrid import DEFAULT_SOURCE, EventGridTopicPublisher
from shared.domain.errors import PermanentError, RetryableError
from shared.domain.events import LifecycleEvent, events_for
from shared.domain.runs import DatasetRef, Run, RunState
from tests.support.azureml import EmulatorAdmin, StaticTokenCredential

pytestmark = pytest.mark.integration

T0 = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC)
SDK_ATTEMPTS = 4  # azure-core's default retry policy: the first try and 3 retries


def failed_run() -> Run:
    """A fresh run that went RECEIVED, REGISTERING_DATA, TRAINING, TRAINING_FAILED."""
    run_id = f"ft-{uuid.uuid4().hex[:12]}-0a1b2c3d"
    dataset = DatasetRef(
        "datasets", "support.jsonl", "https://acct.blob.core.windows.net/datasets/support.jsonl"
    )
    run = Run.new(run_id, dataset, T0, "upload accepted", sha256="e" * 64)
    run = run.moved_to(RunState.REGISTERING_DATA, T0 + dt.timedelta(seconds=5), "valid: 40")
    run = run.moved_to(
        RunState.TRAINING,
        T0 + dt.timedelta(minutes=1),
        "job submitted",
        job_name=run_id,
        job_status="Queued",
    )
    return run.moved_to(
        RunState.TRAINING_FAILED,
        T0 + dt.timedelta(hours=2, microseconds=250_000),
        "job Failed",
        job_status="Failed",
        last_error="CUDA out of memory",
    )


@pytest.fixture
def publisher(emulator: AzureMLEmulator) -> Iterator[EventGridTopicPublisher]:
    instance = EventGridTopicPublisher(emulator.topic_endpoint, key=emulator.topic_key)
    yield instance
    instance.close()


def test_events_arrive_in_order_as_cloud_events(
    publisher: EventGridTopicPublisher, emulator_admin: EmulatorAdmin
) -> None:
    run = failed_run()
    events = events_for(run, 0)

    publisher.publish(events)

    received = emulator_admin.topic_events(run.run_id)
    assert [e["id"] for e in received] == [e.id for e in events]
    assert [e["type"] for e in received] == [
        "FinetuneAutopilot.Run.Received",
        "FinetuneAutopilot.Run.RegisteringData",
        "FinetuneAutopilot.Run.Training",
        "FinetuneAutopilot.Run.TrainingFailed",
    ]
    for sent, got in zip(events, received, strict=True):
        assert got["specversion"] == "1.0"
        assert got["source"] == DEFAULT_SOURCE
        assert got["subject"] == run.run_id
        assert got["data"] == dict(sent.data)
        assert dt.datetime.fromisoformat(got["time"]) == sent.time
    assert received[-1]["data"]["last_error"] == "CUDA out of memory"
    assert received[-1]["data"]["job"] == {"name": run.run_id, "status": "Failed"}


def test_republished_events_keep_their_ids(
    publisher: EventGridTopicPublisher, emulator_admin: EmulatorAdmin
) -> None:
    run = failed_run()

    publisher.publish(events_for(run, 0))
    publisher.publish(events_for(run, 2))  # the outbox publishes the tail again

    ids = [e["id"] for e in emulator_admin.topic_events(run.run_id)]
    assert ids[4:] == ids[2:4]  # at-least-once: subscribers drop duplicates by id
    assert len(set(ids)) == 4


def test_a_managed_identity_token_is_accepted(
    emulator: AzureMLEmulator, emulator_admin: EmulatorAdmin
) -> None:
    run = failed_run()
    publisher = EventGridTopicPublisher(
        emulator.topic_endpoint, credential=StaticTokenCredential(), source="/apps/autopilot"
    )

    publisher.publish(events_for(run, 3))
    publisher.close()

    [received] = emulator_admin.topic_events(run.run_id)
    assert received["source"] == "/apps/autopilot"
    assert received["type"] == "FinetuneAutopilot.Run.TrainingFailed"


def test_a_wrong_key_is_permanent(emulator: AzureMLEmulator, emulator_admin: EmulatorAdmin) -> None:
    run = failed_run()
    publisher = EventGridTopicPublisher(emulator.topic_endpoint, key="not-the-topic-key")

    with pytest.raises(PermanentError, match="401") as refused:
        publisher.publish(events_for(run, 0))

    assert not isinstance(refused.value, RetryableError)
    assert emulator_admin.topic_events(run.run_id) == []


def test_a_failing_topic_is_retryable_and_stores_nothing(
    publisher: EventGridTopicPublisher, emulator_admin: EmulatorAdmin
) -> None:
    run = failed_run()
    events = events_for(run, 0)
    # Failing until cleared; retry-after-ms makes the SDK's own retries immediate.
    emulator_admin.fault_topic(500, count=None, retry_after_ms=1)
    rejected_before = emulator_admin.topic_rejected()

    with pytest.raises(RetryableError, match="500"):
        publisher.publish(events)

    assert emulator_admin.topic_rejected() - rejected_before == SDK_ATTEMPTS
    assert emulator_admin.topic_events(run.run_id) == []
    emulator_admin.clear_faults()
    publisher.publish(events)  # the caller kept them: the next try delivers once
    assert [e["id"] for e in emulator_admin.topic_events(run.run_id)] == [e.id for e in events]


def test_throttling_carries_the_retry_after(
    publisher: EventGridTopicPublisher, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_topic(429, count=None, retry_after_ms=5)

    with pytest.raises(RetryableError) as throttled:
        publisher.publish(events_for(failed_run(), 0))

    assert throttled.value.retry_after == pytest.approx(0.005)


def test_a_transient_failure_is_retried_by_the_sdk(
    publisher: EventGridTopicPublisher, emulator_admin: EmulatorAdmin
) -> None:
    run = failed_run()
    emulator_admin.fault_topic(503, count=1, retry_after_ms=1)

    publisher.publish(events_for(run, 0))

    assert len(emulator_admin.topic_events(run.run_id)) == 4


def test_nothing_to_publish_sends_nothing() -> None:
    # An unreachable topic: publishing nothing must not even build the SDK client.
    EventGridTopicPublisher("https://127.0.0.1:9/api/events", key="k").publish([])


def test_the_topic_takes_only_cloud_events(
    emulator: AzureMLEmulator, emulator_admin: EmulatorAdmin
) -> None:
    event = LifecycleEvent("x:0:RECEIVED", "T", "x", T0, {})
    grid_schema = [
        {
            "id": event.id,
            "subject": event.subject,
            "eventType": event.type,
            "eventTime": T0.isoformat(),
            "data": {},
            "dataVersion": "1",
        }
    ]

    response = requests.post(
        f"{emulator.topic_endpoint}?api-version=2018-01-01",
        json=grid_schema,
        headers={"aeg-sas-key": emulator.topic_key},
        timeout=10,
    )

    assert response.status_code == 400
    assert "CloudEvents" in response.json()["error"]["message"]
    assert emulator_admin.topic_events("x") == []
