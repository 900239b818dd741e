"""``Services``: the ports a pipeline service works through, with settings and a clock.

The ports themselves are small Protocols owned by the domain (``azureml``,
``ledger``, ``storage``, ``smoke.Scorer``, ``events.EventPublisher``,
``telemetry.Telemetry``); the
composition root (``shared.composition``) fills this bundle with adapters on
Azure SDKs, and tests fill it with fakes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from shared.domain.azureml import AzureML
from shared.domain.events import DisabledPublisher, EventPublisher
from shared.domain.ledger import Ledger
from shared.domain.settings import Settings
from shared.domain.smoke import Scorer
from shared.domain.storage import DatasetStore
from shared.domain.telemetry import NoTelemetry, Telemetry


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    settings: Settings
    ledger: Ledger
    store: DatasetStore  # the dataset container (uploads; the app only reads it)
    work: DatasetStore  # the work container (the app's reports and parts)
    azureml: AzureML
    scorer: Scorer
    publisher: EventPublisher = field(default_factory=DisabledPublisher)
    now: Callable[[], dt.datetime] = field(default=utc_now)
    telemetry: Telemetry = field(default_factory=NoTelemetry)
