"""The composition root: the one place that wires adapters to the ports.

``services()`` is cached: the first trigger invocation builds everything, later
ones reuse it. Nothing here runs at import time, and building is cheap: an
adapter whose SDK is costly to load (Azure ML, Event Grid) builds its client on
first use, so a route that never reaches Azure ML never imports it. Tests build
``Services`` (``shared.domain.ports``) with their own ports instead.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from shared.domain.events import DisabledPublisher
from shared.domain.ports import Services
from shared.domain.settings import DATASET_CONNECTION, LEDGER_CONNECTION, load_settings


def build(env: Mapping[str, str]) -> Services:
    """Everything wired to real Azure (or whatever the settings point at)."""
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
    )


@functools.cache
def services() -> Services:
    return build(os.environ)
