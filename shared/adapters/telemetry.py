"""Telemetry on OpenTelemetry, exported to Application Insights (azure-monitor-opentelemetry).

``configure(env)`` runs ``configure_azure_monitor`` once per process and
returns the ``Telemetry`` port on it. Only the composition root calls it, on
the first trigger invocation, and only when ``APPLICATIONINSIGHTS_CONNECTION_STRING``
is set: importing this module is what loads OpenTelemetry.

Two processors go in front of Azure Monitor's exporters:

- ``RunSpans`` puts the run id bound by ``span(..., run_id=...)`` (a context
  variable, else the parent span's ``run.id``) on every span started inside,
  the SDKs' own included (Azure SDK calls, HTTP requests), and scrubs each
  finished span;
- ``RunLogs`` does the same for every log record.

Scrubbing (``scrub``) replaces what looks like a secret: SAS signatures
(``sig=``), ``AccountKey=`` and other connection-string secrets, bearer
tokens, function keys in a ``code=`` parameter or a key header, and long
random-looking tokens. It is defence in depth: the app puts no secret in
telemetry in the first place (``shared.domain.telemetry``).

``TELEMETRY_EXPORT_FILE`` (for tests) adds, through the same setup, exporters
that write every span, log record and metric as a JSON line to that file, so
a test can read what the host process exported.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, Status

from shared.domain.telemetry import RUN_ID, Attribute

CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
EXPORT_FILE_SETTING = "TELEMETRY_EXPORT_FILE"
INSTRUMENTATION_NAME = "finetune-autopilot"
REDACTED = "[REDACTED]"

# The run bound to the current context by ``span(..., run_id=...)`` or ``annotate``.
_run_id: ContextVar[str] = ContextVar("autopilot_run_id", default="")

# -- scrubbing ---------------------------------------------------------------------------

_SECRET_PATTERNS = (
    # A SAS signature, a function key in a query string.
    re.compile(r"(?i)([?&;]?\b(?:sig|code)=)[^&\s\"'<>]+"),
    # Connection-string secrets.
    re.compile(
        r"(?i)(\b(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd)=)[^;\s\"']+"
    ),
    # Bearer and SharedKey authorization values.
    re.compile(r"(?i)(\b(?:Bearer|SharedKey)\s+)[^\s\"',]+"),
    # Key headers, as headers or as dumped mappings.
    re.compile(
        r"(?i)(\b(?:x-functions-key|api-key|aeg-sas-key|aeg-sas-token|x-identity-header|"
        r"ocp-apim-subscription-key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"
    ),
)
# Candidates for a random-looking token: long runs of base64 / base64url characters.
_TOKEN = re.compile(r"[A-Za-z0-9+/=_.-]{16,}")
_TOKEN_PARTS = re.compile(r"[/_.-]")
_MIN_RANDOM_PART = 16


def _random_looking(token: str) -> bool:
    """A part of 16+ characters mixing upper case, lower case and digits (a key, a
    signature, a JWT segment), or base64 padding: not a name, a hash or a path."""
    if token.endswith("=") and len(token.rstrip("=")) >= 20:
        return True
    for part in _TOKEN_PARTS.split(token):
        if (
            len(part) >= _MIN_RANDOM_PART
            and any(c.isupper() for c in part)
            and any(c.islower() for c in part)
            and any(c.isdigit() for c in part)
        ):
            return True
    return False


def scrub(text: str) -> str:
    """``text`` with anything that looks like a secret replaced by ``[REDACTED]``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return _TOKEN.sub(lambda m: REDACTED if _random_looking(m.group(0)) else m.group(0), text)


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return tuple(_scrub_value(v) for v in value)
    return value


def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {key: _scrub_value(value) for key, value in (attributes or {}).items()}


# -- processors --------------------------------------------------------------------------


def _span_run_id(span: trace.Span) -> str:
    """The run id of ``span``: for work an SDK hands to another thread with the
    OpenTelemetry context (azure-core does) but without the app's context variable."""
    attributes = getattr(span, "attributes", None) or {}
    return str(attributes.get(RUN_ID) or "")


class RunSpans(SpanProcessor):
    """The bound run id on every span started; every finished span scrubbed before the
    processors after this one (the exporters) see it."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        run_id = _run_id.get() or _span_run_id(trace.get_current_span(parent_context))
        if run_id and not (span.attributes or {}).get(RUN_ID):
            span.set_attribute(RUN_ID, run_id)

    def on_end(self, span: ReadableSpan) -> None:
        # A finished span is read-only by API; the SDK hands every processor the same
        # ReadableSpan, so replacing its fields here is what the exporters after see.
        from opentelemetry.sdk.trace import Event

        span._name = scrub(span.name)
        span._attributes = scrub_attributes(span.attributes)
        span._events = tuple(
            Event(e.name, scrub_attributes(e.attributes), e.timestamp) for e in span.events
        )
        if span.status.description:
            span._status = Status(span.status.status_code, scrub(span.status.description))


class RunLogs(LogRecordProcessor):
    """The bound run id on every log record; every record scrubbed before export."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        attributes = scrub_attributes(record.attributes)
        run_id = _run_id.get() or _span_run_id(trace.get_current_span())
        if run_id and not attributes.get(RUN_ID):
            attributes[RUN_ID] = run_id
        if isinstance(record.body, str):
            record.body = scrub(record.body)
        record.attributes = attributes

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


