"""The run ledger on Azure Table storage.

Layout, one partition (``runs``) so that a run and its index row change in one
entity-group transaction:

- ``run|<id>``: the run, as JSON split over ``Json0..JsonN`` properties (a
  string property holds at most 64 KiB; a record is never truncated), plus
  ``State`` and ``UpdatedAt`` for people browsing the table.
- ``active|<id>``: present exactly while the run needs attention (active, or
  lifecycle events still to publish), with its ``NextCheckAt``; listing active
  runs reads only these rows.
- ``endpoint|<name>``: which run holds the rollout lock of an endpoint.
- ``upload|<upload id>``: which run a given blob version became, so a trigger
  firing again for the same upload does not validate it again.

Compare-and-swap: the run row is replaced with ``If-Match: <etag>``; a 412
(or an insert that finds the row) becomes ``ConcurrencyConflict``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.adapters.azure_errors import translate
from shared.errors import ConcurrencyConflict
from shared.ledger import StoredRun
from shared.runs import Run

log = logging.getLogger(__name__)

PARTITION = "runs"
RUN_PREFIX = "run|"
ACTIVE_PREFIX = "active|"
UPLOAD_PREFIX = "upload|"
ENDPOINT_PREFIX = "endpoint|"
CHUNK = 30_000  # characters per Json property: under the 64 KiB (32K UTF-16 units) limit
_CONFLICT_CODES = {"UpdateConditionNotSatisfied", "EntityAlreadyExists", "ConditionNotMet"}


class TableLedger:
    def __init__(self, service: TableServiceClient, table: str) -> None:
        self._service = service
        self._table_name = table
        self._table: TableClient | None = None

    def _client(self) -> TableClient:
        if self._table is None:
            try:
                self._service.create_table_if_not_exists(self._table_name)
            except AzureError as exc:
                raise translate(exc, f"creating table {self._table_name}") from exc
            self._table = self._service.get_table_client(self._table_name)
        return self._table

    def get(self, run_id: str) -> StoredRun | None:
        try:
            entity = self._client().get_entity(PARTITION, RUN_PREFIX + run_id)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, f"reading run {run_id}") from exc
        return _stored(entity)

    def create(self, run: Run) -> StoredRun | None:
        operations: list[Any] = [("create", _run_entity(run))]
        if run.needs_attention:
            operations.append(("create", _active_entity(run)))
        try:
            results = self._client().submit_transaction(operations)
        except TableTransactionError as exc:
            if _code(exc) in _CONFLICT_CODES:
                return None
            raise translate(exc, f"creating run {run.run_id}") from exc
        except ResourceExistsError:
            return None
        except AzureError as exc:
            raise translate(exc, f"creating run {run.run_id}") from exc
        return StoredRun(run, _etag(results[0]))

    def replace(self, stored: StoredRun, run: Run) -> StoredRun:
        operations: list[Any] = [
            (
                "update",
                _run_entity(run),
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": stored.etag,
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
        ]
        if run.needs_attention:
            operations.append(("upsert", _active_entity(run), {"mode": UpdateMode.REPLACE}))
        elif stored.run.needs_attention:
            operations.append(
                ("delete", {"PartitionKey": PARTITION, "RowKey": ACTIVE_PREFIX + run.run_id})
            )
        try:
            results = self._client().submit_transaction(operations)
        except TableTransactionError as exc:
            if _code(exc) in _CONFLICT_CODES:
                raise ConcurrencyConflict(f"run {run.run_id} changed since it was read") from exc
            raise translate(exc, f"saving run {run.run_id}") from exc
        except AzureError as exc:
            raise translate(exc, f"saving run {run.run_id}") from exc
        return StoredRun(run, _etag(results[0]))

    def active(self) -> list[StoredRun]:
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        params = {"pk": PARTITION, "low": ACTIVE_PREFIX, "high": ACTIVE_PREFIX[:-1] + "}"}
        try:
            ids = [
                e["RowKey"][len(ACTIVE_PREFIX) :]
                for e in self._client().query_entities(query, parameters=params, select=["RowKey"])
            ]
        except AzureError as exc:
            raise translate(exc, "listing active runs") from exc
        found = [self.get(run_id) for run_id in ids]
        return [s for s in found if s is not None and s.run.needs_attention]

    def link_upload(self, upload_id: str, run_id: str) -> str:
        entity = {"PartitionKey": PARTITION, "RowKey": UPLOAD_PREFIX + upload_id, "RunId": run_id}
        try:
            self._client().create_entity(entity)
            return run_id
        except ResourceExistsError:
            linked = self.upload_run(upload_id)
            return linked or run_id
        except AzureError as exc:
            raise translate(exc, f"linking upload {upload_id}") from exc

    def upload_run(self, upload_id: str) -> str | None:
        try:
            entity = self._client().get_entity(PARTITION, UPLOAD_PREFIX + upload_id)
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, f"reading upload {upload_id}") from exc
        return str(entity["RunId"])

    def acquire_endpoint(self, endpoint: str, run_id: str) -> str:
        key = ENDPOINT_PREFIX + endpoint.lower()
        client = self._client()
        try:
            client.create_entity({"PartitionKey": PARTITION, "RowKey": key, "Holder": run_id})
            return run_id
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise translate(exc, f"locking endpoint {endpoint}") from exc
        try:
            entity = client.get_entity(PARTITION, key)
        except AzureError as exc:
            raise translate(exc, f"reading the lock of endpoint {endpoint}") from exc
        holder = str(entity.get("Holder") or "")
        if holder == run_id:
            return run_id
        holding = self.get(holder) if holder else None
        if holding is not None and holding.run.active:
            return holder
        # Free, or held by a run that has ended: take it, unless someone else is faster.
        try:
            client.update_entity(
                {"PartitionKey": PARTITION, "RowKey": key, "Holder": run_id},
                mode=UpdateMode.REPLACE,
                etag=entity.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError as exc:
            raise ConcurrencyConflict(f"endpoint {endpoint} lock changed hands") from exc
        except AzureError as exc:
            raise translate(exc, f"locking endpoint {endpoint}") from exc
        return run_id

    def release_endpoint(self, endpoint: str, run_id: str) -> None:
        key = ENDPOINT_PREFIX + endpoint.lower()
        client = self._client()
        try:
            entity = client.get_entity(PARTITION, key)
            if entity.get("Holder") == run_id:
                client.update_entity(
                    {"PartitionKey": PARTITION, "RowKey": key, "Holder": ""},
                    mode=UpdateMode.REPLACE,
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceNotFoundError, ResourceModifiedError):
            return
        except AzureError as exc:
            raise translate(exc, f"unlocking endpoint {endpoint}") from exc


def _run_entity(run: Run) -> dict[str, Any]:
    text = json.dumps(run.to_dict(), separators=(",", ":"))
    parts = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
    entity: dict[str, Any] = {
        "PartitionKey": PARTITION,
        "RowKey": RUN_PREFIX + run.run_id,
        "State": run.state.value,
        "UpdatedAt": run.updated_at.isoformat(),
        "JsonParts": len(parts),
    }
    entity.update({f"Json{i}": part for i, part in enumerate(parts)})
    return entity


def _active_entity(run: Run) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": ACTIVE_PREFIX + run.run_id,
        "State": run.state.value,
        "NextCheckAt": run.next_check_at.isoformat() if run.next_check_at else "",
    }


def _stored(entity: Any) -> StoredRun:
    text = "".join(entity[f"Json{i}"] for i in range(int(entity["JsonParts"])))
    return StoredRun(Run.from_dict(json.loads(text)), str(entity.metadata["etag"]))


def _etag(result: Any) -> str:
    return str(result.get("etag", "")) if isinstance(result, dict) else str(result)


def _code(exc: TableTransactionError) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")
