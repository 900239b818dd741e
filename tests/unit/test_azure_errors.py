"""Translating service errors: a 403 says what to assign where; nested details are kept."""

from __future__ import annotations

import json
from typing import Any

import requests
from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from azure.mgmt.core.exceptions import ARMErrorFormat

from shared.adapters.azure_errors import translate
from shared.domain.errors import PermanentError, PermissionDenied, RetryableError

WS = (
    "/subscriptions/0000/resourceGroups/rg-ft/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-ft"
)


def _error(status: int, body: dict[str, object]) -> HttpResponseError:
    """What the SDK's generated operations raise: the ARM error body parsed."""
    # Typed read-only and constructed untyped in azure-core; set here as the transport does.
    response: Any = RestRequestsTransportResponse(  # type: ignore[no-untyped-call]
        request=HttpRequest("PUT", "https://management.azure.com" + WS),
        internal_response=requests.Response(),
    )
    response.status_code, response.reason = status, "Error"
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps(body).encode()  # as if read from the wire
    return HttpResponseError(response=response, error_format=ARMErrorFormat)


def test_a_403_names_the_identity_the_scope_and_the_role_to_assign() -> None:
    scope = WS + "/data/ft-x-training/versions/1"
    denied = _error(
        403,
        {
            "error": {
                "code": "AuthorizationFailed",
                "message": (
                    "The client 'c1d2' with object id 'o3e4' does not have authorization to "
                    "perform action 'Microsoft.MachineLearningServices/workspaces/data/versions/"
                    f"write' over scope '{scope}' or the scope is invalid. If access was "
                    "recently granted, please refresh your credentials."
                ),
            }
        },
    )
    error = translate(denied, "registering data asset ft-x-training:1")
    assert isinstance(error, PermissionDenied) and isinstance(error, PermanentError)
    message = str(error)
    assert "identity c1d2 (object id o3e4)" in message
    assert "'AzureML Data Scientist' (f6c7c914-8db3-469d-8ca1-694a8f32e121)" in message
    assert f"--scope {WS}" in message and "--assignee-object-id o3e4" in message
    assert error.identity == "c1d2" and error.scope == WS


def test_a_403_without_the_usual_text_is_still_permanent_and_says_why() -> None:
    error = translate(_error(403, {"error": {"code": "Forbidden", "message": "no"}}), "reading")
    assert isinstance(error, PermissionDenied) and "AZURE_CLIENT_ID" in str(error)


def test_nested_details_keep_the_real_reason_of_a_400() -> None:
    quota = _error(
        400,
        {
            "error": {
                "code": "BadRequest",
                "message": "The request is invalid.",
                "details": [
                    {
                        "code": "InferencingClientCreateDeploymentFailed",
                        "message": "Not enough quota available for Standard_NC24ads_A100_v4",
                    }
                ],
            }
        },
    )
    error = translate(quota, "creating deployment ep/ft-x")
    assert isinstance(error, PermanentError)
    assert "The request is invalid." in str(error)
    assert "Not enough quota available for Standard_NC24ads_A100_v4" in str(error)


def test_throttling_stays_retryable() -> None:
    error = translate(_error(429, {"error": {"code": "TooManyRequests", "message": "slow"}}), "x")
    assert isinstance(error, RetryableError)
