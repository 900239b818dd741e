"""A log of the requests the emulator answered, with wall-clock times.

Tests need to see *when* a client came back after a throttled reply to tell
whether it honoured ``Retry-After``; nothing else in the emulator keeps time
per request. Every non-admin request (management, run history, scoring) is
recorded with its arrival and reply times (``time.time()``, seconds), its
kind, method, path, status, the ``Retry-After`` it was given and whether an
injected fault answered it. The log is bounded (the oldest entries go first),
and read through ``GET /_emulator/requests`` (``?contains=TEXT`` keeps the
entries whose path contains TEXT, case-insensitively).
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from local.azureml_emulator.http import Request, Response, RouteKind

MAX_ENTRIES = 50_000


class RequestLog:
    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        self._lock = threading.Lock()

    def record(
        self,
        kind: RouteKind | None,
        request: Request,
        response: Response,
        *,
        arrived: float,
        replied: float,
        injected: bool,
    ) -> None:
        entry = {
            "at": arrived,
            "replied": replied,
            "kind": kind,
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "retry_after": response.headers.get("Retry-After"),
            "injected": injected,
        }
        with self._lock:
            self._entries.append(entry)

    def snapshot(self, contains: str = "") -> list[dict[str, Any]]:
        needle = contains.lower()
        with self._lock:
            entries = list(self._entries)
        return [e for e in entries if needle in str(e["path"]).lower()]
