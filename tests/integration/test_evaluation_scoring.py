"""The evaluation gate against the emulator, through the real adapters (Azurite, the
Azure ML SDK, ``HttpScorer``): a champion that fails to answer does not block the
challenger, and a throttled scoring request waits its ``Retry-After``.

The data are the demo's training variants (``local.demo.make_dataset``), each
uploaded after the same sibling validation file, so both deployments are judged on
the same 36 held-out references.
"""

from __future__ import annotations

import itertools
import uuid

import pytest

from local.azurite import Azurite
from local.demo import make_dataset
from shared.domain.runs import Run, RunState
from shared.pipeline.intake import accept_upload
from shared.pipeline.reconciler import reconcile
from tests.support.app import LocalApp
from tests.support.azureml import EmulatorAdmin, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]

RETRY_AFTER = 2


@pytest.fixture
def endpoint() -> str:
    return f"ep-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def app(azurite: Azurite, endpoint: str) -> LocalApp:
    return LocalApp.create(
        azurite,
        ENDPOINT_NAME=endpoint,
        JOB_POLL_SECONDS="0",
        DEPLOY_POLL_SECONDS="0",
        SMOKE_PROMPT_COUNT="1",
        EVAL_MIN_EXAMPLES="20",
        EVAL_FLOOR_ROUGE_L="0.5",
        EVAL_CONCURRENCY="1",  # one request at a time: the request log shows every wait
    )


def _start(app: LocalApp, name: str, first: int | None = None) -> str:
    training, validation = make_dataset.held_out(make_dataset.records())
    chosen = make_dataset.variant(training, first)
    app.upload(f"{name}.validation.jsonl", "".join(map(make_dataset.line, validation)).encode())
    app.upload(f"{name}.jsonl", "".join(map(make_dataset.line, chosen)).encode())
    run_id = accept_upload(app.services, f"{name}.jsonl").run_id
    assert run_id
    return run_id


def _until(app: LocalApp, run_id: str, state: RunState | None = None) -> Run:
    """Reconcile until the run is in ``state`` (or, without one, has ended)."""

    def step() -> Run:
        run = reconcile(app.services, run_id)
        assert run is not None
        return run

    run = wait_until(
        step,
        lambda run: run.state is state or run.state.terminal,
        what=f"run {run_id} to reach {state or 'its end'}",
        timeout=120,
        interval=0.2,
    )
    if state is not None:
        assert run.state is state, (run.state, run.last_error)
    return run


def test_a_champion_answering_500_leaves_the_challenger_judged_by_the_floor(
    app: LocalApp, emulator_admin: EmulatorAdmin
) -> None:
    champion = _start(app, "small", first=32)
    first = _until(app, champion, RunState.LIVE)
    assert first.evaluation["judged_by"] == "floor" and first.evaluation["champion"] == {}

    emulator_admin.fault_scoring(champion, status=500)
    challenger = _start(app, "full")
    run = _until(app, challenger)

    assert run.state is RunState.LIVE, run.last_error
    record = run.evaluation
    assert record["judged_by"] == "floor" and record["verdict"] == "promote"
    assert record["champion"]["deployment"] == champion
    assert record["champion"]["failed"].startswith("36 of 36: HTTP 500")
    assert record["challenger"]["errors"] == 0
    assert record["challenger"]["rouge_l"] == pytest.approx(0.781, abs=0.001)


def test_a_throttled_scoring_request_waits_its_retry_after_and_is_no_failure(
    app: LocalApp, emulator_admin: EmulatorAdmin, endpoint: str
) -> None:
    run_id = _start(app, "patient", first=32)
    _until(app, run_id, RunState.EVALUATING)
    emulator_admin.fault_requests(
        f"^POST /online/{endpoint}/",
        status=429,
        count=3,
        retry_after=RETRY_AFTER,
        kinds=["scoring"],
    )

    run = _until(app, run_id)

    assert run.state is RunState.LIVE, run.last_error
    record = run.evaluation
    assert record["challenger"]["errors"] == 0 and record["examples"] == 36
    assert sum(r["challenger"]["tries"] for r in record["results"]) == 36 + 3
    scoring = [r for r in emulator_admin.requests(f"/online/{endpoint}/") if r["method"] == "POST"]
    throttled = [r for r in scoring if r["status"] == 429]
    assert len(throttled) == 3
    for reply, following in itertools.pairwise(sorted(scoring, key=lambda r: float(r["at"]))):
        if reply["status"] == 429:
            assert float(following["at"]) - float(reply["replied"]) >= RETRY_AFTER
