"""The app's liveness answer, shared by the health route and its tests."""

from __future__ import annotations

from typing import Any

SERVICE = "finetune-autopilot"


def health() -> dict[str, Any]:
    """What ``GET /api/health`` answers while the app is up.

    Deliberately touches no setting and no connection for now: checking that
    the run ledger is reachable belongs here once the ledger exists.
    """
    return {"status": "ok", "service": SERVICE}
