"""The real app in the local Functions host (a separate process), with Azurite and
the Azure ML emulator: crash recovery, uploads while down, and the demo."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.composition import build
from shared.domain.runs import Run, RunState
from tests.e2e.conftest import make_host
from tests.support.app import jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "host"


def _upload(settings: dict[str, str], name: str, data: bytes) -> None:
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(settings["DATASET_STORAGE"])
    blobs.get_blob_client(settings["DATASET_CONTAINER"], name).upload_blob(data, overwrite=True)


def _runs(settings: dict[str, str]) -> list[Run]:
    return [s.run for s in build(settings).ledger.active()]


def _run(settings: dict[str, str], run_id: str) -> Run:
    stored = build(settings).ledger.get(run_id)
    assert stored is not None
    return stored.run


def _emulator_jobs(admin: EmulatorAdmin, run_id: str) -> list[dict[str, Any]]:
    return [j for j in admin.state()["jobs"] if j["name"].startswith(run_id)]


def _emulator_deployments(admin: EmulatorAdmin, run_id: str) -> list[dict[str, Any]]:
    return [d for d in admin.state()["deployments"] if d["name"].startswith(run_id)]


@pytest.fixture
def slow_provisioning(emulator_admin: EmulatorAdmin) -> Iterator[None]:
    speed = float(emulator_admin.state()["speed"])
    emulator_admin.config(provisioning_seconds=8 * speed)  # 8 s of wall-clock time
    yield


def test_a_host_killed_while_deploying_recovers_to_live_with_one_job_and_one_deployment(
    host_settings: dict[str, str],
    state_dir: Path,
    emulator_admin: EmulatorAdmin,
    slow_provisioning: None,
) -> None:
    host = make_host(host_settings, state_dir)
    host.start()
    try:
        _upload(host_settings, "crash.jsonl", jsonl(text_examples(30, f"crash {uuid.uuid4().hex}")))
        runs = wait_until(lambda: _runs(host_settings), bool, what="the run to be created")
        run_id = runs[0].run_id
        wait_until(
            lambda: _run(host_settings, run_id),
            lambda run: run.activity == "deployment Creating",
            what="the deployment to be provisioning",
            timeout=120,
        )
        host.kill()  # SIGKILL: no clean-up, mid-rollout
    finally:
        if host.running:
            host.stop()
    with make_host(host_settings, state_dir):
        final = wait_until(
            lambda: _run(host_settings, run_id),
            lambda run: run.state.terminal,
            what="the run to finish after the restart",
            timeout=180,
        )
    assert final.state is RunState.LIVE, (final.state, final.last_error)
    assert len(_emulator_jobs(emulator_admin, run_id)) == 1
    assert len(_emulator_deployments(emulator_admin, run_id)) == 1


def test_a_blob_uploaded_while_the_host_is_down_is_processed_once(
    host_settings: dict[str, str], state_dir: Path, emulator_admin: EmulatorAdmin
) -> None:
    with make_host(host_settings, state_dir):
        pass  # the host has run here before: it has receipts, keys, a state folder
    _upload(host_settings, "while-down.jsonl", jsonl(text_examples(30, f"down {uuid.uuid4().hex}")))
    with make_host(host_settings, state_dir) as host:
        runs = wait_until(lambda: _runs(host_settings), bool, what="the upload to be picked up")
        run_id = runs[0].run_id
        wait_until(
            lambda: host.log_text().count("dataset_uploaded"),
            lambda count: count >= 1,
            what="the blob trigger to run",
        )
    with make_host(host_settings, state_dir) as host:  # a restart does not fire it again
        wait_until(
            lambda: _run(host_settings, run_id).state.terminal,
            bool,
            what="the run to finish",
            timeout=120,
        )
    assert len(_emulator_jobs(emulator_admin, run_id)) == 1
    ledger_runs = build(host_settings).ledger.list_runs(None, 100, None)[0]
    assert [r.dataset_name for r in ledger_runs] == ["while-down.jsonl"]


def test_make_demo_reaches_live(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "local.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "LIVE" in output
    assert "Answer: Edward and Rachel will meet at 2pm." in output
    # The small first model went live by the floor; the full set was judged against it.
    assert re.search(
        r"Evaluation \(36 held-out examples, ROUGE-L F\): "
        r"challenger 0\.\d\d against the floor 0\.50: promoted",
        output,
    ), output[-3000:]
    assert re.search(
        r"challenger 0\.78 vs champion 0\.70 \(ft-[0-9a-f-]+\), delta \+0\.08 "
        r"\[0\.0\d, 0\.1\d\]: promoted",
        output,
    ), output[-3000:]
