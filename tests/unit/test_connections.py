"""Identity-based connection settings, in every form a Function App is given them."""

from __future__ import annotations

import pytest

from shared.adapters.connections import (
    _identity,
    app_credential,
    connection_credential,
)
from shared.domain.errors import SettingsError
from shared.domain.settings import storage_connection


def test_service_uris_account_names_and_the_blob_only_alias() -> None:
    env = {
        "DATASET_STORAGE__blobServiceUri": "https://d.blob.core.windows.net",
        "DATASET_STORAGE__queueServiceUri": "https://d.queue.core.windows.net",
        "AzureWebJobsStorage__serviceUri": "https://h.blob.core.windows.net",
        "AzureWebJobsStorage__tableServiceUri": "https://h.table.core.windows.net",
    }
    assert storage_connection(env, "DATASET_STORAGE", "blob") == (
        "url",
        "https://d.blob.core.windows.net",
    )
    assert (
        storage_connection(env, "AzureWebJobsStorage", "blob")[1]
        == "https://h.blob.core.windows.net"
    )
    assert (
        storage_connection(env, "AzureWebJobsStorage", "table")[1]
        == "https://h.table.core.windows.net"
    )
    named = {"X__accountName": "acct"}
    assert storage_connection(named, "X", "table") == ("url", "https://acct.table.core.windows.net")
    with pytest.raises(SettingsError, match="X__blobServiceUri"):
        storage_connection({}, "X", "blob")


def test_the_user_assigned_identity_is_the_one_named() -> None:
    env = {
        "AZURE_CLIENT_ID": "app-id",
        "DATASET_STORAGE__credential": "managedidentity",
        "DATASET_STORAGE__clientId": "dataset-id",
    }
    assert app_credential(env) is _identity("app-id")
    assert connection_credential(env, "DATASET_STORAGE") is _identity("dataset-id")
    # Without its own clientId, a connection uses the app's identity.
    assert connection_credential(env, "AzureWebJobsStorage") is _identity("app-id")
    assert app_credential({}) is _identity("")


def test_a_credential_kind_other_than_managed_identity_is_refused() -> None:
    with pytest.raises(SettingsError, match="X__credential='secret' is invalid"):
        connection_credential({"X__credential": "secret"}, "X")
