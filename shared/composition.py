"""The composition root: the one place that wires adapters to the ports.

``services()`` is cached: the first trigger invocation builds everything, later
ones reuse it. Nothing here runs at import time, and building is cheap: an
adapter whose SDK is costly to load (Azure ML, Event Grid) builds its client on
first use, so a route that never reaches Azure ML never imports it. Tests build
``Services`` (``shared.domain.ports``) with their own ports instead.

``telemetry()`` is cached the same way and read by every trigger invocation
before anything else: without ``APPLICATIONINSIGHTS_CONNECTION_STRING`` it is
``NoTelemetry`` and imports nothing of OpenTelemetry; with it, the first call
configures the exporters (``shared.adapters.telemetry``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from shared.domain.events import DisabledPublisher
from shared.domain.ports import Services
from shared.domain.settings import DATASET_CONNECTION, LEDGER_CONNECTION, load_settings
from shared.domain.telemetry import NoTelemetry, Telemetry

TELEMETRY_CONNECTION = "APPLICATIONINSIGHTS_CONNECTION_STRING"


def build(env: Mapping[str, str], telemetry: Telemetry | None = None) -> Services:
    """Everything wired to real Azure (or whatever the settings point at); spans and
    metrics go to ``telemetry`` (none by default)."""
    from shared.adapters.azureml import AzureMLWorkspace
    from shared.adapters.blobs import BlobDatasetStore
    from shared.adapters.connections import app_credential, blob_service, table_service
    from shared.adapters.eventgrid import EventGridTopicPublisher
    from shared.adapters.retry import ShortWaitRetries
    from shared.adapters.scoring import HttpScorer
    from shared.adapters.tables import TableLedger

    settings = load_settings(env)
    blobs = blob_service(env, DATASET_CONNECTION)
    return Services(
        settings=settings,
        ledger=TableLedger(table_service(env, LEDGER_CONNECTION), settings.ledger_table),
        store=BlobDatasetStore(blobs.get_container_client(settings.dataset_container)),
        work=BlobDatasetStore(blobs.get_container_client(settings.work_container)),
        azureml=ShortWaitRetries(
            AzureMLWorkspace(
                app_credential(env),
                settings.subscription_id,
                settings.resource_group,
                settings.workspace,
            )
        ),
        scorer=HttpScorer(),
        publisher=(
            EventGridTopicPublisher(
                settings.events_topic_endpoint,
                key=settings.events_topic_key,
                credential=None if settings.events_topic_key else app_credential(env),
                source=settings.events_source,
            )
            if settings.events_topic_endpoint
            else DisabledPublisher()
        ),
        telemetry=telemetry or NoTelemetry(),
    )


def build_telemetry(env: Mapping[str, str]) -> Telemetry:
    """Application Insights if ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, else
    nothing (and no import of OpenTelemetry)."""
    if not env.get(TELEMETRY_CONNECTION, "").strip():
        return NoTelemetry()
    from shared.adapters.telemetry import configure

    return configure(env)


@functools.cache
def telemetry() -> Telemetry:
    return build_telemetry(os.environ)


@functools.cache
def services() -> Services:
    return build(os.environ, telemetry())
