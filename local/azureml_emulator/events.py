"""Azure ML system events, delivered to a webhook like an Event Grid subscription.

Job status changes become ``Microsoft.MachineLearningServices.RunStatusChanged``
events, and a successful finish also ``RunCompleted``, in the Event Grid
schema with Azure's field names. Like Event Grid, delivery is best effort: a
few tries with a short backoff, then the event is dropped (and counted). Every
event is also kept in memory for tests (``GET /_emulator/events``).
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from typing import Any

import requests

from local.azureml_emulator.arm import iso
from local.azureml_emulator.state import Clock

log = logging.getLogger("azureml_emulator.events")

RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"


class EventSink:
    def __init__(self, clock: Clock, webhook_url: str | None = None) -> None:
        self.clock = clock
        self.webhook_url = webhook_url
        self.sent: list[dict[str, Any]] = []
        self.delivered = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._deliver_forever, daemon=True, name="events")
        self._thread.start()

    def run_event(
        self,
        *,
        workspace_id: str,
        experiment_name: str,
        run_id: str,
        run_type: str,
        status: str,
        tags: dict[str, str],
        completed: bool,
    ) -> None:
        """Queue RunStatusChanged (and RunCompleted when ``completed``) for one run."""
        experiment_id = str(uuid.uuid5(uuid.NAMESPACE_URL, workspace_id + "/" + experiment_name))
        data: dict[str, Any] = {
            "experimentId": experiment_id,
            "experimentName": experiment_name,
            "runId": run_id,
            "runType": run_type,
            "runTags": dict(tags),
            "runProperties": {"azureml.runsource": run_type},
        }
        types = [RUN_STATUS_CHANGED] + ([RUN_COMPLETED] if completed else [])
        for event_type in types:
            payload = dict(data)
            if event_type == RUN_STATUS_CHANGED:
                payload["runStatus"] = status
            self._emit(
                {
                    "id": str(uuid.uuid4()),
                    "topic": workspace_id,
                    "subject": f"experiments/{experiment_id}/runs/{run_id}",
                    "eventType": event_type,
                    "eventTime": iso(self.clock.now()),
                    "data": payload,
                    "dataVersion": "2",
                    "metadataVersion": "1",
                }
            )

    def _emit(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.sent.append(event)
        if self.webhook_url:
            self._queue.put(event)

    def _deliver_forever(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            url = self.webhook_url
            if not url:
                continue
            for attempt in range(3):
                try:
                    response = requests.post(
                        url,
                        json=[event],
                        headers={"aeg-event-type": "Notification"},
                        timeout=10,
                    )
                    if response.status_code < 300:
                        with self._lock:
                            self.delivered += 1
                        break
                    log.warning("webhook answered %s to %s", response.status_code, event["id"])
                except requests.RequestException as exc:
                    log.warning("webhook delivery failed (try %d): %s", attempt + 1, exc)
                threading.Event().wait(0.2 * (attempt + 1))
            else:
                with self._lock:
                    self.dropped += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "webhook_url": self.webhook_url,
                "delivered": self.delivered,
                "dropped": self.dropped,
                "events": list(self.sent),
            }

    def close(self) -> None:
        self._queue.put(None)
