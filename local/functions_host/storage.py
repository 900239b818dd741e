"""Storage connections as the Functions host resolves them, and a minimal Queue client.

A binding's ``connection`` names an app setting. As in the real host it is either a
connection string (``<conn>``) or, for identity-based connections, a group of
settings: ``<conn>__blobServiceUri`` and ``<conn>__queueServiceUri``, or
``<conn>__accountName`` (``AzureWebJobsStorage__accountName`` being the usual one);
``<conn>__clientId`` picks a user-assigned identity.

The host uses two queues (blob trigger poison messages, and the Event Grid blob
trigger's own queue of blobs to process), and the project does not depend on
``azure-storage-queue``; ``StorageQueue`` speaks the Queue REST calls needed
(create, put, peek, get, update, delete), signed with an account SAS made by
azure-storage-blob's public ``generate_account_sas`` or with a bearer token.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote
from xml.sax.saxutils import escape

import requests
from azure.storage.blob import BlobServiceClient, generate_account_sas

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

from local.functions_host.config import HostStartError

log = logging.getLogger("host.storage")

_QUEUE_API_VERSION = "2021-02-12"
_STORAGE_SCOPE = "https://storage.azure.com/.default"
_DEV_ACCOUNT = "devstoreaccount1"
# Azurite's and the legacy emulator's published development key: public, not a secret.
_DEV_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True)
class StorageConnection:
    """One storage account, reached by connection string or by identity."""

    setting: str
    blob_url: str | None
    queue_url: str | None
    connection_string: str | None = None
    account_name: str | None = None
    account_key: str | None = None
    sas_token: str | None = None
    client_id: str | None = None  # identity connections: user-assigned identity

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None

    def blob_service(self) -> BlobServiceClient:
        if self.connection_string is not None:
            return BlobServiceClient.from_connection_string(self.connection_string)
        if self.blob_url is None:
            raise HostStartError(f"connection {self.setting}: no blob service URI")
        return BlobServiceClient(self.blob_url, credential=self._token_credential())

    def queue(self, name: str) -> StorageQueue:
        if self.queue_url is None:
            raise HostStartError(
                f"connection {self.setting}: no queue endpoint (set "
                f"{self.setting}__queueServiceUri for an identity-based connection)"
            )
        return StorageQueue(self, name)

    def _token_credential(self) -> TokenCredential:
        from azure.identity import DefaultAzureCredential

        if self.client_id:
            return DefaultAzureCredential(managed_identity_client_id=self.client_id)
        return DefaultAzureCredential()

    def queue_auth(self) -> tuple[dict[str, str], str]:
        """Headers and query string (SAS) that authorize a Queue request."""
        if self.account_key and self.account_name:
            sas = generate_account_sas(
                self.account_name,
                self.account_key,
                resource_types="sco",
                permission="rwdlacup",
                expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
                services="q",
            )
            return {}, sas
        if self.sas_token:
            return {}, self.sas_token.lstrip("?")
        token = self._token_credential().get_token(_STORAGE_SCOPE).token
        return {"Authorization": f"Bearer {token}"}, ""


def resolve_connection(setting: str, environ: Mapping[str, str]) -> StorageConnection:
    """The storage account behind the connection named ``setting``; raise if unset."""
    connection_string = environ.get(setting, "").strip()
    if connection_string:
        return _from_connection_string(setting, connection_string)
    blob_url = environ.get(f"{setting}__blobServiceUri") or environ.get(f"{setting}__serviceUri")
    queue_url = environ.get(f"{setting}__queueServiceUri")
    account = environ.get(f"{setting}__accountName")
    client_id = environ.get(f"{setting}__clientId") or None
    if account:
        blob_url = blob_url or f"https://{account}.blob.core.windows.net"
        queue_url = queue_url or f"https://{account}.queue.core.windows.net"
    if blob_url:
        return StorageConnection(
            setting,
            blob_url=blob_url.rstrip("/"),
            queue_url=queue_url.rstrip("/") if queue_url else None,
            client_id=client_id,
        )
    raise HostStartError(
        f"storage connection '{setting}' is not configured: set the app setting {setting} "
        f"to a connection string, or {setting}__blobServiceUri (+ {setting}__queueServiceUri) "
        f"or {setting}__accountName for an identity-based connection"
    )


def _from_connection_string(setting: str, text: str) -> StorageConnection:
    parts: dict[str, str] = {}
    for piece in text.split(";"):
        if not piece.strip():
            continue
        key, sep, value = piece.partition("=")
        if not sep:
            raise HostStartError(f"app setting {setting} is not a storage connection string")
        parts[key.strip().lower()] = value.strip()
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        return StorageConnection(
            setting,
            blob_url=f"http://127.0.0.1:10000/{_DEV_ACCOUNT}",
            queue_url=f"http://127.0.0.1:10001/{_DEV_ACCOUNT}",
            connection_string=text,
            account_name=_DEV_ACCOUNT,
            account_key=_DEV_KEY,
        )
    account = parts.get("accountname")
    protocol = parts.get("defaultendpointsprotocol", "https")
    suffix = parts.get("endpointsuffix", "core.windows.net")

    def endpoint(service: str) -> str | None:
        explicit = parts.get(f"{service}endpoint")
        if explicit:
            return explicit.rstrip("/")
        return f"{protocol}://{account}.{service}.{suffix}" if account else None

    blob_url = endpoint("blob")
    if blob_url is None:
        raise HostStartError(
            f"app setting {setting} names no account (AccountName) and no BlobEndpoint"
        )
    return StorageConnection(
        setting,
        blob_url=blob_url,
        queue_url=endpoint("queue"),
        connection_string=text,
        account_name=account,
        account_key=parts.get("accountkey"),
        sas_token=parts.get("sharedaccesssignature"),
    )


class QueueUnreachable(ConnectionError):
    """A Queue request got no answer; the message never carries the request's SAS."""


