"""ARM asynchronous operations: what the SDK's ``LROPoller`` polls.

A long-running request answers at once with ``Azure-AsyncOperation`` (status
JSON: InProgress, Succeeded, Failed, Canceled) and, for deletes and job
cancellation, ``Location`` (202 while in progress, then 200). The resource's
lifecycle code finishes the operation when its state settles.
"""

from __future__ import annotations

import uuid
from typing import Any

from local.azureml_emulator.arm import not_found
from local.azureml_emulator.http import Request, Response, Router
from local.azureml_emulator.state import Operation, World
from local.azureml_emulator.workspace import WS

OPERATION = WS + r"/(?P<what>operationStatuses|operationResults)/(?P<op>[^/]+)"
_API = "?api-version=2023-04-01-preview"


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


def headers(
    base_url: str,
    ws_id: str,
    operation: Operation,
    *,
    async_op: bool = True,
    location: bool = False,
) -> dict[str, str]:
    base = f"{base_url}{ws_id}"
    found: dict[str, str] = {"Retry-After": "1"}
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
                    return Response(202, None, {"Retry-After": "1"})
                return Response(200, None)
            body: dict[str, Any] = {
                "id": request.path,
                "name": operation.id,
                "status": operation.status,
            }
            if operation.error:
                body["error"] = {"code": "DeploymentFailed", "message": operation.error}
            retry = {"Retry-After": "1"} if operation.status == "InProgress" else {}
            return Response(200, body, retry)
