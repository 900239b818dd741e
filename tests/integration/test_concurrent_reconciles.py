"""Ten reconciles of one run at once: one acts, the others leave it alone (issue 9).

Several triggers can reconcile the same run at the same moment: the timer of
each instance the app is scaled out to, a blob trigger firing again, an Azure
ML event, an HTTP retry. Here ten threads, each with services of its own (as
ten instances would have), call ``shared.pipeline.reconciler.reconcile`` on one run, all
released at once by a barrier, at a moment the run has something to create in
Azure ML; real Azurite (the lease is a compare-and-swap on the run's ETag) and
the emulator (which records every request) decide the outcome.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from local.azurite import Azurite
from shared.composition import build
from shared.domain.ports import Services
from shared.domain.runs import Run, RunState
from shared.pipeline.intake import accept_upload
from shared.pipeline.reconciler import reconcile
from tests.support.app import LocalApp, jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]

CALLERS = 10


@dataclass(frozen=True)
class Moment:
    """A point in a run's life with one thing to create in Azure ML."""

    name: str
    route: str  # regular expression of the creating PUT, after the workspace
    creates: Callable[[str], str]  # run id -> path suffix of that PUT
    before: RunState  # the state the run waits in until it is done


MOMENTS = [
    Moment(
        "submit the job",
        r"/jobs/[^/]+$",
        lambda run_id: f"/jobs/{run_id}",
        RunState.REGISTERING_DATA,
    ),
    Moment(
        "create the deployment",
        r"/onlineEndpoints/[^/]+/deployments/[^/]+$",
        lambda run_id: f"/deployments/{run_id}",
        RunState.DEPLOYING,
    ),
]


def _puts(admin: EmulatorAdmin, suffix: str) -> list[dict[str, Any]]:
    """PUTs of one resource that the emulator carried out (not a fault's reply)."""
    return [
        r
        for r in admin.requests(suffix)
        if r["method"] == "PUT" and r["path"].lower().endswith(suffix.lower()) and not r["injected"]
    ]


def _run(services: Services, run_id: str) -> Run:
    stored = services.ledger.get(run_id)
    assert stored is not None
    return stored.run


@pytest.mark.parametrize("moment", MOMENTS, ids=[m.name for m in MOMENTS])
def test_ten_concurrent_reconciles_create_it_once(
    azurite: Azurite,
    emulator_admin: EmulatorAdmin,
    caplog: pytest.LogCaptureFixture,
    moment: Moment,
) -> None:
    """The creating PUT is carried out once, every caller returns without error, at
    least one was told the run is being reconciled elsewhere, and the run then goes
    on without creating it again (no state twice in its timeline, the lease free).

    To stop the run just before the moment, the first PUT of it is refused once
    (503): the run then waits in that state with its step to do again.
    """
    app = LocalApp.create(azurite, JOB_POLL_SECONDS="0", DEPLOY_POLL_SECONDS="0")
    workspace = app.settings["AZUREML_WORKSPACE"]
    emulator_admin.fault_requests(
        f"PUT .*/workspaces/{workspace}{moment.route}", status=503, count=1, kinds=["arm"]
    )
    app.upload("together.jsonl", jsonl(text_examples(12, f"together {uuid.uuid4().hex}")))
    run_id = accept_upload(app.services, "together.jsonl").run_id
    assert run_id
    suffix = moment.creates(run_id)

    def refused_once() -> bool:
        """Drive the run, one reconcile at a time, until that PUT was refused."""
        if not _refused(emulator_admin, suffix):
            reconcile(app.services, run_id)
        return _refused(emulator_admin, suffix)

    wait_until(refused_once, bool, what=f"the first try to {moment.name} to be refused")
    waiting = _run(app.services, run_id)
    assert waiting.state is moment.before and waiting.attempts == 1, waiting
    assert not _puts(emulator_admin, suffix)
    # Its backoff has passed: the run is due again (no reconcile touches it before).
    stored = app.services.ledger.get(run_id)
    assert stored is not None
    app.services.ledger.replace(
        stored, dataclasses.replace(stored.run, next_check_at=app.services.now())
    )
    caplog.set_level(logging.INFO, logger="shared.pipeline.reconciler")

    instances = [build(app.settings) for _ in range(CALLERS)]
    barrier = threading.Barrier(CALLERS)

    def call(services: Services) -> Run | None:
        barrier.wait()
        return reconcile(services, run_id)

    with concurrent.futures.ThreadPoolExecutor(max_workers=CALLERS) as pool:
        results = list(pool.map(call, instances))

    assert all(result is not None for result in results)
    created = _puts(emulator_admin, suffix)
    assert len(created) == 1, created
    left_alone = [r for r in caplog.records if "left alone" in r.getMessage()]
    assert left_alone
    # From here one reconcile at a time takes the run past this state, creating nothing more.
    final = wait_until(
        lambda: reconcile(app.services, run_id),
        lambda run: run is not None and run.state is not moment.before,
        what=f"the run to get past {moment.before}",
    )
    assert final is not None
    assert _puts(emulator_admin, suffix) == created
    entered = [e.state for e in final.timeline]
    assert len(entered) == len(set(entered)), entered  # each move made once, not per caller
    assert final.lease_owner == "" and final.lease_until is None
    if moment.before is RunState.REGISTERING_DATA:
        assert [j["name"] for j in emulator_admin.state()["jobs"] if run_id in j["name"]] == [
            run_id
        ]


def _refused(admin: EmulatorAdmin, suffix: str) -> bool:
    """Whether the emulator has answered a PUT of ``suffix`` with an injected fault."""
    return any(r["method"] == "PUT" and r["injected"] for r in admin.requests(suffix))
