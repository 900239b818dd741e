"""Workspace-level routes: the workspace itself, its discovery document, data assets and models.

Data assets are references only (``dataUri``: ``https://``, ``wasbs://``,
``abfss://`` or ``azureml://`` paths): registering one never touches storage,
exactly like Azure for a ``uri_file`` path on a blob URL. Models are
only ever created by the emulator itself, when a fine-tuning job completes.

The workspace's ``discoveryUrl`` is how the SDK finds the workspace's data-plane
services (run history among them): ``JobOperations._api_url`` GETs it, without
a token, and takes the ``api`` entry as the base URL of its run-history client.
``AZUREML_DEV_URL_MFE`` does not reach that client, so the emulator answers
its own discovery document, naming itself for every service.
"""

from __future__ import annotations

import re
from typing import Any

from local.azureml_emulator.arm import (
    LOCATION,
    Resource,
    Workspace,
    bad_request,
    check_name,
    not_found,
    require,
)
from local.azureml_emulator.http import Request, Response, Router
from local.azureml_emulator.state import World

WS = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
)
DATA_TYPES = {"uri_file", "uri_folder", "mltable"}
DISCOVERY_PATH = "/discovery"
# The keys of Azure's discovery document (azure.ai.ml.constants.WorkspaceDiscoveryUrlKey).
DISCOVERY_SERVICES = (
    "api",
    "catalog",
    "experimentation",
    "gallery",
    "history",
    "hyperdrive",
    "labeling",
    "modelmanagement",
    "pipelines",
)

# "azureml:name:version", or the ARM id form the SDK sends once it resolved one.
_ASSET_REF = re.compile(
    r"^(?:azureml:(?P<short>[^:/]+):(?P<short_version>[^:/]+)"
    r"|.*/workspaces/(?P<ws>[^/]+)/(?P<kind>data|models)/(?P<name>[^/]+)/versions/(?P<version>[^/]+))$",
    re.IGNORECASE,
)
REGISTRY_MODEL = re.compile(
    r"^azureml://registries/[^/]+/models/[^/]+/versions/[^/]+$", re.IGNORECASE
)


def workspace_of(request: Request) -> Workspace:
    return Workspace(request.params["sub"], request.params["rg"], request.params["ws"])


def ws_key(request: Request) -> str:
    return workspace_of(request).id.lower()


def origin_of(request: Request) -> str:
    """``https://host:port`` as the client reached the emulator (its ``Host`` header)."""
    host = request.header("Host")
    if not host:
        raise bad_request("The request has no Host header.")
    return f"https://{host}"


def parse_asset_ref(ref: str) -> tuple[str, str] | None:
    """``(name, version)`` of a workspace data or model reference, else None."""
    found = _ASSET_REF.match(ref.strip())
    if found is None:
        return None
    if found.group("short"):
        return found.group("short"), found.group("short_version")
    return found.group("name"), found.group("version")


