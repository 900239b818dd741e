"""Azure ML events from Event Grid: hints that a job changed, never the truth.

``RunCompleted`` and ``RunStatusChanged`` name a run (``data.runId``). Our jobs
are named after their run ids, so the run is looked up directly and
reconciled at once; the reconcile reads the job's real status from the
workspace. Events for unknown runs (pipeline child steps, other experiments)
are ignored with a log line. Late, duplicated or out-of-order events are
harmless: reconcile is idempotent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from shared.domain.ports import Services
from shared.pipeline.reconciler import reconcile

log = logging.getLogger(__name__)

_RETRY_SUFFIX = re.compile(r"-r\d+$")
HANDLED = {
    "microsoft.machinelearningservices.runcompleted",
    "microsoft.machinelearningservices.runstatuschanged",
}


def on_azureml_event(services: Services, event_type: str, data: Mapping[str, Any]) -> str:
    """Reconcile the run an Azure ML event is about; returns what was done, for the log."""
    if event_type.lower() not in HANDLED:
        log.info("ignored event of type %s", event_type)
        return "ignored: not a run event"
    run_id = _RETRY_SUFFIX.sub("", str(data.get("runId") or ""))  # retried jobs: <run>-r<n>
    if not run_id or services.ledger.get(run_id) is None:
        log.info("ignored %s for run %r: not a run of this app", event_type, run_id)
        return "ignored: unknown run"
    run = reconcile(services, run_id)
    hint = data.get("runStatus", "")
    state = run.state.value if run else "?"
    log.info("run %s reconciled after %s (%s): now %s", run_id, event_type, hint, state)
    return f"reconciled: {state}"
