"""The champion/challenger gate through the local Functions host, Azurite and the
emulator: a better model is promoted, a worse one rolled back with both scores, a
poor first model stopped by the floor, and a champion that errors does not block.

The models differ honestly: the emulator's stand-in answers with the completion of
the most similar training example, so the demo's training variants
(``local.demo.make_dataset``: fewer examples, or shuffled completions) make
measurably worse models. Every variant is uploaded after the same sibling
validation file (the 36 held-out lines), so all runs are judged on the same
references.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from local.azureml_emulator import AzureMLEmulator
from local.demo import make_dataset
from shared.composition import build
from shared.domain.runs import Run, RunState
from tests.e2e.conftest import make_host
from tests.support.azureml import EmulatorAdmin, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]


@pytest.fixture
def gate_settings(host_settings: dict[str, str]) -> dict[str, str]:
    return {
        **host_settings,
        "EVAL_MIN_EXAMPLES": "20",
        "EVAL_MARGIN": "0.02",
        "EVAL_FLOOR_ROUGE_L": "0.5",
        "SMOKE_PROMPT_COUNT": "1",
    }


def _roll_out(
    settings: dict[str, str], name: str, first: int | None = None, shuffle: float = 0.0
) -> Run:
    """Upload a training variant after its sibling validation file; the run once ended."""
    training, validation = make_dataset.held_out(make_dataset.records())
    chosen = make_dataset.variant(training, first, shuffle, seed=1)
    blobs = BlobServiceClient.from_connection_string(settings["DATASET_STORAGE"])
    container = blobs.get_container_client(settings["DATASET_CONTAINER"])
    sibling = "".join(map(make_dataset.line, validation)).encode()
    container.upload_blob(f"{name}.validation.jsonl", sibling, overwrite=True)
    container.upload_blob(f"{name}.jsonl", "".join(map(make_dataset.line, chosen)).encode())
    ledger = build(settings).ledger

    def run_of_upload() -> Run | None:
        summaries, _ = ledger.list_runs(None, 100, None)
        found = next((s for s in summaries if s.dataset_name == f"{name}.jsonl"), None)
        stored = ledger.get(found.run_id) if found else None
        return stored.run if stored else None

    run = wait_until(
        run_of_upload,
        lambda run: run is not None and run.state.terminal,
        what=f"the run of {name}.jsonl to end",
        timeout=180,
        interval=0.3,
    )
    assert run is not None
    return run


def _traffic(admin: EmulatorAdmin, endpoint: str) -> dict[str, int]:
    found = next(e for e in admin.state()["endpoints"] if e["name"] == endpoint)
    return dict(found["properties"]["traffic"])


def test_a_better_model_is_promoted_and_a_worse_one_rolled_back_with_both_scores(
    gate_settings: dict[str, str], tmp_path: Path, emulator_admin: EmulatorAdmin
) -> None:
    endpoint = gate_settings["ENDPOINT_NAME"]
    with make_host(gate_settings, tmp_path / "host"):
        small = _roll_out(gate_settings, "small", first=32)
        assert small.state is RunState.LIVE, small.last_error
        assert small.evaluation["judged_by"] == "floor"

        full = _roll_out(gate_settings, "full")
        assert full.state is RunState.LIVE, full.last_error
        better = full.evaluation
        assert better["verdict"] == "promote" and better["judged_by"] == "champion"
        assert better["champion"]["deployment"] == small.deployment
        assert better["challenger"]["rouge_l"] > better["champion"]["rouge_l"]
        assert better["ci"][0] > 0 and better["examples"] == 36
        assert _traffic(emulator_admin, endpoint) == {full.deployment: 100}

        noisy = _roll_out(gate_settings, "noisy", shuffle=0.3)

    assert noisy.state is RunState.ROLLED_BACK
    worse = noisy.evaluation
    assert worse["verdict"] == "roll_back" and worse["champion"]["deployment"] == full.deployment
    assert worse["challenger"]["rouge_l"] < worse["champion"]["rouge_l"]
    assert worse["ci"][1] < 0
    challenger, champion = worse["challenger"]["rouge_l"], worse["champion"]["rouge_l"]
    assert f"challenger {challenger:.2f} vs champion {champion:.2f}" in noisy.last_error
    assert len(worse["results"]) == 36 and all("answer" in r["champion"] for r in worse["results"])
    assert _traffic(emulator_admin, endpoint) == {full.deployment: 100}  # it keeps serving


def test_a_poor_first_model_is_stopped_by_the_floor_and_an_erroring_champion_does_not_block(
    gate_settings: dict[str, str],
    tmp_path: Path,
    emulator: AzureMLEmulator,
    emulator_admin: EmulatorAdmin,
) -> None:
    seen = len(emulator_admin.topic_events())
    settings = {
        **gate_settings,
        "EVENTS_TOPIC_ENDPOINT": emulator.topic_endpoint,
        "EVENTS_TOPIC_KEY": emulator.topic_key,
    }
    with make_host(settings, tmp_path / "host"):
        poor = _roll_out(settings, "poor", shuffle=1.0)
        assert poor.state is RunState.ROLLED_BACK
        assert poor.evaluation["judged_by"] == "floor"
        assert poor.evaluation["challenger"]["rouge_l"] < 0.5
        assert "below the floor 0.50" in poor.last_error

        small = _roll_out(settings, "small", first=32)
        assert small.state is RunState.LIVE, small.last_error

        emulator_admin.fault_scoring(small.deployment, status=500)
        larger = _roll_out(settings, "larger", first=162)

    assert larger.state is RunState.LIVE, larger.last_error
    record = larger.evaluation
    assert record["judged_by"] == "floor" and record["verdict"] == "promote"
    assert record["champion"]["failed"].startswith("36 of 36: HTTP 500")
    # The verdict went out in the lifecycle event, scores without texts.
    events = wait_until(
        lambda: emulator_admin.topic_events(subject=larger.run_id, since=seen),
        lambda found: any(e["type"].endswith(".Promoting") for e in found),
        what="the Promoting event",
    )
    data = next(e for e in events if e["type"].endswith(".Promoting"))["data"]["evaluation"]
    assert (
        data["verdict"] == "promote" and data["champion"]["failed"] == record["champion"]["failed"]
    )
    assert len(data["results"]) == 36 and data["results"][0][1] == 0.0
