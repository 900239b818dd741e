"""Every malformed file in the corpus is rejected through the real intake path.

Azurite holds the uploads; the Azure ML emulator would receive any data asset
or job. Each file must end REJECTED with a report naming the line and the
problem, the original blob untouched, and nothing registered or submitted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.azurite import Azurite
from shared.domain.runs import RunState
from shared.domain.storage import REPORTS_PREFIX
from shared.pipeline.intake import accept_upload
from tests.support.app import LocalApp, jsonl, text_examples
from tests.support.azureml import EmulatorAdmin

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]

CORPUS = Path(__file__).resolve().parents[1] / "data" / "malformed"
EXPECTED: dict[str, dict[str, object]] = json.loads((CORPUS / "EXPECTED.json").read_text())


@pytest.fixture(scope="module")
def app(azurite: Azurite) -> LocalApp:
    return LocalApp.create(azurite)


def test_the_corpus_is_large_enough() -> None:
    assert len(EXPECTED) >= 25
    assert {p.name for p in CORPUS.glob("*.jsonl")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_is_rejected_with_a_report(
    app: LocalApp, emulator_admin: EmulatorAdmin, name: str
) -> None:
    data = (CORPUS / name).read_bytes()
    blob = app.upload(name, data)
    before = blob.get_blob_properties()
    jobs_before = len(emulator_admin.state()["jobs"])
    data_before = len(emulator_admin.state()["data"])

    result = accept_upload(app.services, name)

    assert result.outcome == "rejected" and result.run_id
    stored = app.services.ledger.get(result.run_id)
    assert stored is not None
    run = stored.run
    assert run.state is RunState.REJECTED
    # The report names the line and the problem.
    expected = EXPECTED[name]
    report_name = run.report_url.split(f"/{app.services.work.container}/", 1)[1]
    assert report_name.startswith(REPORTS_PREFIX)
    report = json.loads(app.work.download_blob(report_name).readall())
    errors = report["errors"]
    line_errors = [e for e in errors if e["line"] == expected["line"]]
    assert line_errors, f"no error reported on line {expected['line']}: {errors[:3]}"
    assert line_errors[0]["code"] == expected["code"]
    summary = app.work.download_blob(report_name.removesuffix(".json") + ".txt").readall()
    assert b"INVALID" in summary
    assert f"line {expected['line']}" in run.timeline[-1].detail or expected["line"] == 0
    # The original is untouched: same version, same bytes.
    after = blob.get_blob_properties()
    assert after.etag == before.etag
    assert blob.download_blob().readall() == data
    # Nothing reached Azure ML.
    assert len(emulator_admin.state()["jobs"]) == jobs_before
    assert len(emulator_admin.state()["data"]) == data_before


def test_an_oversized_file_is_rejected_without_being_read(azurite: Azurite) -> None:
    app = LocalApp.create(azurite, MAX_DATASET_BYTES="1000")
    app.upload("big.jsonl", jsonl(text_examples(20)))
    result = accept_upload(app.services, "big.jsonl")
    assert result.outcome == "rejected"
    assert "over the size limit of 1,000 bytes" in result.detail
