"""Timer triggers on their NCRONTAB schedule, one run at a time.

* A thread per timer sleeps until the next occurrence (UTC) and starts a run in a
  thread of its own, so the schedule keeps time while the function works.
* A timer never overlaps itself: an occurrence that comes while the previous run is
  still going is skipped, with a log line.
* ``past_due`` is set when the host fell behind: one or more whole occurrences were
  missed (a suspended machine, a long stall) or the run starts more than a second
  late; occurrences missed together run once.
* ``run_on_startup`` runs the function once when the host starts.
* Schedule monitoring (``use_monitor``; by default on for schedules of a minute or
  longer, as in the real host) keeps ``{"Last", "Next", "LastUpdated"}`` in the
  blob ``timers/<host id>/<function id>/status`` of ``azure-webjobs-hosts``; an
  occurrence missed while the host was down runs once at start with ``past_due``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.functions.timer import TimerRequest

from local.functions_host.blob_trigger import HostStorage
from local.functions_host.indexing import TimerSpec
from local.functions_host.invocations import Invoker

log = logging.getLogger("host.timers")

PAST_DUE_TOLERANCE = dt.timedelta(seconds=1)
_MONITOR_MIN_INTERVAL = dt.timedelta(minutes=1)

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class ScheduleStatus:
    last: dt.datetime | None
    next: dt.datetime | None
    last_updated: dt.datetime | None

    def as_binding(self) -> dict[str, str]:
        return {
            key: value.isoformat()
            for key, value in (
                ("Last", self.last),
                ("Next", self.next),
                ("LastUpdated", self.last_updated),
            )
            if value is not None
        }


class ScheduleMonitor:
    """The persisted schedule status of one timer function."""

    def __init__(self, storage: HostStorage, function_id: str) -> None:
        self._storage = storage
        self.blob_name = f"timers/{storage.host_id}/{function_id}/status"

    def read(self) -> ScheduleStatus | None:
        document = self._storage.read_json(self.blob_name)
        if document is None:
            return None
        return ScheduleStatus(
            last=_parse_time(document.get("Last")),
            next=_parse_time(document.get("Next")),
            last_updated=_parse_time(document.get("LastUpdated")),
        )

    def write(self, status: ScheduleStatus) -> None:
        self._storage.write_json(self.blob_name, status.as_binding())


def _parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def monitor_by_default(spec: TimerSpec, now: dt.datetime) -> bool:
    """The real host's default for ``useMonitor``: on unless it fires more than once a minute."""
    first = spec.schedule.next_after(now)
    second = spec.schedule.next_after(first)
    return second - first >= _MONITOR_MIN_INTERVAL


@dataclass
class TimerStats:
    runs: int = 0
    skipped: int = 0
    running: bool = False
    next: dt.datetime | None = None


class TimerRunner:
    def __init__(
        self,
        spec: TimerSpec,
        *,
        invoker: Invoker,
        stop: threading.Event,
        monitor: ScheduleMonitor | None,
        clock: Clock = utc_now,
    ) -> None:
        self.spec = spec
        self._invoker = invoker
        self._stop = stop
        self._monitor = monitor
        self._clock = clock
        self._lock = threading.Lock()
        self._status: ScheduleStatus | None = None
        self._thread: threading.Thread | None = None
        self.stats = TimerStats()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name=f"timer-{self.spec.name}", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run_now(self, *, reason: str) -> bool:
        """Start a run at once (the admin API); False if one is already going."""
        return self._fire(self._clock(), past_due=False, reason=reason)

    def _loop(self) -> None:
        spec = self.spec
        now = self._clock()
        log.info(
            "Timer 'Functions.%s' on schedule '%s' (UTC)%s%s; next at %s",
            spec.name,
            spec.schedule.expression,
            ", run on start-up" if spec.run_on_startup else "",
            ", monitored" if self._monitor else "",
            spec.schedule.next_after(now).isoformat(),
        )
        try:
            self._start_up(now)
        except Exception:
            log.exception("Timer 'Functions.%s': reading its schedule status failed", spec.name)
        last = now
        while not self._stop.is_set():
            occurrence = spec.schedule.next_after(last)
            with self._lock:
                self.stats.next = occurrence
            if self._sleep_until(occurrence):
                return
            now = self._clock()
            latest, missed = occurrence, 0
            while (following := spec.schedule.next_after(latest)) <= now:
                latest, missed = following, missed + 1
            past_due = missed > 0 or now - latest > PAST_DUE_TOLERANCE
            if missed:
                log.warning(
                    "Timer 'Functions.%s' fell behind: %d occurrence(s) missed; running once",
                    spec.name,
                    missed,
                )
            if not self._fire(latest, past_due=past_due, reason="schedule"):
                log.warning(
                    "Timer 'Functions.%s' skipped the occurrence due at %s: "
                    "the previous run is still going",
                    spec.name,
                    latest.isoformat(),
                )
            last = latest

    def _start_up(self, now: dt.datetime) -> None:
        status = self._monitor.read() if self._monitor else None
        self._status = status
        if status is not None and status.next is not None and status.next <= now:
            log.info(
                "Timer 'Functions.%s' is past due (was due at %s); running now",
                self.spec.name,
                status.next.isoformat(),
            )
            self._fire(status.next, past_due=True, reason="past due at start-up")
        elif self.spec.run_on_startup:
            self._fire(now, past_due=False, reason="run on start-up")
        elif self._monitor is not None:
            self._status = ScheduleStatus(
                last=status.last if status else None,
                next=self.spec.schedule.next_after(now),
                last_updated=now,
            )
            self._monitor.write(self._status)

    def _sleep_until(self, moment: dt.datetime) -> bool:
        """Wait until ``moment``; True if the host is stopping."""
        while (remaining := (moment - self._clock()).total_seconds()) > 0:
            if self._stop.wait(remaining):
                return True
        return self._stop.is_set()

    def _fire(self, occurrence: dt.datetime, *, past_due: bool, reason: str) -> bool:
        with self._lock:
            if self.stats.running:
                self.stats.skipped += 1
                return False
            self.stats.running = True
        thread = threading.Thread(
            target=self._execute,
            args=(occurrence, past_due, reason),
            name=f"run-{self.spec.name}",
            daemon=True,
        )
        thread.start()
        return True

    def _execute(self, occurrence: dt.datetime, past_due: bool, reason: str) -> None:
        spec = self.spec
        try:
            request = TimerRequest(
                past_due=past_due,
                schedule_status=self._status.as_binding() if self._status else None,
                schedule={"AdjustForDST": True},
            )
            detail = f"timer ({reason}, due {occurrence.isoformat()}, past_due={past_due})"
            self._invoker.invoke(spec, {spec.parameter: request}, detail)
        except Exception:
            pass  # logged by the invoker; the next occurrence runs as usual
        finally:
            try:
                if self._monitor is not None:
                    now = self._clock()
                    self._status = ScheduleStatus(
                        last=occurrence, next=spec.schedule.next_after(now), last_updated=now
                    )
                    self._monitor.write(self._status)
            except Exception:
                log.exception("Timer 'Functions.%s': saving its schedule status failed", spec.name)
            finally:
                with self._lock:
                    self.stats.running = False
                    self.stats.runs += 1
