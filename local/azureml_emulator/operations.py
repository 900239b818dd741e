"""ARM asynchronous operations: what the SDK's ``LROPoller`` polls.

A long-running request answers at once with ``Azure-AsyncOperation`` (status
JSON: InProgress, Succeeded, Failed, Canceled) and, for deletes and job
cancellation, ``Location`` (202 while in progress, then 200). The resource's
lifecycle code finishes the operation when its state settles.

The polling hint is one emulated second: ``Retry-After`` at normal speed, and
``retry-after-ms`` (which azure-core also honours) once the clock runs fast
enough that a second of wall time would be many emulated ones. Otherwise a
client's poller would wait a wall-clock second per poll whatever the speed.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from local.azureml_emulator.arm import not_found
from local.azureml_emulator.http import Request, Response, Router
from local.azureml_emulator.state import Operation, World
from local.azureml_emulator.workspace import WS

OPERATION = WS + r"/(?P<what>operationStatuses|operationResults)/(?P<op>[^/]+)"
_API = "?api-version=2023-04-01-preview"
POLL_HINT_FLOOR_MS = 10  # never ask clients to poll in a tight loop


def start(world: World, target: tuple[str, ...], action: str) -> Operation:
    """Record a new operation on ``target``; call with ``world.lock`` held.

    A new request supersedes whatever was in flight for the same resource.
    """
    for operation in world.operations.values():
        if operation.target == target and operation.status == "InProgress":
            operation.status = "Canceled"
    operation = Operation(id=uuid.uuid4().hex, target=target, action=action)
    world.operations[operation.id] = operation
    return operation


def finish(world: World, target: tuple[str, ...], status: str, error: str = "") -> None:
    """Settle the in-flight operation on ``target``; call with ``world.lock`` held."""
    for operation in world.operations.values():
        if operation.target == target and operation.status == "InProgress":
            operation.status, operation.error = status, error


def poll_hint(speed: float) -> dict[str, str]:
    """The header telling a poller to come back after one emulated second."""
    wait_ms = max(POLL_HINT_FLOOR_MS, round(1000 / speed))
    if wait_ms >= 1000:
        return {"Retry-After": str(math.ceil(wait_ms / 1000))}
    return {"retry-after-ms": str(wait_ms)}


def headers(
    base_url: str,
    ws_id: str,
    operation: Operation,
    *,
    speed: float,
    async_op: bool = True,
    location: bool = False,
) -> dict[str, str]:
    base = f"{base_url}{ws_id}"
    found = poll_hint(speed)
    if async_op:
        found["Azure-AsyncOperation"] = f"{base}/operationStatuses/{operation.id}{_API}"
    if location:
        found["Location"] = f"{base}/operationResults/{operation.id}{_API}"
    return found


class OperationRoutes:
    def __init__(self, world: World) -> None:
        self.world = world

    def register(self, router: Router) -> None:
        router.add("GET", OPERATION, self.get_operation)

    def get_operation(self, request: Request) -> Response:
        with self.world.lock:
            operation = self.world.operations.get(request.params["op"])
            if operation is None:
                raise not_found("Operation", request.params["op"])
            if request.params["what"].lower() == "operationresults":
                if operation.status == "InProgress":
                    return Response(202, None, poll_hint(self.world.clock.speed))
                return Response(200, None)
            body: dict[str, Any] = {
                "id": request.path,
                "name": operation.id,
                "status": operation.status,
            }
            if operation.error:
                body["error"] = {"code": "DeploymentFailed", "message": operation.error}
            in_progress = operation.status == "InProgress"
            retry = poll_hint(self.world.clock.speed) if in_progress else {}
            return Response(200, body, retry)
