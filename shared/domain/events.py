"""Lifecycle events: what the app tells the outside world about a run.

Pure, plus the port. Each entry of a run's timeline becomes one event, typed
``FinetuneAutopilot.Run.<State>`` (``...Run.Live``, ``...Run.TrainingFailed``),
with the run id as subject. An event's id is ``{run_id}:{index}:{state}``, the
timeline position included, so publishing the same entry again yields the same
id and subscribers can drop duplicates: delivery is at least once, because a
publisher that fails raises and the caller publishes the same entries later.

An event's ``data`` describes the run as it is when the events are built (job,
model, endpoint, last error, the evaluation's scores and verdict without its
texts), with the entry's own state and detail; the envelope's ``time`` is when
the run entered that state. A run with a preflight plan carries it (``plan``:
the event of AWAITING_APPROVAL says why the run waits), and an approved run who
approved it and when (``approval``). A rollback run's events say which run it
rolls back and what it restores (``rollback``); a LIVE run's, what it replaced
(``replaced``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from shared.domain.evaluation import for_event
from shared.domain.runs import ROLLBACK, Run

EVENT_TYPE_PREFIX = "FinetuneAutopilot.Run."


@dataclass(frozen=True)
class LifecycleEvent:
    id: str
    """``{run_id}:{index}:{state}``: the same timeline entry always has the same id."""
    type: str
    """``FinetuneAutopilot.Run.<StateInPascalCase>``."""
    subject: str
    """The run id."""
    time: dt.datetime
    data: Mapping[str, Any]


class EventPublisher(Protocol):
    def publish(self, events: Sequence[LifecycleEvent]) -> None:
        """Deliver ``events`` in order, all or none.

        Raises ``RetryableError`` when delivery failed for now (the caller keeps
        the events and publishes them again later), ``PermanentError`` when it
        cannot succeed as configured (a wrong key, an unknown topic).
        """
        ...


class DisabledPublisher:
    """The publisher when no topic is configured: events go nowhere."""

    def publish(self, events: Sequence[LifecycleEvent]) -> None:
        return None


def pascal(state: str) -> str:
    """``TRAINING_FAILED`` -> ``TrainingFailed`` (a ``RunState`` is a ``str``)."""
    return "".join(word.capitalize() for word in str(state).split("_") if word)


def events_for(run: Run, since_index: int) -> list[LifecycleEvent]:
    """One event per timeline entry from ``since_index`` on, in timeline order.

    ``since_index`` is how many entries were published before (0: all of them);
    past the end, there is nothing to publish.
    """
    if since_index < 0:
        raise ValueError(f"since_index must be 0 or more, not {since_index}")
    events = []
    for index in range(since_index, len(run.timeline)):
        entry = run.timeline[index]
        state = str(entry.state)
        data: dict[str, Any] = {
            "run_id": run.run_id,
            "state": state,
            "dataset": {
                "container": run.dataset.container,
                "name": run.dataset.name,
                "url": run.dataset.url,
                "sha256": run.sha256,
            },
            "job": {"name": run.job_name, "status": run.job_status},
            "model": run.model_id,
            "endpoint": run.endpoint,
            "deployment": run.deployment,
            "summary": entry.detail,
            "last_error": run.last_error,
            "evaluation": for_event(run.evaluation),
        }
        if run.plan:
            data["plan"] = dict(run.plan)
        if run.approval:
            data["approval"] = dict(run.approval)
        if run.kind == ROLLBACK:
            data["rollback"] = {
                key: run.config.get(key, "") for key in ("rollback_of", "restores", "removes")
            }
        if run.replaced:
            data["replaced"] = dict(run.replaced)
        events.append(
            LifecycleEvent(
                id=f"{run.run_id}:{index}:{state}",
                type=EVENT_TYPE_PREFIX + pascal(state),
                subject=run.run_id,
                time=entry.at,
                data=data,
            )
        )
    return events
