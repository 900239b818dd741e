"""The timer's sweep: due runs only, bounded concurrency, failures isolated."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from typing import Any

import pytest

import shared.pipeline.sweep as sweep_module
from shared.domain.ledger import StoredRun
from shared.domain.runs import DatasetRef, Run, RunState
from shared.domain.settings import Settings
from shared.pipeline.sweep import sweep

NOW = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
DATASET = DatasetRef("datasets", "a.jsonl", "https://acct/datasets/a.jsonl", '"0x1"', 1)


class FakeLedger:
    def __init__(self, runs: list[Run]) -> None:
        self.runs = runs

    def active(self) -> list[StoredRun]:
        return [StoredRun(r, "etag") for r in self.runs if r.needs_attention]


@dataclasses.dataclass
class FakeServices:
    ledger: FakeLedger
    settings: Settings
    now: Any = lambda: NOW


def _run(run_id: str, next_check: dt.datetime | None) -> Run:
    run = Run.new(run_id, DATASET, NOW).moved_to(RunState.REGISTERING_DATA, NOW)
    return dataclasses.replace(run, next_check_at=next_check, published=len(run.timeline))


def test_sweep_reconciles_due_runs_and_survives_a_failing_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    later = NOW + dt.timedelta(minutes=5)
    runs = [_run("due-1", NOW), _run("due-2", None), _run("boom", NOW), _run("later", later)]
    settings = Settings("s", "rg", "ws", "azureml://registries/r/models/m/versions/1")
    services = FakeServices(
        FakeLedger(runs), dataclasses.replace(settings, reconcile_concurrency=2)
    )
    seen: list[str] = []
    lock = threading.Lock()
    running = 0
    peak = 0

    def fake_reconcile(_: Any, stored: StoredRun) -> None:
        nonlocal running, peak
        run_id = stored.run.run_id
        with lock:
            running += 1
            peak = max(peak, running)
            seen.append(run_id)
        try:
            if run_id == "boom":
                raise RuntimeError("kaboom")
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(sweep_module, "reconcile_listed", fake_reconcile)
    result = sweep(services)  # type: ignore[arg-type]

    assert sorted(seen) == ["boom", "due-1", "due-2"]
    assert result.active == 4 and result.due == 3
    assert result.failed == ("boom",)
    assert peak <= 2
