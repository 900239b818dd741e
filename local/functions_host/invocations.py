"""Calling a user function: one log line per invocation, and a count of those in flight.

Every trigger goes through ``Invoker.invoke``, which logs, like the real host's
``Executed 'Functions.X' (Succeeded, Id=..., Duration=...ms)`` line, the outcome,
the trigger detail and the duration, with the traceback when it failed. Shutdown
uses ``wait_idle`` to give in-flight invocations their grace period.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from local.functions_host.indexing import FunctionSpec

log = logging.getLogger("host.invocations")


class Invoker:
    def __init__(self) -> None:
        self._in_flight = 0
        self._total = 0
        self._changed = threading.Condition()

    @property
    def in_flight(self) -> int:
        with self._changed:
            return self._in_flight

    @property
    def total(self) -> int:
        with self._changed:
            return self._total

    def invoke(
        self,
        spec: FunctionSpec,
        arguments: Mapping[str, Any],
        detail: str,
        *,
        describe: Callable[[Any], str] | None = None,
    ) -> Any:
        """Call ``spec``'s function with ``arguments``; log the outcome; re-raise a failure.

        ``describe(result)`` adds what the result means to the log line (an HTTP status).
        """
        invocation_id = uuid.uuid4()
        with self._changed:
            self._in_flight += 1
            self._total += 1
        started = time.perf_counter()
        try:
            result = spec.function(**arguments)
            if inspect.isawaitable(result):
                result = asyncio.run(_await(result))
        except BaseException as error:
            took = (time.perf_counter() - started) * 1000
            log.error(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%.0fms) %s: %s: %s",
                spec.name,
                invocation_id,
                took,
                detail,
                type(error).__name__,
                error,
                exc_info=error,
            )
            raise
        else:
            took = (time.perf_counter() - started) * 1000
            log.info(
                "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%.0fms) %s%s",
                spec.name,
                invocation_id,
                took,
                detail,
                describe(result) if describe else "",
            )
            return result
        finally:
            with self._changed:
                self._in_flight -= 1
                self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no invocation is running; False if some still are after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True


async def _await(awaitable: Any) -> Any:
    return await awaitable
