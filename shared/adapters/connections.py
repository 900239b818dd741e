"""Storage connections and the app's identity, resolved the way the Functions host does.

A connection name ``X`` means, in order:

- ``X``: a connection string (``UseDevelopmentStorage=true`` means Azurite's
  default local endpoints);
- ``X__blobServiceUri`` / ``X__tableServiceUri`` / ``X__queueServiceUri``
  (``X__serviceUri``: the older blob-only alias): service URLs, authenticated
  with an identity;
- ``X__accountName``: the account's public-cloud URLs, with an identity.

The identity of an identity-based connection is ``X__clientId`` (a
user-assigned managed identity; ``X__credential`` may only say
``managedidentity``), else the app's identity: ``AZURE_CLIENT_ID`` if set
(a user-assigned identity), else the default chain (system-assigned identity on
Azure, developer credentials or the local identity stand-in elsewhere).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from azure.core.credentials import TokenCredential
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient

from shared.domain.errors import SettingsError
from shared.domain.settings import storage_connection as _connection


@functools.cache
def _identity(client_id: str) -> TokenCredential:
    """``DefaultAzureCredential`` for ``client_id`` (a user-assigned identity), or the
    chain's default identity for "" (AZURE_CLIENT_ID is then read by the chain)."""
    from azure.identity import DefaultAzureCredential

    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()


def app_credential(env: Mapping[str, str]) -> TokenCredential:
    """The app's Azure identity: the user-assigned ``AZURE_CLIENT_ID`` when set."""
    return _identity(env.get("AZURE_CLIENT_ID", "").strip())


def connection_credential(env: Mapping[str, str], name: str) -> TokenCredential:
    """The identity of connection ``name``: ``name__clientId``, else the app's."""
    kind = env.get(f"{name}__credential", "").strip()
    if kind and kind.lower() != "managedidentity":
        raise SettingsError(
            [f"{name}__credential={kind!r} is invalid: managedidentity (or leave it unset)"]
        )
    client_id = env.get(f"{name}__clientId", "").strip()
    return _identity(client_id) if client_id else app_credential(env)


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
        credential=connection_credential(env, name),
        max_single_get_size=_GET_BYTES,
        max_chunk_get_size=_GET_BYTES,
    )


def table_service(env: Mapping[str, str], name: str) -> TableServiceClient:
    kind, value = _connection(env, name, "table")
    if kind == "connection_string":
        return TableServiceClient.from_connection_string(value)
    return TableServiceClient(endpoint=value, credential=connection_credential(env, name))