@dataclass(frozen=True)
class QueueMessage:
    id: str
    text: str
    dequeue_count: int
    pop_receipt: str = ""  # set on dequeued messages: what update and delete need


class StorageQueue:
    """One storage queue; message text is Base64-encoded, as the Functions host writes it."""

    def __init__(self, connection: StorageConnection, name: str, *, timeout: float = 30.0) -> None:
        assert connection.queue_url is not None
        self.connection = connection
        self.name = name
        self.url = f"{connection.queue_url}/{name}"
        self._timeout = timeout

    def create(self) -> None:
        """Create the queue; an existing one is fine."""
        response = self._request("PUT", self.url)
        if response.status_code not in (201, 204, 409):
            _raise(response, f"create queue {self.name}")

    def put(self, text: str) -> None:
        encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
        body = f"<QueueMessage><MessageText>{escape(encoded)}</MessageText></QueueMessage>"
        response = self._request(
            "POST",
            f"{self.url}/messages",
            data=body.encode("utf-8"),
            headers={"Content-Type": "application/xml"},
        )
        if response.status_code != 201:
            _raise(response, f"put a message on queue {self.name}")

    def peek(self, count: int = 32) -> list[QueueMessage]:
        """Up to ``count`` (max 32) messages from the front, without dequeuing them."""
        response = self._request(
            "GET", f"{self.url}/messages", query=f"peekonly=true&numofmessages={count}"
        )
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            _raise(response, f"peek queue {self.name}")
        return _messages(response.content)

    def get(self, count: int, visibility_seconds: int) -> list[QueueMessage]:
        """Dequeue up to ``count`` (max 32) messages, hidden for ``visibility_seconds``."""
        response = self._request(
            "GET",
            f"{self.url}/messages",
            query=f"numofmessages={count}&visibilitytimeout={visibility_seconds}",
        )
        if response.status_code == 404:
            return []
        if response.status_code != 200:
            _raise(response, f"get messages from queue {self.name}")
        return _messages(response.content)

    def hide(self, message: QueueMessage, visibility_seconds: int) -> None:
        """Make a dequeued message visible again after ``visibility_seconds``."""
        response = self._request(
            "PUT",
            f"{self.url}/messages/{message.id}",
            query=f"popreceipt={quote(message.pop_receipt, safe='')}"
            f"&visibilitytimeout={visibility_seconds}",
        )
        if response.status_code not in (204, 404):
            _raise(response, f"update a message of queue {self.name}")

    def delete(self, message: QueueMessage) -> None:
        response = self._request(
            "DELETE",
            f"{self.url}/messages/{message.id}",
            query=f"popreceipt={quote(message.pop_receipt, safe='')}",
        )
        if response.status_code not in (204, 404):
            _raise(response, f"delete a message of queue {self.name}")

    def _request(
        self,
        method: str,
        url: str,
        *,
        query: str = "",
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        auth_headers, sas = self.connection.queue_auth()
        all_headers = {
            "x-ms-version": _QUEUE_API_VERSION,
            "x-ms-date": dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
            **auth_headers,
            **(headers or {}),
        }
        query_string = "&".join(part for part in (query, sas) if part)
        full_url = f"{url}?{query_string}" if query_string else url
        try:
            return requests.request(
                method, full_url, data=data, headers=all_headers, timeout=self._timeout
            )
        except requests.RequestException as error:
            # requests quotes the whole URL, SAS signature included, in its messages,
            # and the blob trigger logs this failure with its traceback: say what
            # failed without the query string, and drop the original from the chain.
            raise QueueUnreachable(
                f"{method} {url} failed: {type(error).__name__} (the storage queue "
                "service did not answer)"
            ) from None


def _messages(content: bytes) -> list[QueueMessage]:
    messages = []
    for element in ET.fromstring(content).iter("QueueMessage"):
        raw = element.findtext("MessageText") or ""
        try:
            text = base64.b64decode(raw, validate=True).decode("utf-8")
        except ValueError:
            text = raw
        messages.append(
            QueueMessage(
                id=element.findtext("MessageId") or "",
                text=text,
                dequeue_count=int(element.findtext("DequeueCount") or 0),
                pop_receipt=element.findtext("PopReceipt") or "",
            )
        )
    return messages


def _raise(response: requests.Response, action: str) -> None:
    raise RuntimeError(f"could not {action}: HTTP {response.status_code} {response.text[:300]}")
