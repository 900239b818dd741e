"""The telemetry port: spans, the run id on them and on log records, and a few metrics.

The app says what it does through this port; ``shared.adapters.telemetry``
exports it with OpenTelemetry to Application Insights when
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set. Without it the composition
root hands out ``NoTelemetry``, which does nothing, and nothing of
OpenTelemetry is imported (no cost on cold start).

Contract for callers: attributes are run ids, states, action names, outcomes
and counts. Never a key, a URL with a query, a connection string or a
message quoting one: the adapter scrubs anything that looks like a secret,
but that is defence in depth, not the guarantee.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from shared.domain.runs import Run

Attribute = str | int | float | bool

# Attribute names, OpenTelemetry style (dotted, lower case).
RUN_ID = "run.id"

# Metric names (instruments are made on first use by the adapter).
TRANSITIONS = "autopilot.run.transitions"  # counter, by "state" entered
STATE_SECONDS = "autopilot.run.state_duration"  # histogram (s), by "state" left
SMOKE_OUTCOMES = "autopilot.smoke.outcomes"  # counter, by "outcome": passed | failed
EVALUATION_OUTCOMES = "autopilot.evaluation.outcomes"  # counter, by "outcome": the verdict


class Telemetry(Protocol):
    def span(
        self, name: str, run_id: str = "", **attributes: Attribute
    ) -> AbstractContextManager[None]:
        """A span around the block. ``run_id`` goes on it as ``run.id`` and, until
        the block ends, on every span and log record started inside it."""
        ...

    def annotate(self, run_id: str = "", **attributes: Attribute) -> None:
        """Attributes on the current span; a ``run_id`` also binds the run to what
        follows inside that span, until it ends."""
        ...

    def count(self, name: str, **attributes: Attribute) -> None:
        """Add one to counter ``name``."""
        ...

    def record(self, name: str, value: float, **attributes: Attribute) -> None:
        """Record ``value`` in histogram ``name``."""
        ...


class NoTelemetry:
    """Telemetry switched off: every call does nothing, and costs next to nothing."""

    def span(
        self, name: str, run_id: str = "", **attributes: Attribute
    ) -> AbstractContextManager[None]:
        return _nothing()

    def annotate(self, run_id: str = "", **attributes: Attribute) -> None:
        return None

    def count(self, name: str, **attributes: Attribute) -> None:
        return None

    def record(self, name: str, value: float, **attributes: Attribute) -> None:
        return None


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@dataclass(frozen=True)
class Measurement:
    """One metric point: a count of one (``value`` None) or a histogram value."""

    name: str
    attributes: Mapping[str, Attribute] = field(default_factory=dict)
    value: float | None = None


def progress(before: Run | None, after: Run) -> list[Measurement]:
    """What a saved step tells the metrics: each state entered (from the timeline
    entries ``after`` adds to ``before``; all of them for a new run, ``before``
    None), the time spent in each state left (between timeline entries), and a
    smoke test or evaluation that reached its outcome."""
    found: list[Measurement] = []
    seen = before.timeline if before is not None else ()
    previous = seen[-1] if seen else None
    for entry in after.timeline[len(seen) :]:
        found.append(Measurement(TRANSITIONS, {"state": entry.state.value}))
        if previous is not None:
            seconds = (entry.at - previous.at).total_seconds()
            found.append(Measurement(STATE_SECONDS, {"state": previous.state.value}, seconds))
        previous = entry
    smoke = after.smoke.get("passed")
    if smoke is not None and (before is None or after.smoke != before.smoke):
        found.append(Measurement(SMOKE_OUTCOMES, {"outcome": "passed" if smoke else "failed"}))
    verdict = after.evaluation.get("verdict")
    if verdict and (before is None or verdict != before.evaluation.get("verdict")):
        found.append(Measurement(EVALUATION_OUTCOMES, {"outcome": str(verdict)}))
    return found


def measure(telemetry: Telemetry, before: Run | None, after: Run) -> None:
    """Send ``progress(before, after)`` to ``telemetry``."""
    for m in progress(before, after):
        if m.value is None:
            telemetry.count(m.name, **m.attributes)
        else:
            telemetry.record(m.name, m.value, **m.attributes)
