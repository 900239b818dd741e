"""The timer's sweep: reconcile every run that is due, a few at a time.

The timer is the source of truth: if every Event Grid event were lost, these
sweeps alone would still bring each run to a terminal state. One run's failure
is logged with its run id and does not stop the others.

One listing (``Ledger.active``: a range query whose rows carry the runs) says
which runs are due; each due run is handed over as listed to
``reconcile_listed``, which looks at Azure before leasing, so an idle run (a
job still running) costs one Azure ML request and no ledger request.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
from dataclasses import dataclass

from shared.domain.ports import Services
from shared.pipeline.reconciler import reconcile_listed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    active: int  # runs needing attention
    due: int  # of which due now
    failed: tuple[str, ...]  # run ids whose reconcile raised


def sweep(services: Services) -> SweepResult:
    now = services.now()
    active = services.ledger.active()
    due = [
        s
        for s in active
        if not s.run.active or s.run.next_check_at is None or s.run.next_check_at <= now
    ]
    failed: list[str] = []
    workers = max(1, min(services.settings.reconcile_concurrency, len(due)))
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        # Each reconcile runs in a copy of this context, so its telemetry span is a
        # child of the sweep's (context variables do not cross into pool threads).
        futures = {
            pool.submit(contextvars.copy_context().run, reconcile_listed, services, s): s.run.run_id
            for s in due
        }
        for future in concurrent.futures.as_completed(futures):
            run_id = futures[future]
            try:
                future.result()
            except Exception:  # one run's failure must not stop the sweep
                log.exception("run %s: reconcile failed during the sweep", run_id)
                failed.append(run_id)
    return SweepResult(active=len(active), due=len(due), failed=tuple(sorted(failed)))
