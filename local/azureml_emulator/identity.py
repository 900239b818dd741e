"""A stand-in for the platform's managed identity endpoint.

On a Function App, Azure sets ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` and
``DefaultAzureCredential`` (through ``ManagedIdentityCredential``) fetches
tokens from that endpoint. The emulator serves the same protocol (App Service
managed identity, api-version 2019-08-01), so the app's production credential
code runs unchanged locally.

Which identity a token is for follows the query, as msal sends it for
``ManagedIdentityCredential(client_id=...)`` or ``identity_config``:
``client_id``, ``object_id`` (``principal_id``, its older name) or
``mi_res_id``; none of them means the system-assigned identity. Tokens are
opaque strings; the emulator remembers each one's principal so that RBAC deny
rules (``rbac.py``) can single that identity out.
"""

from __future__ import annotations

import secrets
import time

from local.azureml_emulator.arm import ArmError
from local.azureml_emulator.http import Request, Response, Router
from local.azureml_emulator.rbac import Rbac, principal_for_identity

TOKEN_PATH = "/msi/token"
TOKEN_LIFETIME_SECONDS = 3600


class IdentityRoutes:
    def __init__(self, rbac: Rbac) -> None:
        self.secret = secrets.token_urlsafe(16)
        self.rbac = rbac

    def register(self, router: Router) -> None:
        router.add("GET", TOKEN_PATH, self.token, kind="admin")

    def token(self, request: Request) -> Response:
        if request.header("X-IDENTITY-HEADER") != self.secret:
            raise ArmError(401, "Unauthorized", "X-IDENTITY-HEADER is missing or wrong.")
        resource = request.query.get("resource")
        if not resource:
            raise ArmError(400, "BadRequest", "The 'resource' query parameter is required.")
        principal = principal_for_identity(request.query)
        token = "emulator-" + secrets.token_urlsafe(24)
        self.rbac.remember(token, principal)
        expires_on = int(time.time()) + TOKEN_LIFETIME_SECONDS
        return Response(
            200,
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": principal.client_id,
            },
        )