class WorkspaceRoutes:
    def __init__(self, world: World) -> None:
        self.world = world

    def register(self, router: Router) -> None:
        router.add("GET", WS, self.get_workspace)
        # Anonymous like Azure's discovery endpoint (the SDK sends no token): the
        # "admin" kind skips auth and faults, as for the identity endpoint.
        router.add("GET", DISCOVERY_PATH, self.get_discovery, kind="admin")
        router.add("PUT", WS + r"/data/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self.put_data)
        router.add("GET", WS + r"/data/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self.get_data)
        router.add(
            "GET", WS + r"/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", self.get_model
        )
        router.add("GET", WS + r"/models/(?P<name>[^/]+)/versions", self.list_models)

    def get_workspace(self, request: Request) -> Response:
        ws = workspace_of(request)
        return Response(
            200,
            {
                "id": ws.id,
                "name": ws.name,
                "type": "Microsoft.MachineLearningServices/workspaces",
                "location": LOCATION,
                "kind": "Default",
                "properties": {
                    "friendlyName": ws.name,
                    "provisioningState": "Succeeded",
                    "discoveryUrl": origin_of(request) + DISCOVERY_PATH,
                    # Left empty: MLflow is not emulated, and no SDK path used here reads it.
                    "mlFlowTrackingUri": "",
                },
            },
        )

    def get_discovery(self, request: Request) -> Response:
        """The workspace's service URLs: every data-plane service is the emulator itself."""
        origin = origin_of(request)
        services = dict.fromkeys(DISCOVERY_SERVICES, origin)
        return Response(200, {**services, "studio": "https://ml.azure.com"})

    # -- data assets --------------------------------------------------------

    def put_data(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        check_name("data asset", name)
        body = request.json()
        data_uri = require(body, "properties", "dataUri")
        data_type = require(body, "properties", "dataType")
        if data_type not in DATA_TYPES:
            raise bad_request(f"Unsupported dataType '{data_type}'.", code="UserError")
        # Storage URLs (https, and wasbs/abfss as Azure accepts them) or azureml:// paths.
        if not isinstance(data_uri, str) or not re.match(
            r"^(https?|azureml|wasbs?|abfss?)://", data_uri, re.IGNORECASE
        ):
            raise bad_request(
                f"dataUri '{data_uri}' is not a storage URL or azureml:// path.", code="UserError"
            )
        key = (ws_key(request), name.lower(), version)
        with self.world.lock:
            existing = self.world.data.get(key)
            if existing is not None and existing.properties.get("dataUri") != data_uri:
                # Azure refuses to repoint an existing data version.
                raise bad_request(
                    f"Data asset {name}:{version} already exists with a different dataUri; "
                    "asset versions are immutable.",
                    code="UserError",
                )
            resource = existing or Resource(
                type="Microsoft.MachineLearningServices/workspaces/data/versions",
                id=f"{workspace_of(request).id}/data/{name}/versions/{version}",
                name=version,
                properties={
                    "description": None,
                    "tags": {},
                    "properties": {},
                    "isAnonymous": False,
                    "isArchived": False,
                    **body["properties"],
                },
                created=self.world.clock.now(),
            )
            self.world.data[key] = resource
        return Response(200 if existing else 201, resource.envelope())

    def get_data(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        with self.world.lock:
            resource = self.world.data.get((ws_key(request), name.lower(), version))
        if resource is None:
            raise not_found("Data asset", f"{name}:{version}")
        return Response(200, resource.envelope())

    # -- models ---------------------------------------------------------------

    def get_model(self, request: Request) -> Response:
        name, version = request.params["name"], request.params["version"]
        with self.world.lock:
            resource = self.world.models.get((ws_key(request), name.lower(), version))
        if resource is None:
            raise not_found("Model", f"{name}:{version}")
        return Response(200, resource.envelope())

    def list_models(self, request: Request) -> Response:
        name = request.params["name"].lower()
        key = ws_key(request)
        with self.world.lock:
            found = [m for (w, n, _), m in self.world.models.items() if w == key and n == name]
        order = request.query.get("$orderBy", "").lower()
        found.sort(key=lambda m: m.created, reverse=order.endswith("desc"))
        top = request.query.get("$top")
        if top is not None:
            found = found[: int(top)]
        return Response(200, {"value": [m.envelope() for m in found]})


def register_model(
    world: World, ws_id: str, name: str, job_name: str, stand_in: dict[str, Any]
) -> Resource:
    """Register the next version of model ``name`` as the output of ``job_name``.

    Must be called with ``world.lock`` held.
    """
    key_prefix = (ws_id.lower(), name.lower())
    versions = [int(v) for (w, n, v) in world.models if (w, n) == key_prefix and v.isdigit()]
    version = str(max(versions, default=0) + 1)
    resource = Resource(
        type="Microsoft.MachineLearningServices/workspaces/models/versions",
        id=f"{ws_id}/models/{name}/versions/{version}",
        name=version,
        properties={
            "description": f"Fine-tuned by job {job_name} (Azure ML emulator stand-in model).",
            "tags": {"job": job_name},
            "properties": {"azureml.emulator.examples": str(stand_in.get("examples", 0))},
            "flavors": {"hftransformersv2": {"data": {"task": stand_in.get("task", "")}}},
            "modelType": "mlflow_model",
            "modelUri": f"azureml://jobs/{job_name}/outputs/registered_model",
            "jobName": job_name,
            "isAnonymous": False,
            "isArchived": False,
            "stage": "Development",
        },
        created=world.clock.now(),
    )
    world.models[(*key_prefix, version)] = resource
    return resource
