"""The composition root: adapters built lazily, on first use, from app settings.

``services()`` is cached: the first trigger invocation builds everything, later
ones reuse it. Nothing here runs at import time. Tests build ``Services`` with
their own ports instead.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from shared.azureml import AzureML
from shared.events import DisabledPublisher, EventPublisher
from shared.ledger import Ledger
from shared.settings import DATASET_CONNECTION, LEDGER_CONNECTION, Settings, load_settings
from shared.smoke import Scorer
from shared.storage import DatasetStore


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    settings: Settings
    ledger: Ledger
    store: DatasetStore
    azureml: AzureML
    scorer: Scorer
    publisher: EventPublisher = field(default_factory=DisabledPublisher)
    now: Callable[[], dt.datetime] = field(default=utc_now)


def build(env: Mapping[str, str]) -> Services:
    """Everything wired to real Azure (or whatever the settings point at)."""
    from shared.adapters.azureml import AzureMLWorkspace
    from shared.adapters.blobs import BlobDatasetStore
    from shared.adapters.connections import app_credential, blob_service, table_service
    from shared.adapters.eventgrid import EventGridTopicPublisher
    from shared.adapters.scoring import HttpScorer
    from shared.adapters.tables import TableLedger

    settings = load_settings(env)
    container = blob_service(env, DATASET_CONNECTION).get_container_client(
        settings.dataset_container
    )
    return Services(
        settings=settings,
        ledger=TableLedger(table_service(env, LEDGER_CONNECTION), settings.ledger_table),
        store=BlobDatasetStore(container),
        azureml=AzureMLWorkspace(
            app_credential(env),
            settings.subscription_id,
            settings.resource_group,
            settings.workspace,
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
    )


@functools.cache
def services() -> Services:
    return build(os.environ)
