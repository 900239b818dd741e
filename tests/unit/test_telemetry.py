"""Telemetry: the metrics a step tells, the scrubbing, and no cost when it is off."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.p1_cold_start import app_env, closed_port, closed_storage
from shared.domain.runs import DatasetRef, Run, RunState
from shared.domain.telemetry import (
    EVALUATION_OUTCOMES,
    SMOKE_OUTCOMES,
    STATE_SECONDS,
    TRANSITIONS,
    Measurement,
    NoTelemetry,
    progress,
)

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _run() -> Run:
    dataset = DatasetRef("datasets", "a.jsonl", "http://127.0.0.1/datasets/a.jsonl", "e1", 10)
    return Run.new("ft-1", dataset, _at(0), "uploaded").moved_to(
        RunState.REGISTERING_DATA, _at(1), "valid"
    )


def test_a_new_run_counts_every_state_it_entered_and_the_time_in_those_it_left() -> None:
    assert progress(None, _run()) == [
        Measurement(TRANSITIONS, {"state": "RECEIVED"}),
        Measurement(TRANSITIONS, {"state": "REGISTERING_DATA"}),
        Measurement(STATE_SECONDS, {"state": "RECEIVED"}, 1.0),
    ]


def test_a_step_counts_only_what_it_changed() -> None:
    before = _run().moved_to(RunState.TRAINING, _at(3), "submitted")
    smoke = before.moved_to(RunState.DEPLOYING, _at(63), "done").moved_to(
        RunState.SMOKE_TESTING, _at(70), "up"
    )
    after = dataclasses.replace(
        smoke.moved_to(RunState.EVALUATING, _at(72), "passed"),
        smoke={"passed": True},
        evaluation={"verdict": "promote"},
    )
    found = progress(before, after)
    assert Measurement(STATE_SECONDS, {"state": "TRAINING"}, 60.0) in found
    assert Measurement(TRANSITIONS, {"state": "EVALUATING"}) in found
    assert Measurement(SMOKE_OUTCOMES, {"outcome": "passed"}) in found
    assert Measurement(EVALUATION_OUTCOMES, {"outcome": "promote"}) in found
    assert progress(after, after) == []  # a look that changed nothing tells nothing


def test_no_telemetry_does_nothing() -> None:
    telemetry = NoTelemetry()
    with telemetry.span("reconcile", "ft-1", state="TRAINING"):
        telemetry.annotate(run_id="ft-1", action="none")
        telemetry.count(TRANSITIONS, state="LIVE")
        telemetry.record(STATE_SECONDS, 1.0, state="LIVE")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("GET https://a.blob.core.windows.net/c/b.jsonl?sv=2024&sp=r&sig=abc%2Bdef", "abc%2Bdef"),
        ("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=c2VjcmV0a2V5;", "c2VjcmV0a2V5"),
        ("Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGci.e30.sig", "eyJ0eXAiOiJKV1QiLCJhbGci"),
        ("{'x-functions-key': 'k3yV4lue'}", "k3yV4lue"),
        ("POST /api/runs?code=fUnCkEy123", "fUnCkEy123"),
        ("key Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPT==", "Eby8"),
        ("endpoint key 7fGh2KpQ9xZr4LmN8vBw3TyU", "7fGh2KpQ9xZr4LmN8vBw3TyU"),
    ],
)
def test_scrub_removes_what_looks_like_a_secret(text: str, secret: str) -> None:
    from shared.adapters.telemetry import scrub

    scrubbed = scrub(text)
    assert secret not in scrubbed and "[REDACTED]" in scrubbed, scrubbed


def test_scrub_keeps_names_ids_and_paths() -> None:
    from shared.adapters.telemetry import scrub

    text = (
        "run ft-1f904ebb8758-21967ca7 moved TRAINING -> DEPLOYING; job ft-1f904ebb8758-21967ca7 "
        "in /subscriptions/00000000-0000-0000-0000-00000000c0de/resourceGroups/rg-finetune/"
        "providers/Microsoft.MachineLearningServices/workspaces/mlw-finetune; "
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    )
    assert scrub(text) == text


# Import the app as the worker does, call the health route (settings valid, storage on
# a closed port), and tell which telemetry modules were loaded at each point.
HEALTH_CALL = r"""
import json, sys
import azure.functions as func

def loaded():
    return sorted(m for m in sys.modules if m.startswith(("opentelemetry", "azure.monitor")))

import function_app
after_import = loaded()
health = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
request = func.HttpRequest("GET", "http://127.0.0.1/api/health", body=b"")
status = health["health"](request).status_code
print(json.dumps({"after_import": after_import, "after_call": loaded(), "status": status}))
"""


def _health_call(extra: dict[str, str]) -> dict[str, object]:
    closed = closed_port()
    env = {**app_env(closed_storage(closed), closed), **extra}
    done = subprocess.run(
        [sys.executable, "-c", HEALTH_CALL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_without_the_setting_no_telemetry_module_is_imported() -> None:
    out = _health_call({})
    assert out["status"] == 503  # the ledger's port is closed: the call went through
    assert out["after_import"] == [] and out["after_call"] == [], out


def test_with_the_setting_telemetry_is_set_up_on_the_first_call_not_on_import() -> None:
    closed = closed_port()
    out = _health_call(
        {
            "APPLICATIONINSIGHTS_CONNECTION_STRING": (
                f"InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                f"IngestionEndpoint=http://127.0.0.1:{closed}/"
            ),
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        }
    )
    assert out["after_import"] == [], out
    assert "azure.monitor.opentelemetry" in list(out["after_call"])  # type: ignore[call-overload]
