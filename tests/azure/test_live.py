"""The deployed app, end to end, on a real subscription: opt in with ``make test-azure``.

Uploads a small dataset (the first ``LIVE_EXAMPLES`` examples of the demo
dataset, made unique by a nonce so it is never a DUPLICATE) to the deployed
dataset container with ``DefaultAzureCredential`` (your ``az login``; the
template gives the deploying user Storage Blob Data Owner), waits until the
blob trigger (through the Event Grid subscription of the postdeploy hook) has
recorded a run for it, then polls ``GET /api/runs/{id}`` with a function key
until the run ends, and expects LIVE.

This trains and deploys for real: a GPU fine-tuning job, then a GPU online
deployment that keeps running, and billing, after the test. See the README's
"Deploy to Azure" for costs and clean-up.

Settings (environment, or ``azd env get-values`` when azd is installed):
``AZURE_FUNCTION_APP_NAME``, ``AZURE_STORAGE_BLOB_ENDPOINT``,
``DATASET_CONTAINER`` (outputs of infra/main.bicep) and ``FUNCTION_KEY``
(``az functionapp keys list -g <rg> -n <app> --query functionKeys.default -o tsv``).
``LIVE_EXAMPLES`` (default 100), ``LIVE_INTAKE_MINUTES`` (15) and
``LIVE_RUN_MINUTES`` (480) tune it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from shared.domain.runs import RunState

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "local" / "demo" / "dialogsum.jsonl"
NEEDED = (
    "AZURE_FUNCTION_APP_NAME",
    "AZURE_STORAGE_BLOB_ENDPOINT",
    "DATASET_CONTAINER",
    "FUNCTION_KEY",
)

pytestmark = pytest.mark.azure


def _azd_values() -> dict[str, str]:
    """``azd env get-values`` of the current azd environment, when azd is there."""
    azd = shutil.which("azd")
    if azd is None:
        return {}
    done = subprocess.run(
        [azd, "env", "get-values"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    pairs = re.findall(r'^([A-Za-z_]\w*)="(.*)"$', done.stdout, re.M)
    return dict(pairs) if done.returncode == 0 else {}


@pytest.fixture(scope="module")
def live(request: pytest.FixtureRequest) -> dict[str, str]:
    chosen = "azure" in (request.config.getoption("markexpr") or "")
    values = {name: os.environ.get(name, "") for name in NEEDED}
    if chosen and not all(values.values()):
        from_azd = _azd_values()
        values = {name: value or from_azd.get(name, "") for name, value in values.items()}
    missing = [name for name, value in values.items() if not value]
    if not chosen:
        pytest.skip(
            "live Azure end-to-end: opt in with `make test-azure` "
            f"(needs {', '.join(NEEDED)}; missing now: {', '.join(missing) or 'none'})"
        )
    if missing:
        pytest.skip(
            f"live Azure end-to-end: set {', '.join(missing)} "
            "(outputs of `azd up`; FUNCTION_KEY from `az functionapp keys list`)"
        )
    return values


def _dataset(nonce: str, count: int) -> bytes:
    lines = DEMO.read_text(encoding="utf-8").splitlines()[:count]
    first = json.loads(lines[0])
    first["prompt"] = f"{first['prompt']} [live test {nonce}]"
    lines[0] = json.dumps(first, ensure_ascii=False)
    return ("\n".join(lines) + "\n").encode("utf-8")


def _get(session: requests.Session, url: str) -> Any:
    answer = session.get(url, timeout=60)
    assert answer.status_code == 200, f"GET {url}: {answer.status_code} {answer.text[:500]}"
    return answer.json()


@pytest.mark.timeout(0)  # deadlines of its own, in minutes
def test_a_dataset_dropped_into_the_container_goes_live(live: dict[str, str]) -> None:
    from azure.identity import DefaultAzureCredential
    from azure.storage.blob import BlobServiceClient

    nonce = uuid.uuid4().hex[:12]
    name = f"live-test-{nonce}.jsonl"
    examples = int(os.environ.get("LIVE_EXAMPLES", "100"))
    service = BlobServiceClient(live["AZURE_STORAGE_BLOB_ENDPOINT"], DefaultAzureCredential())
    container = service.get_container_client(live["DATASET_CONTAINER"])
    container.upload_blob(name, _dataset(nonce, examples))
    print(f"uploaded {name} ({examples} examples) to {live['DATASET_CONTAINER']}")

    api = f"https://{live['AZURE_FUNCTION_APP_NAME']}.azurewebsites.net/api"
    session = requests.Session()
    session.headers["x-functions-key"] = live["FUNCTION_KEY"]

    # The blob trigger (Event Grid source) records a run for the upload.
    deadline = time.monotonic() + 60 * float(os.environ.get("LIVE_INTAKE_MINUTES", "15"))
    run_id = None
    while run_id is None:
        listing = _get(session, f"{api}/runs?limit=50")
        run_id = next((r["run_id"] for r in listing["runs"] if r["dataset_name"] == name), None)
        if run_id is None:
            assert time.monotonic() < deadline, (
                f"no run recorded for {name}: is the Event Grid subscription of the "
                "postdeploy hook in place (scripts/postdeploy.sh)?"
            )
            time.sleep(20)
    print(f"run {run_id} recorded")

    # Then it moves on its own: training, deployment, smoke test, promotion.
    deadline = time.monotonic() + 60 * float(os.environ.get("LIVE_RUN_MINUTES", "480"))
    seen = ""
    while True:
        run = _get(session, f"{api}/runs/{run_id}")
        if run["state"] != seen:
            seen = run["state"]
            print(f"{time.strftime('%H:%M:%S')} {seen} {run.get('last_error', '')}".rstrip())
        if RunState(seen).terminal:
            break
        assert time.monotonic() < deadline, f"run {run_id} still {seen} at the deadline"
        time.sleep(60)
    assert seen == RunState.LIVE.value, f"run {run_id} ended {seen}: {run.get('last_error')}"
    print(
        f"LIVE: {run.get('deployment') or ''} now serves the fine-tuned model and bills "
        "while it runs; `azd down --purge` removes everything"
    )