# -- the port ----------------------------------------------------------------------------


class OpenTelemetry:
    """The ``Telemetry`` port on the global OpenTelemetry providers. A span with a
    ``faas.trigger`` attribute (a trigger invocation) is a SERVER span: a request in
    Application Insights; the others are internal."""

    def __init__(self) -> None:
        self._tracer = trace.get_tracer(INSTRUMENTATION_NAME)
        self._meter = metrics.get_meter(INSTRUMENTATION_NAME)
        self._counters: dict[str, metrics.Counter] = {}
        self._histograms: dict[str, metrics.Histogram] = {}
        self._lock = threading.Lock()

    def span(
        self, name: str, run_id: str = "", **attributes: Attribute
    ) -> AbstractContextManager[None]:
        return self._span(name, run_id, attributes)

    @contextmanager
    def _span(self, name: str, run_id: str, attributes: dict[str, Attribute]) -> Iterator[None]:
        token = _run_id.set(run_id or _run_id.get())
        if run_id:
            attributes[RUN_ID] = run_id
        kind = SpanKind.SERVER if "faas.trigger" in attributes else SpanKind.INTERNAL
        try:
            with self._tracer.start_as_current_span(name, kind=kind, attributes=attributes):
                yield
        finally:
            _run_id.reset(token)  # also ends a binding made by ``annotate`` inside

    def annotate(self, run_id: str = "", **attributes: Attribute) -> None:
        span = trace.get_current_span()
        if run_id:
            _run_id.set(run_id)
            span.set_attribute(RUN_ID, run_id)
        span.set_attributes(attributes)

    def count(self, name: str, **attributes: Attribute) -> None:
        with self._lock:
            counter = self._counters.get(name)
            if counter is None:
                counter = self._counters[name] = self._meter.create_counter(name)
        counter.add(1, attributes)

    def record(self, name: str, value: float, **attributes: Attribute) -> None:
        with self._lock:
            histogram = self._histograms.get(name)
            if histogram is None:
                unit = "s" if name.endswith("duration") else ""
                histogram = self._histograms[name] = self._meter.create_histogram(name, unit=unit)
        histogram.record(value, attributes)


# -- setup -------------------------------------------------------------------------------

_setup_lock = threading.Lock()
_configured: OpenTelemetry | None = None


def configure(env: Mapping[str, str]) -> OpenTelemetry:
    """Set up exporting to the Application Insights resource of
    ``APPLICATIONINSIGHTS_CONNECTION_STRING`` (with Entra ID authentication when
    ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` says so, read by the exporter),
    once per process; later calls return the same port."""
    global _configured  # noqa: PLW0603 - OpenTelemetry's providers are process-wide
    with _setup_lock:
        if _configured is None:
            from azure.monitor.opentelemetry import configure_azure_monitor

            span_processors: list[Any] = [RunSpans()]
            log_processors: list[Any] = [RunLogs()]
            readers: list[Any] = []
            export_file = env.get(EXPORT_FILE_SETTING, "").strip()
            if export_file:
                _add_file_export(export_file, span_processors, log_processors, readers)
            configure_azure_monitor(
                connection_string=env[CONNECTION_SETTING],
                # Live Metrics streams every span to another endpoint as it happens.
                enable_live_metrics=False,
                span_processors=span_processors,
                log_record_processors=log_processors,
                metric_readers=readers,
            )
            _configured = OpenTelemetry()
        return _configured


class _Lines:
    """An append-only file of JSON lines, shared by the test exporters."""

    def __init__(self, path: str, kind: str) -> None:
        self._path, self._kind = path, kind

    _lock = threading.Lock()

    def write(self, text: str) -> int:
        line = json.dumps({"signal": self._kind, **json.loads(text)}) + "\n"
        with self._lock, open(self._path, "a", encoding="utf-8") as out:
            out.write(line)
        return len(text)

    def flush(self) -> None:
        return None


def _add_file_export(
    path: str, span_processors: list[Any], log_processors: list[Any], readers: list[Any]
) -> None:
    """Exporters writing JSON lines to ``path``, synchronous for spans and log records
    (a test reads the file while the host runs), every second for metrics."""
    from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics.export import (
        ConsoleMetricExporter,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

    spans = ConsoleSpanExporter(
        out=_Lines(path, "span"),  # type: ignore[arg-type]
        formatter=lambda span: span.to_json(indent=None),
    )
    logs = ConsoleLogRecordExporter(
        out=_Lines(path, "log"),  # type: ignore[arg-type]
        formatter=lambda record: record.to_json(indent=None),
    )
    metric_lines = ConsoleMetricExporter(
        out=_Lines(path, "metrics"),  # type: ignore[arg-type]
        formatter=lambda data: data.to_json(indent=None),
    )
    span_processors.append(SimpleSpanProcessor(spans))
    log_processors.append(SimpleLogRecordProcessor(logs))
    readers.append(PeriodicExportingMetricReader(metric_lines, export_interval_millis=1000))
