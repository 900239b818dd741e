"""The host itself, in this process: settings, the app, its triggers, the HTTP front.

``HostRuntime`` is what ``python -m local.functions_host`` runs. It writes the app
settings into ``os.environ`` and imports ``function_app.py`` into this process, as
the Python worker does, so use one per process; tests use ``FunctionsHost``, which
runs it in a child process.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.functions_host import keys as host_keys
from local.functions_host.blob_events import BlobEventTriggers, is_event_grid, queue_name
from local.functions_host.blob_trigger import BlobTriggerListener, HostStorage
from local.functions_host.config import (
    HOST_ID_SETTING,
    HostStartError,
    apply_settings,
    default_host_id,
    read_host_json,
)
from local.functions_host.http_server import HttpFront
from local.functions_host.indexing import (
    BlobSpec,
    EventGridSpec,
    HttpSpec,
    IndexedApp,
    TimerSpec,
    load_app,
)
from local.functions_host.invocations import Invoker
from local.functions_host.storage import StorageConnection, resolve_connection
from local.functions_host.timer_trigger import (
    ScheduleMonitor,
    TimerRunner,
    monitor_by_default,
    utc_now,
)

log = logging.getLogger("host")

HOST_STORAGE_SETTING = "AzureWebJobsStorage"
DEFAULT_STATE_DIR = Path(".local-stack") / "functions-host"


@dataclass
class HostOptions:
    """Everything the host needs: the app directory, its settings, and a few knobs."""

    app_dir: Path
    settings: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    port: int = 7071
    state_dir: Path | None = None  # default: <app dir>/.local-stack/functions-host
    host_id: str | None = None  # default: AzureFunctionsWebHost__hostid, else from app_dir
    blob_scan_seconds: float = 2.0
    blob_retry_seconds: float = 0.5
    blob_parallelism: int | None = None  # default: host.json, else 4
    grace_seconds: float = 10.0
    # Core Tools lets variables already in the environment win over the settings file;
    # the test harness, which builds the environment itself, overrides instead.
    override_environment: bool = False


class HostRuntime:
    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.app_dir = options.app_dir.resolve()
        self.state_dir = (options.state_dir or self.app_dir / DEFAULT_STATE_DIR).resolve()
        self.stopping = threading.Event()
        self.invoker = Invoker()
        self.app: IndexedApp | None = None
        self.keys: host_keys.HostKeys | None = None
        self.host_id = ""
        self.blob_listeners: list[BlobTriggerListener] = []
        self.blob_events: BlobEventTriggers | None = None
        self.timers: dict[str, TimerRunner] = {}
        self.front: HttpFront | None = None
        self._started_at = time.monotonic()
        self._stopped = False

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Load the app and start every trigger; raise ``HostStartError`` if anything is off."""
        try:
            self._start()
        except BaseException:
            self.stop(grace_seconds=0)
            raise

    def _start(self) -> None:
        options = self.options
        apply_settings(options.settings, override=options.override_environment)
        environ = os.environ
        host_json = read_host_json(self.app_dir)
        self.host_id = (
            options.host_id or environ.get(HOST_ID_SETTING) or default_host_id(self.app_dir)
        ).lower()[:32]
        self.app = app = load_app(self.app_dir, environ)
        self.keys = host_keys.with_overrides(host_keys.load_or_create(self.state_dir), environ)

        blob_specs = app.of_type(BlobSpec)
        timer_specs = app.of_type(TimerSpec)
        host_storage = self._host_storage(required=bool(blob_specs))
        parallelism = options.blob_parallelism or host_json.blob_parallelism or 4
        problems: list[str] = []
        event_connections: dict[str, StorageConnection] = {}
        for blob_spec in blob_specs:
            try:
                connection = resolve_connection(blob_spec.connection, environ)
                assert host_storage is not None
                if is_event_grid(blob_spec):
                    event_connections[blob_spec.name] = connection
                    continue
                self.blob_listeners.append(
                    BlobTriggerListener(
                        blob_spec,
                        connection=connection,
                        host_storage=host_storage,
                        invoker=self.invoker,
                        stop=self.stopping,
                        scan_seconds=options.blob_scan_seconds,
                        max_attempts=host_json.blob_max_attempts,
                        retry_seconds=options.blob_retry_seconds,
                        parallelism=parallelism,
                    )
                )
            except HostStartError as error:
                problems.append(f"function '{blob_spec.name}': {error}")
        if problems:
            raise HostStartError("blob triggers cannot start:\n" + "\n".join(problems))
        if event_connections:
            host_connection = resolve_connection(HOST_STORAGE_SETTING, environ)
            self.blob_events = BlobEventTriggers(
                [spec for spec in blob_specs if spec.name in event_connections],
                connections=event_connections,
                queue=host_connection.queue(queue_name(self.host_id)),
                invoker=self.invoker,
                stop=self.stopping,
                poll_seconds=options.blob_scan_seconds,
                max_attempts=host_json.blob_max_attempts,
                retry_seconds=options.blob_retry_seconds,
                parallelism=parallelism,
            )

        now = utc_now()
        for timer_spec in timer_specs:
            wanted = timer_spec.use_monitor
            if wanted is None:
                wanted = monitor_by_default(timer_spec, now)
            monitor = None
            if wanted and host_storage is not None:
                monitor = ScheduleMonitor(host_storage, timer_spec.function_id)
            elif wanted:
                log.warning(
                    "Timer 'Functions.%s' runs unmonitored: %s is not set",
                    timer_spec.name,
                    HOST_STORAGE_SETTING,
                )
            self.timers[timer_spec.name] = TimerRunner(
                timer_spec, invoker=self.invoker, stop=self.stopping, monitor=monitor
            )

        self.front = HttpFront(
            host=options.host,
            port=options.port,
            route_prefix=host_json.route_prefix,
            http_functions=app.of_type(HttpSpec),
            eventgrid_functions=app.of_type(EventGridSpec),
            blob_events=self.blob_events,
            keys=self.keys,
            invoker=self.invoker,
            status=self.status,
            run_function=self._run_function,
        )
        if self.blob_events is not None:
            self.blob_events.start()
        self.front.start()
        for listener in self.blob_listeners:
            listener.start()
        for runner in self.timers.values():
            runner.start()
        self._started_at = time.monotonic()
        log.info(
            "Host started (id %s): %d function(s) from %s, listening on %s",
            self.host_id,
            len(app.functions),
            app.script,
            self.front.base_url,
        )

    def _host_storage(self, *, required: bool) -> HostStorage | None:
        environ = os.environ
        configured = any(
            name == HOST_STORAGE_SETTING or name.startswith(HOST_STORAGE_SETTING + "__")
            for name in environ
        )
        if not configured:
            if required:
                raise HostStartError(
                    f"the app has blob triggers, which keep receipts in the host's storage: "
                    f"set {HOST_STORAGE_SETTING} (a connection string, or "
                    f"{HOST_STORAGE_SETTING}__accountName / __blobServiceUri)"
                )
            return None
        connection = resolve_connection(HOST_STORAGE_SETTING, environ)
        storage = HostStorage(connection.blob_service(), self.host_id)
        try:
            storage.ensure()
        except Exception as error:
            raise HostStartError(
                f"cannot reach the host's storage ({HOST_STORAGE_SETTING}, "
                f"{connection.blob_url}): {error}"
            ) from error
        return storage

    def stop(self, grace_seconds: float | None = None) -> bool:
        """Stop triggers, give in-flight invocations the grace period, close the server.

        Returns False if some invocations were still running when the grace period
        ended (they are abandoned: a blob without a receipt is processed again later).
        """
        if self._stopped:
            return True
        self._stopped = True
        grace = self.options.grace_seconds if grace_seconds is None else grace_seconds
        self.stopping.set()
        if self.front is not None:
            self.front.drain()
        for listener in self.blob_listeners:
            listener.stop(wait=False)
        if self.blob_events is not None:
            self.blob_events.stop(wait=False)
        idle = self.invoker.wait_idle(grace)
        if not idle:
            log.warning(
                "Abandoning %d invocation(s) still running after the %gs grace period",
                self.invoker.in_flight,
                grace,
            )
        for runner in self.timers.values():
            runner.join(timeout=1)
        if self.front is not None:
            self.front.close()
            log.info("Host stopped")
        return idle

    # --- introspection ---------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.front is None:
            raise RuntimeError("the host is not started")
        return self.front.base_url

    def status(self) -> dict[str, Any]:
        blob_triggers = {}
        for listener in self.blob_listeners:
            stats = listener.stats
            blob_triggers[listener.spec.name] = {
                "source": "LogsAndContainerScan",
                "container": listener.spec.container,
                "scans": stats.scans,
                "inFlight": listener.in_flight,
                "invocations": stats.invocations,
                "succeeded": stats.succeeded,
                "failedAttempts": stats.failed_attempts,
                "poisoned": stats.poisoned,
            }
        if self.blob_events is not None:
            for name in sorted(self.blob_events.functions):
                events = self.blob_events.stats[name]
                blob_triggers[name] = {
                    "source": "EventGrid",
                    "container": self.blob_events.container(name),
                    "queue": self.blob_events.queue.name,
                    "received": events.received,
                    "queued": events.queued,
                    "ignored": events.ignored,
                    "inFlight": self.blob_events.in_flight(name),
                    "invocations": events.invocations,
                    "succeeded": events.succeeded,
                    "failedAttempts": events.failed_attempts,
                    "dropped": events.dropped,
                    "poisoned": events.poisoned,
                }
        timers = {}
        for name, runner in self.timers.items():
            timer_stats = runner.stats
            timers[name] = {
                "schedule": runner.spec.schedule.expression,
                "runs": timer_stats.runs,
                "skipped": timer_stats.skipped,
                "running": timer_stats.running,
                "next": timer_stats.next.isoformat() if timer_stats.next else None,
            }
        return {
            "id": self.host_id,
            "state": "Stopping" if self.stopping.is_set() else "Running",
            "version": "local",
            "processUptime": int((time.monotonic() - self._started_at) * 1000),
            "functions": [spec.name for spec in self.app.functions] if self.app else [],
            "invocations": {"total": self.invoker.total, "inFlight": self.invoker.in_flight},
            "blobTriggers": blob_triggers,
            "timers": timers,
            "time": dt.datetime.now(dt.UTC).isoformat(),
        }

    def describe_functions(self) -> str:
        """The function list Core Tools prints at start, with URLs for HTTP functions."""
        if self.app is None or self.front is None:
            return ""
        lines = ["Functions:", ""]
        prefix = f"/{self.front.route_prefix}" if self.front.route_prefix else ""
        for spec in self.app.functions:
            if isinstance(spec, HttpSpec):
                methods = ",".join(sorted(spec.methods)) if len(spec.methods) < 8 else "*"
                route = spec.route.template.strip("/")
                lines.append(
                    f"        {spec.name}: [{methods}] {self.base_url}{prefix}/{route}"
                    f" ({spec.auth_level})"
                )
            elif isinstance(spec, BlobSpec) and is_event_grid(spec):
                lines.append(
                    f"        {spec.name}: blobTrigger (EventGrid) {spec.container}/{spec.pattern} "
                    f"on {spec.connection}: {self.base_url}/runtime/webhooks/blobs"
                    f"?functionName={spec.function_id}"
                )
            elif isinstance(spec, BlobSpec):
                lines.append(
                    f"        {spec.name}: blobTrigger {spec.container}/{spec.pattern} "
                    f"on {spec.connection}"
                )
            elif isinstance(spec, TimerSpec):
                lines.append(f"        {spec.name}: timerTrigger '{spec.schedule.expression}'")
            else:
                lines.append(
                    f"        {spec.name}: {spec.trigger_type} "
                    f"{self.base_url}/runtime/webhooks/eventgrid?functionName={spec.name}"
                )
        return "\n".join(lines) + "\n"

    def _run_function(self, name: str) -> tuple[int, str]:
        """``POST /admin/functions/NAME``: run a timer function now."""
        if self.app is None or name not in [spec.name for spec in self.app.functions]:
            return 404, f"No function named '{name}'."
        runner = self.timers.get(name)
        if runner is None:
            return 400, f"Only timer functions can be run this way; '{name}' is not one."
        if not runner.run_now(reason="admin API"):
            return 409, f"'{name}' is already running."
        return 202, ""
