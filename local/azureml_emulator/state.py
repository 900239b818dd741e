"""The emulator's in-memory world: clock, settings, stored resources.

Everything lives in one ``World`` guarded by one lock. Lifecycles are level
based: each resource records when it entered its current phase, and
``advance`` (called by a ticker thread every few milliseconds, and before reads)
moves it on once the configured time has passed on the emulated clock.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from local.azureml_emulator.arm import Resource
from local.azureml_emulator.standin import StandInModel


class Clock:
    """Emulated UTC time running ``speed`` times faster than the wall clock."""

    def __init__(self, speed: float = 1.0) -> None:
        self._lock = threading.Lock()
        self._base = dt.datetime.now(dt.UTC)
        self._t0 = time.monotonic()
        self._speed = speed

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> dt.datetime:
        with self._lock:
            return self._base + dt.timedelta(seconds=(time.monotonic() - self._t0) * self._speed)

    def set_speed(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        current = self.now()
        with self._lock:
            self._base, self._t0, self._speed = current, time.monotonic(), speed


@dataclass
class Timings:
    """How long lifecycle phases take, in emulated seconds."""

    job_queue_seconds: float = 1.0  # NotStarted -> Queued -> Running
    job_run_seconds: float = 2.0  # Running -> Completed / Failed
    provisioning_seconds: float = 2.0  # endpoints and deployments: Creating -> Succeeded
    delete_seconds: float = 0.5

    def update(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key not in self.__dataclass_fields__:
                raise KeyError(key)
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a non-negative number")
            setattr(self, key, float(value))


@dataclass
class ChildRun:
    """One step of a fine-tuning pipeline, as run history shows it."""

    step: str  # "model_import", "data_import", "finetune", "register_model"
    name: str  # its run id: "<job>_<step>_step"
    status: str
    created: dt.datetime
    ended: dt.datetime | None = None
    error: str = ""


@dataclass
class Job:
    resource: Resource
    status: str
    phase_started: dt.datetime
    # The status the job is heading for and its error, decided at submit time by
    # injected faults: "Completed", "Failed" or "" (stuck in Running). ``error``
    # is the root cause, which run history shows on the failed child step only.
    outcome: str = "Completed"
    error: str = ""
    failed_step: str = ""
    outputs_model: str = ""  # registered output model id once registered
    model_name: str = ""  # the name the pipeline registers the model under
    model_delay_seconds: float = 0.0  # model_late: registration lags Completed
    model_due: dt.datetime | None = None  # when a late model gets registered
    not_responding_seconds: float = 0.0  # not_responding: length of the gap
    responded: bool = False  # the NotResponding gap is over
    # Pipeline progress: "" (not started), "data_import", "finetune", "done".
    stage: str = ""
    stage_started: dt.datetime | None = None
    data_ready: bool = False  # the data import (reading storage) has finished
    data_error: str = ""  # why the data import failed, if it did
    trained: StandInModel | None = None
    children: list[ChildRun] = field(default_factory=list)


@dataclass
class Endpoint:
    resource: Resource
    keys: tuple[str, str]
    traffic: dict[str, int] = field(default_factory=dict)
    phase_started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    fail_reason: str = ""
    deleting: bool = False


@dataclass
class Deployment:
    resource: Resource
    endpoint: str
    phase_started: dt.datetime
    model_id: str
    fail_reason: str = ""
    deleting: bool = False


@dataclass
class Operation:
    """An ARM asynchronous operation, polled through Azure-AsyncOperation."""

    id: str
    target: tuple[str, ...]  # ("endpoint", ws, name) or ("deployment", ws, endpoint, name)
    action: str  # "create", "update" or "delete"
    status: str = "InProgress"
    error: str = ""


class World:
    """All stored state. Keys are lower-cased, since ARM names are case-insensitive."""

    def __init__(self, clock: Clock) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.timings = Timings()
        self.data: dict[tuple[str, str, str], Resource] = {}
        self.models: dict[tuple[str, str, str], Resource] = {}
        self.jobs: dict[tuple[str, str], Job] = {}
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        self.deployments: dict[tuple[str, str, str], Deployment] = {}
        self.operations: dict[str, Operation] = {}
        self.request_counts: dict[str, int] = {}
        # Endpoint names held by "other customers" in this region (lower-cased).
        self.reserved_endpoint_names: set[str] = set()
        # Deployment-name glob -> scoring contract ("openai" or "mlflow").
        self.scoring_contracts: dict[str, str] = {}
        # Datastore name (lower-cased) -> blob container URL it stands for.
        self.datastores: dict[str, str] = {}

    def elapsed(self, since: dt.datetime) -> float:
        return (self.clock.now() - since).total_seconds()
