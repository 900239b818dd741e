"""The dashboard in a real browser: the distribution's headless Chromium, driven by
Playwright, through the local Functions host and the Azure ML emulator. A wrong key
shows the host's 401; the list shows runs; runs held for approval (MAX_RUN_COST) are
approved with the page's button; a run stuck in training is cancelled with its button and
confirmation; a run page follows a run to LIVE by itself (auto-refresh); an unknown run
shows the API's problem. Screenshots of the list and a run page (at
1280 px, and a run page at phone width) go to docs/screenshots/, which the README shows.

Chromium comes from the system (``make test`` installs Debian's ``chromium``); no
browser is downloaded. Without it this test fails, naming the fix: it is never skipped.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright

from local.functions_host import FunctionsHost
from tests.e2e.conftest import ROOT, make_host
from tests.support.app import jsonl, text_examples
from tests.support.azureml import EmulatorAdmin, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing of Chromium's own on the network (the machine's network is closed:
# background connections would only be refused).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "docs" / "screenshots"
FUNCTION_KEY = "dashboard-test-" + uuid.uuid4().hex
WAIT_MS = 180_000  # generous: a run's whole life on the emulator's clock


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs it "
            "(apt-get install -y --no-install-recommends chromium)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _runs(host: FunctionsHost, dataset: str) -> list[dict[str, Any]]:
    response = requests.get(
        host.url("runs"),
        params={"limit": "100"},
        headers={"x-functions-key": FUNCTION_KEY},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return [r for r in response.json()["runs"] if r["dataset_name"] == dataset]


def _upload(settings: dict[str, str], name: str, topic: str) -> None:
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(settings["DATASET_STORAGE"])
    container = blobs.get_container_client(settings["DATASET_CONTAINER"])
    container.upload_blob(name, jsonl(text_examples(30, topic)))


def _run_id(host: FunctionsHost, dataset: str) -> str:
    found = wait_until(
        lambda: _runs(host, dataset), bool, what=f"a run of {dataset}", timeout=60, interval=0.2
    )
    return str(found[0]["run_id"])


def _open_run(page: Page, run_id: str) -> None:
    page.get_by_role("link", name=run_id).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(run_id)


def _sign_in(page: Page, key: str) -> None:
    page.get_by_label("Function key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def _confirm(page: Page, button: str, question: str) -> None:
    page.get_by_role("button", name=button, exact=True).click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(question)
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_be_hidden()


def test_the_dashboard_lists_follows_cancels_and_refuses_a_wrong_key(
    browser: Browser,
    host_settings: dict[str, str],
    emulator_admin: EmulatorAdmin,
    tmp_path: Path,
) -> None:
    # Every run waits for approval (its plan is over MAX_RUN_COST): a state it leaves only
    # when the page's Approve button is used, so the page sees it before it moves on.
    settings = {
        **host_settings,
        "FUNCTIONS_HOST_FUNCTION_KEY": FUNCTION_KEY,
        "MAX_RUN_COST": "0.01",
        "TRAINING_TOKENS_PER_SECOND": "100",
        "INSTANCE_PRICES": json.dumps({"Standard_NC24ads_A100_v4": 4.0}),
    }
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]

    with make_host(settings, tmp_path / "host") as host:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(host.url("ui"))

        # A wrong key: the host answers 401, and the page says so.
        _sign_in(page, "not-the-key")
        expect(page.get_by_role("alert")).to_contain_text("401", timeout=30_000)
        expect(page.get_by_label("Function key")).to_be_visible()

        # A run approved, then stuck in training, then cancelled, from its page.
        emulator_admin.fault_job("ft-*", outcome="stuck")
        _upload(settings, "stuck.jsonl", f"stuck {tag}")
        stuck = _run_id(host, "stuck.jsonl")
        _sign_in(page, FUNCTION_KEY)
        expect(page.get_by_role("heading", name="Runs")).to_be_visible()
        _open_run(page, stuck)
        heading = page.get_by_role("heading", level=1)
        _confirm(page, "Approve", f"Approve run {stuck}")
        expect(heading).to_contain_text("TRAINING", timeout=WAIT_MS)
        _confirm(page, "Cancel run", f"Cancel run {stuck}?")
        expect(page.get_by_role("status")).to_contain_text("requested")
        expect(heading).to_contain_text("CANCELED", timeout=WAIT_MS)
        emulator_admin.clear_faults()

        # A run followed from waiting to LIVE, without reloading the page.
        _upload(settings, "good.jsonl", f"meeting {tag}")
        good = _run_id(host, "good.jsonl")
        page.get_by_role("link", name="All runs").click()
        _open_run(page, good)
        expect(heading).to_contain_text("AWAITING_APPROVAL", timeout=WAIT_MS)
        expect(page.get_by_role("heading", name="Plan")).to_be_visible()
        _confirm(page, "Approve", f"Approve run {good}")
        expect(heading).to_contain_text("LIVE", timeout=WAIT_MS)
        timeline = page.get_by_role("region", name="States, oldest first")
        for state in ("AWAITING_APPROVAL", "TRAINING", "DEPLOYING", "SMOKE_TESTING", "LIVE"):
            expect(timeline).to_contain_text(state)
        expect(timeline).to_contain_text("FinetuneAutopilot.Run.Live")
        expect(page.get_by_role("region", name="Smoke prompts")).to_contain_text("passed")
        expect(page.get_by_role("heading", name="Validation report")).to_be_visible()
        expect(page.get_by_role("heading", name="Evaluation")).to_be_visible()
        page.screenshot(path=str(SCREENSHOTS / "run.png"), full_page=True)

        _check_the_list(page, good)

        # An unknown run: the API's problem, as it said it.
        page.goto(host.url("ui") + "#/runs/ft-nope")
        expect(page.get_by_role("alert")).to_contain_text("No such run (404)")

        _check_a_phone(browser, host, good)
        context.close()


def _check_the_list(page: Page, good: str) -> None:
    """Newest first, state badges, a filter by state."""
    page.get_by_role("link", name="All runs").click()
    rows = page.get_by_role("region", name="Runs, newest first").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(good)
    expect(rows.nth(1)).to_contain_text("CANCELED")
    page.screenshot(path=str(SCREENSHOTS / "runs.png"), full_page=True)
    page.get_by_label("State").select_option("LIVE")
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text(good)


def _check_a_phone(browser: Browser, host: FunctionsHost, good: str) -> None:
    """At a phone's width the run page still reads: tables scroll in their frames.
    Signed in by the URL ``make run`` prints (the key in the fragment)."""
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    page.goto(f"{host.url('ui')}#key={FUNCTION_KEY}")
    _open_run(page, good)
    expect(page.get_by_role("heading", level=1)).to_contain_text("LIVE")
    assert "key=" not in page.url  # the key left the address bar
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px screen"
    page.screenshot(path=str(SCREENSHOTS / "run-phone.png"))  # the first screenful
    phone.close()
