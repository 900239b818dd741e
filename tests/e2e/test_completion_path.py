"""From upload to LIVE through function_app's own triggers, Azurite and the emulator.

The blob trigger, the timer and the Event Grid trigger are called the way the
host calls them; the app reads its settings from the environment and talks to
Azurite and the Azure ML emulator with the real SDKs. Only the timer moves runs
unless a test delivers Azure ML events on purpose.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from local.azureml_emulator import AzureMLEmulator
from local.azurite import Azurite
from shared.domain.runs import RunState
from tests.support.app import app_settings, jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, wait_until
from tests.support.functions import FunctionsDriver, functions_driver

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]


def _settings(azurite: Azurite, emulator: AzureMLEmulator, endpoint: str) -> dict[str, str]:
    return app_settings(
        azurite,
        ENDPOINT_NAME=endpoint,
        JOB_POLL_SECONDS="0",
        DEPLOY_POLL_SECONDS="0",
        SMOKE_PROMPT_COUNT="2",
        # These tests are about the rollout, not about which model is better: the
        # datasets differ in a topic word, and one trained on another topic can score
        # higher on a few held-out lines. tests/e2e/test_evaluation_gate.py judges.
        EVAL_MARGIN="1",
        EVENTS_TOPIC_ENDPOINT=emulator.topic_endpoint,
        EVENTS_TOPIC_KEY=emulator.topic_key,
    )


@pytest.fixture
def endpoint() -> str:
    return f"ep-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def driver(azurite: Azurite, emulator: AzureMLEmulator, endpoint: str) -> Iterator[FunctionsDriver]:
    with functions_driver(_settings(azurite, emulator, endpoint)) as d:
        yield d


def _deployments(admin: EmulatorAdmin, endpoint: str) -> dict[str, dict[str, Any]]:
    return {
        d["name"]: d
        for d in admin.state()["deployments"]
        if d["endpoint"] == endpoint and not d["deleting"]
    }


def _traffic(admin: EmulatorAdmin, endpoint: str) -> dict[str, int]:
    for e in admin.state()["endpoints"]:
        if e["name"] == endpoint:
            return dict(e["properties"]["traffic"])
    raise AssertionError(f"endpoint {endpoint} not found")


def _go_live(driver: FunctionsDriver, name: str, topic: str) -> str:
    driver.upload(name, jsonl(text_examples(30, topic)))
    run_id = driver.only_run().run_id
    run = driver.tick_until(run_id, lambda r: r.state.terminal)
    assert run.state is RunState.LIVE, (run.state, run.last_error)
    return run_id


def test_a_dataset_goes_from_upload_to_live(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin, endpoint: str
) -> None:
    seen = len(emulator_admin.topic_events())
    run_id = _go_live(driver, "first.jsonl", "meeting")

    run = driver.run(run_id)
    assert run.endpoint == endpoint and run.deployment == run_id
    assert _traffic(emulator_admin, endpoint) == {run_id: 100}
    smoke = run.smoke
    assert smoke["passed"] is True and len(smoke["results"]) == 2
    # The first model on the endpoint is judged against the floor.
    assert run.evaluation["judged_by"] == "floor" and run.evaluation["verdict"] == "promote"
    for result in smoke["results"]:
        assert result["status"] == 200 and result["answer"] and result["latency_ms"] >= 0
        assert result["usage"]["total_tokens"] > 0
    states = [e.state for e in run.timeline]
    assert states == [
        RunState.RECEIVED,
        RunState.REGISTERING_DATA,
        RunState.TRAINING,
        RunState.DEPLOYING,
        RunState.SMOKE_TESTING,
        RunState.EVALUATING,
        RunState.PROMOTING,
        RunState.LIVE,
    ]
    # Every state change was published, in order, with the run as subject.
    published = wait_until(
        lambda: emulator_admin.topic_events(subject=run_id, since=seen),
        lambda events: len(events) == len(states),
        what="lifecycle events",
    )
    assert [e["type"] for e in published] == [
        "FinetuneAutopilot.Run." + s
        for s in (
            "Received",
            "RegisteringData",
            "Training",
            "Deploying",
            "SmokeTesting",
            "Evaluating",
            "Promoting",
            "Live",
        )
    ]
    assert published[-1]["data"]["deployment"] == run_id
    assert not driver.services.ledger.active()  # nothing left to do


def test_a_second_dataset_is_tested_at_zero_percent_then_takes_over(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin, endpoint: str
) -> None:
    first = _go_live(driver, "first.jsonl", "meeting")
    driver.upload("second.jsonl", jsonl(text_examples(30, "lunch")))
    second = next(s.run.run_id for s in driver.services.ledger.active())

    tested = driver.tick_until(second, lambda r: bool(r.smoke) or r.state.terminal)
    # Smoke-tested while the first still served everything.
    assert tested.previous_deployments == {first: 100}
    assert tested.smoke.get("passed") is True, (tested.state, tested.last_error)

    run = driver.tick_until(second, lambda r: r.state.terminal)
    assert run.state is RunState.LIVE
    assert _traffic(emulator_admin, endpoint).get(second) == 100
    wait_until(
        lambda: _deployments(emulator_admin, endpoint),
        lambda found: set(found) == {second},
        what="the first deployment to be removed",
    )


def test_a_failed_smoke_test_rolls_back_and_the_live_deployment_keeps_serving(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin, endpoint: str
) -> None:
    first = _go_live(driver, "first.jsonl", "meeting")
    emulator_admin.fault_scoring("ft-*", status=500)
    driver.upload("bad.jsonl", jsonl(text_examples(30, "dinner")))
    bad = next(s.run.run_id for s in driver.services.ledger.active())

    run = driver.tick_until(bad, lambda r: r.state.terminal)

    assert run.state is RunState.ROLLED_BACK
    assert "HTTP 500" in run.last_error
    assert run.smoke["passed"] is False
    assert _traffic(emulator_admin, endpoint) == {first: 100}
    wait_until(
        lambda: _deployments(emulator_admin, endpoint),
        lambda found: set(found) == {first},
        what="the failed deployment to be removed",
    )


def test_an_empty_answer_also_rolls_back(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin, endpoint: str
) -> None:
    emulator_admin.fault_scoring("ft-*", empty=True)
    driver.upload("quiet.jsonl", jsonl(text_examples(30, "walk")))
    run_id = driver.only_run().run_id
    run = driver.tick_until(run_id, lambda r: r.state.terminal)
    assert run.state is RunState.ROLLED_BACK and "empty" in run.last_error
    wait_until(
        lambda: _deployments(emulator_admin, endpoint),
        lambda found: not found,
        what="the failed deployment to be removed",
    )


def test_a_failed_job_ends_training_failed_with_its_message(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_job("ft-*", "fail", "CUDA out of memory on node 0")
    driver.upload("oom.jsonl", jsonl(text_examples(30, "gym")))
    run_id = driver.only_run().run_id
    run = driver.tick_until(run_id, lambda r: r.state.terminal)
    assert run.state is RunState.TRAINING_FAILED
    assert "CUDA out of memory on node 0" in run.last_error


def test_a_failed_provisioning_ends_deploy_failed_and_leaves_the_live_one_alone(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin, endpoint: str
) -> None:
    first = _go_live(driver, "first.jsonl", "meeting")
    emulator_admin.fault_deployment("ft-*", "Not enough quota for Standard_NC24ads_A100_v4")
    driver.upload("noquota.jsonl", jsonl(text_examples(30, "tea")))
    run_id = next(s.run.run_id for s in driver.services.ledger.active())
    run = driver.tick_until(run_id, lambda r: r.state.terminal)
    assert run.state is RunState.DEPLOY_FAILED
    assert "Not enough quota" in run.last_error
    assert _traffic(emulator_admin, endpoint) == {first: 100}
    wait_until(
        lambda: _deployments(emulator_admin, endpoint),
        lambda found: set(found) == {first},
        what="the failed deployment to be removed",
    )


def test_an_azureml_event_advances_a_run_without_the_timer(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin
) -> None:
    driver.upload("evented.jsonl", jsonl(text_examples(30, "film")))
    run_id = driver.only_run().run_id
    assert driver.run(run_id).state is RunState.TRAINING
    completed = wait_until(
        lambda: [
            e
            for e in emulator_admin.events()
            if e["data"]["runId"] == run_id and e["eventType"].endswith("RunCompleted")
        ],
        bool,
        what="the emulator's RunCompleted event",
    )
    # A child step's event is ignored; the run's own event moves it on.
    child = [e for e in emulator_admin.events() if e["data"]["runId"] == f"{run_id}_finetune_step"]
    driver.deliver(child[0])
    assert driver.run(run_id).state is RunState.TRAINING
    driver.deliver(completed[0])
    assert driver.run(run_id).state is RunState.DEPLOYING
    assert not [i for i in driver.invocations if i.function == "reconcile_timer"]


def test_two_runs_finishing_together_roll_out_one_after_the_other(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin, endpoint: str
) -> None:
    first = _go_live(driver, "base.jsonl", "meeting")
    driver.upload("a.jsonl", jsonl(text_examples(30, "alpha")))
    driver.upload("b.jsonl", jsonl(text_examples(30, "beta")))
    runs = [s.run.run_id for s in driver.services.ledger.active()]
    assert len(runs) == 2
    seen_both_rolling_out = False
    for _ in range(500):
        driver.tick()
        states = {r: driver.run(r) for r in runs}
        rolling = [
            r
            for r, run in states.items()
            if run.state in (RunState.SMOKE_TESTING, RunState.PROMOTING)
        ]
        seen_both_rolling_out |= len(rolling) > 1
        if all(run.state.terminal for run in states.values()):
            break
    else:
        raise AssertionError(f"runs did not finish: {states}")
    assert not seen_both_rolling_out  # the endpoint's rollout lock serialised them
    finals = {r: driver.run(r) for r in runs}
    assert {run.state for run in finals.values()} == {RunState.LIVE}
    # The run that took the lock last went live last and serves everything.
    last = max(finals.values(), key=lambda run: run.timeline[-1].at)
    assert _traffic(emulator_admin, endpoint).get(last.run_id) == 100
    earlier = next(run for run in finals.values() if run.run_id != last.run_id)
    assert last.previous_deployments == {earlier.run_id: 100}
    assert earlier.previous_deployments == {first: 100}


def test_a_publishing_failure_never_fails_the_run(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin
) -> None:
    emulator_admin.fault_topic(status=500, count=3)
    run_id = _go_live(driver, "noisy.jsonl", "meeting")
    # The failed deliveries were kept and sent by later reconciles, in order.
    run = driver.run(run_id)
    while run.published < len(run.timeline):
        driver.tick()
        run = driver.run(run_id)
    types = [e["type"].rsplit(".", 1)[1] for e in emulator_admin.topic_events(subject=run_id)]
    assert types[-1] == "Live"
    assert sorted(set(types)) == sorted(
        {
            "Received",
            "RegisteringData",
            "Training",
            "Deploying",
            "SmokeTesting",
            "Evaluating",
            "Promoting",
            "Live",
        }
    )


def test_no_invocation_waits_for_a_slow_provisioning(
    driver: FunctionsDriver, emulator_admin: EmulatorAdmin, endpoint: str
) -> None:
    speed = float(emulator_admin.state()["speed"])
    # 20 s of wall-clock time (endpoint, then deployment): long against a tick, short
    # enough for the suite; every invocation must stay far below it.
    emulator_admin.config(provisioning_seconds=20 * speed)
    driver.upload("slow.jsonl", jsonl(text_examples(30, "meeting")))
    run_id = driver.only_run().run_id
    activities: list[str] = []

    def watching(run: Any) -> bool:
        activities.append(run.activity)
        return run.state is RunState.SMOKE_TESTING or run.state.terminal

    run = driver.tick_until(run_id, watching, timeout=300)
    emulator_admin.config(provisioning_seconds=0.2)
    run = driver.tick_until(run_id, lambda r: r.state.terminal)

    assert run.state is RunState.LIVE
    # The endpoint and then the deployment were observed provisioning over many ticks...
    assert activities.count("endpoint Creating") > 3
    assert activities.count("deployment Creating") > 3
    # ...and no invocation waited for them: each returned within seconds.
    slowest = max(driver.invocations, key=lambda i: i.seconds)
    # Generous bound for a noisy machine: half the 20 s each provisioning takes.
    assert slowest.seconds < 10, slowest
