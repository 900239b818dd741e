"""Storage connections resolved the way the Functions host resolves them.

A connection name ``X`` means, in order:

- ``X``: a connection string (``UseDevelopmentStorage=true`` means Azurite's
  default local endpoints);
- ``X__blobServiceUri`` / ``X__tableServiceUri`` / ``X__queueServiceUri``:
  service URLs, authenticated with the app's identity;
- ``X__accountName``: the account's public-cloud URLs, with the app's identity.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Literal

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.errors import SettingsError

Service = Literal["blob", "table", "queue"]


@functools.cache
def app_credential() -> TokenCredential:
    """The app's Azure identity (managed identity on Azure; any local chain elsewhere)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _connection(env: Mapping[str, str], name: str, service: Service) -> tuple[str, str]:
    """("connection_string" | "url", value) for ``name``'s ``service``."""
    direct = env.get(name, "").strip()
    if direct:
        return "connection_string", direct
    uri = env.get(f"{name}__{service}ServiceUri", "").strip()
    if uri:
        return "url", uri
    account = env.get(f"{name}__accountName", "").strip()
    if account:
        return "url", f"https://{account}.{service}.core.windows.net"
    raise SettingsError(
        [
            f"{name} is missing: a storage connection string, or {name}__{service}ServiceUri "
            f"(or {name}__accountName) for identity-based access"
        ]
    )


# Streamed reads fetch 4 MiB at a time (the SDK's first request would take 32).
_GET_BYTES = 4 << 20


def blob_service(env: Mapping[str, str], name: str) -> BlobServiceClient:
    kind, value = _connection(env, name, "blob")
    if kind == "connection_string":
        return BlobServiceClient.from_connection_string(
            value, max_single_get_size=_GET_BYTES, max_chunk_get_size=_GET_BYTES
        )
    return BlobServiceClient(
        account_url=value,
        credential=app_credential(),
        max_single_get_size=_GET_BYTES,
        max_chunk_get_size=_GET_BYTES,
    )


def table_service(env: Mapping[str, str], name: str) -> TableServiceClient:
    kind, value = _connection(env, name, "table")
    if kind == "connection_string":
        return TableServiceClient.from_connection_string(value)
    return TableServiceClient(endpoint=value, credential=app_credential())
