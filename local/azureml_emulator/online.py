"""Managed online endpoints and deployments, with ARM long-running operations.

Create, update and delete answer at once with an ``Azure-AsyncOperation``
header (and ``Location`` for deletes); the resource's ``provisioningState``
moves on with the emulated clock (``Timings.provisioning_seconds``) and the
operation status follows it, which is what the SDK's ``LROPoller`` polls.

Rules enforced as the service does: names (3-32 letters, digits, hyphens,
starting with a letter), a deployment needs a Succeeded endpoint and an
existing model, traffic names existing Succeeded deployments and sums to 0 or
100, a deployment still taking traffic cannot be deleted.

Endpoint names are unique per Azure region, across every subscription; the
emulator is one region, so a name held by an endpoint in another workspace, or
reserved through the admin API as if another customer held it, is refused with
the service's synchronous 400 ``UserError``. Deployment quota is checked
synchronously too: an injected quota fault refuses the PUT with the nested
``InferencingClientCreateDeploymentFailed`` body Azure answers, and nothing is
created.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from typing import Any

from local.azureml_emulator import operations
from local.azureml_emulator.arm import (
    ENDPOINT_NAME,
    LOCATION,
    ArmError,
    Resource,
    bad_request,
    check_name,
    mfe_user_error,
    not_found,
    require,
)
from local.azureml_emulator.faults import DeploymentFault
from local.azureml_emulator.http import Request, Response, Router
from local.azureml_emulator.state import Deployment, Endpoint, World
from local.azureml_emulator.workspace import (
    REGISTRY_MODEL,
    WS,
    parse_asset_ref,
    workspace_of,
    ws_key,
)

ENDPOINT = WS + r"/onlineEndpoints/(?P<endpoint>[^/]+)"
DEPLOYMENT = ENDPOINT + r"/deployments/(?P<deployment>[^/]+)"


class OnlineRoutes:
    def __init__(
        self,
        world: World,
        base_url: str,
        deployment_fault: Callable[[str], DeploymentFault | None],
    ) -> None:
        self.world = world
        self.base_url = base_url.rstrip("/")
        # The injected fault for a deployment name: quota refusal or provisioning failure.
        self.deployment_fault = deployment_fault

    def register(self, router: Router) -> None:
        router.add("PUT", ENDPOINT, self.put_endpoint)
        router.add("GET", ENDPOINT, self.get_endpoint)
        router.add("DELETE", ENDPOINT, self.delete_endpoint)
        router.add("POST", ENDPOINT + r"/listKeys", self.list_keys)
        router.add("PUT", DEPLOYMENT, self.put_deployment)
        router.add("GET", DEPLOYMENT, self.get_deployment)
        router.add("DELETE", DEPLOYMENT, self.delete_deployment)
        router.add("GET", ENDPOINT + r"/deployments", self.list_deployments)
        router.add("POST", DEPLOYMENT + r"/getLogs", self.get_logs)

    # -- endpoints -------------------------------------------------------------------

    def put_endpoint(self, request: Request) -> Response:
        name = request.params["endpoint"]
        check_name("endpoint", name, ENDPOINT_NAME)
        body = request.json()
        props = require(body, "properties")
        auth_mode = require(body, "properties", "authMode")
        if str(auth_mode).lower() not in {"key", "aadtoken", "amltoken"}:
            raise bad_request(f"Unsupported authMode '{auth_mode}'.")
        ws = workspace_of(request)
        key = (ws.id.lower(), name.lower())
        with self.world.lock:
            endpoint = self.world.endpoints.get(key)
            traffic = props.get("traffic") or {}
            if endpoint is None:
                self._check_name_available(key, name)
            if endpoint is not None and endpoint.deleting:
                raise ArmError(409, "Conflict", f"Endpoint '{name}' is being deleted.")
            if endpoint is not None:
                self._check_traffic(ws.id.lower(), name, traffic)
                endpoint.traffic = {k: int(v) for k, v in traffic.items()}
                endpoint.resource.properties.update(
                    {
                        "description": props.get("description"),
                        "traffic": dict(endpoint.traffic),
                        "provisioningState": "Updating",
                    }
                )
                endpoint.resource.extra["tags"] = body.get("tags") or {}
                endpoint.phase_started = self.world.clock.now()
                status = 200
            else:
                if traffic:
                    raise bad_request("A new endpoint has no deployments to send traffic to.")
                endpoint = Endpoint(
                    resource=Resource(
                        type="Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
                        id=f"{ws.id}/onlineEndpoints/{name}",
                        name=name,
                        properties={
                            "description": props.get("description"),
                            "properties": props.get("properties") or {},
                            "authMode": auth_mode,
                            "traffic": {},
                            "scoringUri": f"{self.base_url}/online/{name}/score",
                            "swaggerUri": f"{self.base_url}/online/{name}/swagger.json",
                            "provisioningState": "Creating",
                            "publicNetworkAccess": "Enabled",
                        },
                        created=self.world.clock.now(),
                        extra={
                            "location": body.get("location") or LOCATION,
                            "kind": "Managed",
                            "tags": body.get("tags") or {},
                            "identity": {
                                "type": "SystemAssigned",
                                "principalId": str(uuid.uuid4()),
                                "tenantId": str(uuid.uuid4()),
                            },
                        },
                    ),
                    keys=(secrets.token_urlsafe(24), secrets.token_urlsafe(24)),
                    phase_started=self.world.clock.now(),
                )
                self.world.endpoints[key] = endpoint
                status = 201
            operation = operations.start(
                self.world, ("endpoint", ws.id.lower(), name.lower()), "create"
            )
        return Response(
            status,
            endpoint.resource.envelope(),
            operations.headers(self.base_url, ws.id, operation, speed=self.world.clock.speed),
        )

    def get_endpoint(self, request: Request) -> Response:
        with self.world.lock:
            return Response(200, self._endpoint(request).resource.envelope())

    def delete_endpoint(self, request: Request) -> Response:
        ws = workspace_of(request)
        with self.world.lock:
            endpoint = self._endpoint(request)
            endpoint.deleting = True
            endpoint.resource.properties["provisioningState"] = "Deleting"
            endpoint.phase_started = self.world.clock.now()
            operation = operations.start(
                self.world, ("endpoint", ws.id.lower(), endpoint.resource.name.lower()), "delete"
            )
        return Response(
            202,
            None,
            operations.headers(
                self.base_url, ws.id, operation, speed=self.world.clock.speed, location=True
            ),
        )

    def list_keys(self, request: Request) -> Response:
        with self.world.lock:
            endpoint = self._endpoint(request)
            primary, secondary = endpoint.keys
        return Response(200, {"primaryKey": primary, "secondaryKey": secondary})

    # -- deployments -----------------------------------------------------------------

    def put_deployment(self, request: Request) -> Response:
        ws = workspace_of(request)
        name = request.params["deployment"]
        check_name("deployment", name, ENDPOINT_NAME)
        body = request.json()
        props = require(body, "properties")
        model = str(require(body, "properties", "model"))
        instance_type = str(require(body, "properties", "instanceType"))
        fault = self.deployment_fault(name)
        with self.world.lock:
            endpoint = self._endpoint(request)
            if endpoint.deleting or endpoint.resource.properties["provisioningState"] not in {
                "Succeeded",
                "Updating",
            }:
                state = endpoint.resource.properties["provisioningState"]
                raise ArmError(
                    409,
                    "Conflict",
                    f"Endpoint '{endpoint.resource.name}' is {state}; deployments can be "
                    "created once it has Succeeded.",
                )
            self._check_model(ws.id.lower(), model)
            if fault is not None and fault.quota:
                raise quota_error(instance_type, ws.subscription, fault.message)
            key = (ws.id.lower(), endpoint.resource.name.lower(), name.lower())
            existing = self.world.deployments.get(key)
            if existing is not None and existing.deleting:
                raise ArmError(409, "Conflict", f"Deployment '{name}' is being deleted.")
            sku = body.get("sku") or {}
            properties = {
                "endpointComputeType": "Managed",
                "scaleSettings": {"scaleType": "Default"},
                "appInsightsEnabled": False,
                "egressPublicNetworkAccess": "Enabled",
                **props,
                "provisioningState": "Updating" if existing else "Creating",
            }
            deployment = Deployment(
                resource=Resource(
                    type="Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
                    id=f"{endpoint.resource.id}/deployments/{name}",
                    name=name,
                    properties=properties,
                    created=existing.resource.created if existing else self.world.clock.now(),
                    extra={
                        "location": body.get("location") or LOCATION,
                        "kind": "Managed",
                        "tags": body.get("tags") or {},
                        "sku": {
                            "name": sku.get("name") or "Default",
                            "capacity": int(sku.get("capacity") or 1),
                        },
                    },
                ),
                endpoint=endpoint.resource.name,
                phase_started=self.world.clock.now(),
                model_id=model,
                fail_reason=fault.message if fault is not None else "",
            )
            self.world.deployments[key] = deployment
            operation = operations.start(self.world, ("deployment", *key), "create")
        status = 200 if existing else 201
        return Response(
            status,
            deployment.resource.envelope(),
            operations.headers(self.base_url, ws.id, operation, speed=self.world.clock.speed),
        )

    def get_deployment(self, request: Request) -> Response:
        with self.world.lock:
            return Response(200, self._deployment(request).resource.envelope())

    def get_logs(self, request: Request) -> Response:
        """Container logs: the emulator's deployments log their lifecycle only."""
        with self.world.lock:
            deployment = self._deployment(request)
            state = deployment.resource.properties["provisioningState"]
            lines = [f"Deployment {deployment.resource.name} provisioning: {state}"]
            if state == "Failed":
                lines.append(f"ERROR: {deployment.fail_reason}")
            elif state == "Succeeded":
                lines.append("Model loaded; serving scoring requests.")
        return Response(200, {"content": "\n".join(lines) + "\n"})

    def list_deployments(self, request: Request) -> Response:
        with self.world.lock:
            endpoint = self._endpoint(request)
            prefix = (ws_key(request), endpoint.resource.name.lower())
            found = [d for k, d in self.world.deployments.items() if k[:2] == prefix]
            return Response(200, {"value": [d.resource.envelope() for d in found]})

    def delete_deployment(self, request: Request) -> Response:
        ws = workspace_of(request)
        with self.world.lock:
            deployment = self._deployment(request)
            endpoint = self._endpoint(request)
            if endpoint.traffic.get(deployment.resource.name, 0) > 0:
                raise bad_request(
                    f"Deployment '{deployment.resource.name}' receives "
                    f"{endpoint.traffic[deployment.resource.name]}% of the traffic; "
                    "set its traffic to 0 before deleting it."
                )
            deployment.deleting = True
            deployment.resource.properties["provisioningState"] = "Deleting"
            deployment.phase_started = self.world.clock.now()
            key = (ws.id.lower(), endpoint.resource.name.lower(), deployment.resource.name.lower())
            operation = operations.start(self.world, ("deployment", *key), "delete")
        return Response(
            202,
            None,
            operations.headers(
                self.base_url, ws.id, operation, speed=self.world.clock.speed, location=True
            ),
        )

    def advance(self) -> None:
        """Move endpoints, deployments and their operations on with the clock."""
        with self.world.lock:
            wait = self.world.timings.provisioning_seconds
            for key, deployment in list(self.world.deployments.items()):
                state = deployment.resource.properties["provisioningState"]
                waited = self.world.elapsed(deployment.phase_started)
                if deployment.deleting and waited >= self.world.timings.delete_seconds:
                    del self.world.deployments[key]
                    operations.finish(self.world, ("deployment", *key), "Succeeded")
                elif state in {"Creating", "Updating"} and waited >= wait:
                    if deployment.fail_reason:
                        deployment.resource.properties["provisioningState"] = "Failed"
                        operations.finish(
                            self.world, ("deployment", *key), "Failed", deployment.fail_reason
                        )
                    else:
                        deployment.resource.properties["provisioningState"] = "Succeeded"
                        operations.finish(self.world, ("deployment", *key), "Succeeded")
            for ekey, endpoint in list(self.world.endpoints.items()):
                state = endpoint.resource.properties["provisioningState"]
                waited = self.world.elapsed(endpoint.phase_started)
                if endpoint.deleting and waited >= self.world.timings.delete_seconds:
                    del self.world.endpoints[ekey]
                    for dkey in [k for k in self.world.deployments if k[:2] == ekey]:
                        del self.world.deployments[dkey]
                    operations.finish(self.world, ("endpoint", *ekey), "Succeeded")
                elif state in {"Creating", "Updating"} and waited >= wait:
                    endpoint.resource.properties["provisioningState"] = "Succeeded"
                    operations.finish(self.world, ("endpoint", *ekey), "Succeeded")

    # -- helpers -------------------------------------------------------------------------

    def _endpoint(self, request: Request) -> Endpoint:
        endpoint = self.world.endpoints.get((ws_key(request), request.params["endpoint"].lower()))
        if endpoint is None:
            raise not_found("Online endpoint", request.params["endpoint"])
        return endpoint

    def _check_name_available(self, key: tuple[str, str], name: str) -> None:
        """Endpoint names are regional: refuse one held elsewhere or reserved."""
        held = any(n == key[1] and w != key[0] for (w, n) in self.world.endpoints)
        if held or key[1] in self.world.reserved_endpoint_names:
            raise mfe_user_error(
                f"The specified endpoint name '{name}' is not available. "
                "Endpoint names must be unique within the region."
            )

    def _deployment(self, request: Request) -> Deployment:
        key = (
            ws_key(request),
            request.params["endpoint"].lower(),
            request.params["deployment"].lower(),
        )
        deployment = self.world.deployments.get(key)
        if deployment is None:
            raise not_found("Online deployment", request.params["deployment"])
        return deployment

    def _check_model(self, ws_id: str, model: str) -> None:
        if REGISTRY_MODEL.match(model):
            return
        ref = parse_asset_ref(model)
        if ref is None:
            raise bad_request(f"Model reference '{model}' is not a valid model id.")
        if (ws_id, ref[0].lower(), ref[1]) not in self.world.models:
            raise not_found("Model", f"{ref[0]}:{ref[1]}")

    def _check_traffic(self, ws_id: str, endpoint: str, traffic: dict[str, Any]) -> None:
        total = 0
        for name, weight in traffic.items():
            deployment = self.world.deployments.get((ws_id, endpoint.lower(), name.lower()))
            if deployment is None or deployment.deleting:
                raise bad_request(f"Traffic names deployment '{name}', which does not exist.")
            if not isinstance(weight, int) or not 0 <= weight <= 100:
                raise bad_request(f"Traffic for '{name}' must be an integer from 0 to 100.")
            if weight and deployment.resource.properties["provisioningState"] != "Succeeded":
                raise bad_request(
                    f"Deployment '{name}' is "
                    f"{deployment.resource.properties['provisioningState']}; only Succeeded "
                    "deployments can take traffic."
                )
            total += weight
        if total not in (0, 100):
            raise bad_request(
                f"Traffic weights must sum to 100 (or all be 0); they sum to {total}."
            )


def quota_error(instance_type: str, subscription: str, sentence: str = "") -> ArmError:
    """The synchronous 400 Azure answers a deployment PUT that exceeds quota.

    The reason sits only in ``details[0].message``, as an inference-service
    exception wrapping an RFC 9110 validation problem (MicrosoftLearning
    mslearn-azure-ml issue #30); the top-level message is generic.
    """
    reason = sentence or (
        f"Not enough quota available for {instance_type} in SubscriptionId {subscription}. "
        "Current usage/limit: 0/0. Additional needed: 24 Please see troubleshooting guide, "
        "available here: https://aka.ms/oe-tsg#error-outofquota"
    )
    problem = {
        "errors": {"VmSize": [reason]},
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
    }
    code = "InferencingClientCreateDeploymentFailed"
    return ArmError(
        400,
        "BadRequest",
        "The request is invalid.",
        details=[
            {
                "code": code,
                "message": f"InferencingClient HttpRequestException for {code}: "
                + json.dumps(problem, separators=(",", ":")),
            }
        ],
    )
