"""Driving ``function_app``'s own triggers in-process, as the host would.

``FunctionsDriver`` sets the app settings in the environment (the app reads
them lazily through ``shared.composition.services()``), then calls the decorated
functions with real binding values: a ``BlobClient`` for the blob trigger, a
``TimerRequest`` for the timer, an ``EventGridEvent`` for Azure ML events. It
records how long every invocation took.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient

from shared.composition import services
from shared.domain.ports import Services
from shared.domain.runs import Run


@dataclass
class Invocation:
    function: str
    seconds: float


@dataclass
class FunctionsDriver:
    settings: dict[str, str]
    invocations: list[Invocation] = field(default_factory=list)

    @property
    def services(self) -> Services:
        return services()

    def _timed(self, name: str, call: Callable[[], Any]) -> None:
        started = time.perf_counter()
        try:
            call()
        finally:
            self.invocations.append(Invocation(name, time.perf_counter() - started))

    def upload(self, name: str, data: bytes, **metadata: str) -> None:
        """Upload a blob, then fire the blob trigger for it."""
        import function_app

        blobs = BlobServiceClient.from_connection_string(self.settings["DATASET_STORAGE"])
        blob = blobs.get_blob_client(self.settings["DATASET_CONTAINER"], name)
        blob.upload_blob(data, overwrite=True, metadata=metadata or None)
        self._timed("dataset_uploaded", lambda: function_app.dataset_uploaded(blob))

    def tick(self) -> None:
        import function_app

        self._timed("reconcile_timer", lambda: function_app.reconcile_timer(TimerRequest()))

    def deliver(self, event: dict[str, Any]) -> None:
        """Deliver an Azure ML event (Event Grid schema) to the Event Grid trigger."""
        import function_app

        grid_event = func.EventGridEvent(
            id=event["id"],
            data=event["data"],
            topic=event["topic"],
            subject=event["subject"],
            event_type=event["eventType"],
            event_time=dt.datetime.fromisoformat(event["eventTime"].replace("Z", "+00:00")),
            data_version=event["dataVersion"],
        )
        self._timed("azureml_event", lambda: function_app.azureml_event(grid_event))

    def run(self, run_id: str) -> Run:
        stored = self.services.ledger.get(run_id)
        assert stored is not None, f"run {run_id} not in the ledger"
        return stored.run

    def only_run(self) -> Run:
        runs = self.services.ledger.active()
        assert len(runs) == 1, [s.run.run_id for s in runs]
        return runs[0].run

    def tick_until(self, run_id: str, done: Callable[[Run], bool], *, timeout: float = 60.0) -> Run:
        """Fire the timer until ``done(run)``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            run = self.run(run_id)
            if done(run):
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} stuck in {run.state}: {run.activity}")
            time.sleep(0.05)


@contextmanager
def functions_driver(settings: dict[str, str]) -> Iterator[FunctionsDriver]:
    """Point the app at ``settings`` for the duration, with fresh cached services."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in settings.items():
            env.setenv(name, value)
        services.cache_clear()
        blobs = BlobServiceClient.from_connection_string(settings["DATASET_STORAGE"])
        blobs.create_container(settings["DATASET_CONTAINER"])
        try:
            yield FunctionsDriver(settings)
        finally:
            services.cache_clear()
