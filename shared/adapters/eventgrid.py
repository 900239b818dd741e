"""Lifecycle events to an Event Grid custom topic, as CloudEvents 1.0.

The ``EventPublisher`` port's adapter over ``azure-eventgrid``'s
``EventGridPublisherClient`` (basic topic: the events go to
``https://<topic>.<region>-1.eventgrid.azure.net/api/events`` in one batch,
``application/cloudevents-batch+json``). The topic must use the CloudEvents
1.0 input schema. Authentication is the topic's access key (``aeg-sas-key``)
when one is given, else a ``TokenCredential`` (the Function App's managed
identity, which then needs *EventGrid Data Sender* on the topic).

The SDK client is built on the first publish, not at construction, so the
composition root stays cheap and opens no connection until there is
something to send. Errors are translated with :func:`translate`: throttling,
5xx, timeouts and connection failures are retryable; a wrong key (401), a
missing role (403) or an unknown topic (404) are permanent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AzureKeyCredential, TokenCredential
from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent

from shared.adapters.azure_errors import translate
from shared.domain.events import LifecycleEvent

if TYPE_CHECKING:
    from azure.eventgrid import EventGridPublisherClient

DEFAULT_SOURCE = "/finetune-autopilot"


class EventGridTopicPublisher:
    """Publishes lifecycle events to one Event Grid topic, in one batch per call.

    The SDK's own retry policy applies (3 retries, exponential backoff, honouring
    ``Retry-After``) before a failure is raised.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        key: str | None = None,
        credential: TokenCredential | None = None,
        source: str = DEFAULT_SOURCE,
    ) -> None:
        if not key and credential is None:
            raise ValueError("an Event Grid topic needs an access key or a TokenCredential")
        self.endpoint = endpoint
        self.source = source
        self._key = key
        self._credential = credential
        self._client: EventGridPublisherClient | None = None
        self._lock = threading.Lock()

    def publish(self, events: Sequence[LifecycleEvent]) -> None:
        if not events:
            return
        cloud_events = [self.cloud_event(event) for event in events]
        try:
            self._sdk_client().send(cloud_events)
        except AzureError as exc:
            raise translate(
                exc,
                f"publishing {len(events)} event(s) to {self.endpoint}",
                conflict_is_retryable=False,
            ) from exc

    def cloud_event(self, event: LifecycleEvent) -> CloudEvent[dict[str, Any]]:
        return CloudEvent(
            source=self.source,
            type=event.type,
            subject=event.subject,
            data=dict(event.data),
            id=event.id,
            time=event.time,
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _sdk_client(self) -> EventGridPublisherClient:
        with self._lock:
            if self._client is None:
                # Imported here: loading azure.eventgrid costs start-up time in
                # triggers that never publish.
                from azure.eventgrid import EventGridPublisherClient

                credential: AzureKeyCredential | TokenCredential
                if self._key:
                    credential = AzureKeyCredential(self._key)
                else:
                    assert self._credential is not None  # checked in __init__
                    credential = self._credential
                self._client = EventGridPublisherClient(self.endpoint, credential)
            return self._client
