"""The app's liveness answer: the body of a healthy ``GET /api/health``.

``shared.http.api.health`` adds the ledger check (and answers 503 when it fails).
"""

from __future__ import annotations

from typing import Any

SERVICE = "finetune-autopilot"


def health() -> dict[str, Any]:
    """The fields every healthy answer carries; touches no setting or connection."""
    return {"status": "ok", "service": SERVICE}
