"""The run ledger on Azure Table storage.

Layout, one partition (``runs``) so that a run and its index row change in one
entity-group transaction:

- ``run|<id>``: the run, as JSON split over ``Json0..JsonN`` properties (a
  string property holds at most 64 KiB; a record is never truncated), plus
  ``State`` and ``UpdatedAt`` for people browsing the table.
- ``active|<id>``: present exactly while the run needs attention (active, or
  lifecycle events still to publish), with its ``NextCheckAt`` and a copy of
  the run's JSON (written in the same transaction as every write of the run
  row), so listing active runs (the timer's sweep) is one range query over
  these rows and reads no run row.
- ``endpoint|<name>``: which run holds the rollout lock of an endpoint.
- ``upload|<upload id>``: which run a given blob version became, so a trigger
  firing again for the same upload does not validate it again.
- ``created|<inverted creation time>|<id>``: one per run, the listing index.
  Row keys sort ascending, so the inverted time (a fixed-width count of
  microseconds before a far-off instant) puts the newest run first. The row
  carries the summary columns a listing shows (``State``, ``Activity``,
  ``Dataset``, ``CreatedAt``, ``UpdatedAt``, ``JobName``, ``Deployment``,
  ``LastError``, ``RunId``) and is written in the same transaction as every
  write of the run row (``create`` and ``replace``: a creation time never
  changes, so it is always the same row), so it is never out of date. A run
  stored before this index existed gets its row on its next write.

Listing (``list_runs``) is therefore one range query over ``created|`` rows,
``$top`` = page size + 1 (the extra row tells whether another page follows and
where it starts), with ``State eq`` as a server-side filter when asked. No
run's JSON is read. The continuation is ``{"from": <the next page's first row
key>}``. Azure may answer a sparse filtered query with short or empty pages
and its own continuation token; a listing follows those for at most
``LIST_ROUND_TRIPS`` requests, then hands back the service's token as well
(``"resume"``), so one call does bounded work however many runs there are.
The alternative, paging over index rows without state and filtering against
the run rows, would read one run row per candidate; keeping the summary on the
index row costs a few hundred bytes per run and one more operation in each
transaction.

Compare-and-swap: the run row is replaced with ``If-Match: <etag>``; a 412
(or an insert that finds the row) becomes ``ConcurrencyConflict``.

A run listed by ``active()`` carries the version of its ``active|`` row
instead (``StoredRun.etag`` is opaque to callers; the adapter marks it with
``ACTIVE_VERSION``), and ``replace`` then puts the ``If-Match`` on that row and
replaces the run row unconditionally, in the same transaction. That is the
same compare-and-swap: while a run needs attention, every write of its run
row also writes its ``active|`` row (``create`` inserts it, ``replace``
upserts it or, once the run needs no attention, deletes it, all in one
entity-group transaction), so the ``active|`` row's ETag changes exactly when
the run row changes, and a deleted ``active|`` row (the run ended meanwhile)
fails the condition too. The version ``replace`` hands back is the run row's.
"""

from __future__ import annotations

import datetime as dt
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
from shared.domain.errors import ConcurrencyConflict, InvalidInput
from shared.domain.ledger import MAX_PAGE, RunSummary, StoredRun
from shared.domain.runs import Run, RunState

log = logging.getLogger(__name__)

PARTITION = "runs"
RUN_PREFIX = "run|"
ACTIVE_PREFIX = "active|"
UPLOAD_PREFIX = "upload|"
ENDPOINT_PREFIX = "endpoint|"
CREATED_PREFIX = "created|"
CREATED_END = "created}"  # just past every "created|..." key ("}" follows "|")
PING_KEY = "ping|"  # never written: reading it is the cheapest question the table answers
LIST_ROUND_TRIPS = 5  # service requests one listing makes at most
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INVERT_FROM = 10**18 - 1  # microseconds: far past any creation time, 18 digits wide
_SUMMARY_COLUMNS = [
    "RowKey",
    "RunId",
    "State",
    "Activity",
    "Dataset",
    "CreatedAt",
    "UpdatedAt",
    "JobName",
    "Deployment",
    "LastError",
]
CHUNK = 30_000  # characters per Json property: under the 64 KiB (32K UTF-16 units) limit
ACTIVE_VERSION = "active|"  # marks a StoredRun.etag that is its active| row's ETag
_CONFLICT_CODES = {"UpdateConditionNotSatisfied", "EntityAlreadyExists", "ConditionNotMet"}
# Also a lost race when the condition was on the active| row: it is gone (the run ended).
_ACTIVE_CONFLICT_CODES = {*_CONFLICT_CODES, "ResourceNotFound", "EntityNotFound"}


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
        record = _record(run)
        operations: list[Any] = [
            ("create", _run_entity(run, record)),
            ("upsert", _created_entity(run), {"mode": UpdateMode.REPLACE}),
        ]
        if run.needs_attention:
            operations.append(("create", _active_entity(run, record)))
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
        listed = stored.etag.startswith(ACTIVE_VERSION)
        record = _record(run)
        # The compare-and-swap is on the row whose version the caller holds.
        if_match = {
            "etag": stored.etag.removeprefix(ACTIVE_VERSION),
            "match_condition": MatchConditions.IfNotModified,
        }
        operations: list[Any] = [
            (
                "update",
                _run_entity(run, record),
                {"mode": UpdateMode.REPLACE, **({} if listed else if_match)},
            ),
            ("upsert", _created_entity(run), {"mode": UpdateMode.REPLACE}),
        ]
        active_key = {"PartitionKey": PARTITION, "RowKey": ACTIVE_PREFIX + run.run_id}
        if run.needs_attention:
            # Listed: the active| row carries the condition; otherwise it is upserted.
            kind, condition = ("update", if_match) if listed else ("upsert", {})
            operations.append(
                (kind, _active_entity(run, record), {"mode": UpdateMode.REPLACE, **condition})
            )
        elif listed:
            operations.append(("delete", active_key, if_match))
        elif stored.run.needs_attention:
            operations.append(("delete", active_key))
        conflicts = _ACTIVE_CONFLICT_CODES if listed else _CONFLICT_CODES
        try:
            results = self._client().submit_transaction(operations)
        except TableTransactionError as exc:
            if _code(exc) in conflicts:
                raise ConcurrencyConflict(f"run {run.run_id} changed since it was read") from exc
            raise translate(exc, f"saving run {run.run_id}") from exc
        except AzureError as exc:
            raise translate(exc, f"saving run {run.run_id}") from exc
        return StoredRun(run, _etag(results[0]))

    def active(self) -> list[StoredRun]:
        """One range query over the ``active|`` rows, whose copies of the runs come back
        with those rows' versions (``ACTIVE_VERSION``). A row written before the rows
        carried the run (no ``JsonParts``) costs a point read of its run, once: the
        next write of the run brings its row up to date."""
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        params = {"pk": PARTITION, "low": ACTIVE_PREFIX, "high": ACTIVE_PREFIX[:-1] + "}"}
        try:
            rows = list(self._client().query_entities(query, parameters=params))
        except AzureError as exc:
            raise translate(exc, "listing active runs") from exc
        found: list[StoredRun | None] = []
        for row in rows:
            if "JsonParts" in row:
                listed = _stored(row)
                found.append(StoredRun(listed.run, ACTIVE_VERSION + listed.etag))
            else:
                found.append(self.get(str(row["RowKey"])[len(ACTIVE_PREFIX) :]))
        return [s for s in found if s is not None and s.run.needs_attention]

    def list_runs(
        self, state: RunState | None, limit: int, continuation: str | None
    ) -> tuple[list[RunSummary], str | None]:
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be from 1 to {MAX_PAGE}, got {limit}")
        start, token = _position(continuation)
        query = "PartitionKey eq @pk and RowKey ge @start and RowKey lt @end"
        params: dict[str, Any] = {"pk": PARTITION, "start": start, "end": CREATED_END}
        if state is not None:
            query += " and State eq @state"
            params["state"] = state.value
        rows: list[Any] = []
        try:
            # Tables continuation tokens are dicts (PartitionKey, RowKey), though
            # ItemPaged.by_page annotates them as strings.
            query_pages: Any = self._client().query_entities(
                query, parameters=params, select=_SUMMARY_COLUMNS, results_per_page=limit + 1
            )
            pages = query_pages.by_page(continuation_token=token)
            for round_trip, page in enumerate(pages, start=1):
                rows.extend(page)
                if len(rows) > limit:
                    following = json.dumps({"from": str(rows[limit]["RowKey"])})
                    return [_summary(r) for r in rows[:limit]], following
                if round_trip >= LIST_ROUND_TRIPS:
                    break
            else:
                return [_summary(r) for r in rows], None
            resume = getattr(pages, "continuation_token", None)
        except AzureError as exc:
            raise translate(exc, "listing runs") from exc
        if not isinstance(resume, dict):
            return [_summary(r) for r in rows], None
        return [_summary(r) for r in rows], json.dumps({"resume": resume, "from": start})

    def ping(self) -> None:
        # Straight to the table (not through _client(), which would create it), with
        # no retries and short timeouts: a health check must answer quickly.
        table = self._service.get_table_client(self._table_name)
        try:
            table.get_entity(
                PARTITION, PING_KEY, retry_total=0, connection_timeout=5, read_timeout=5
            )
        except ResourceNotFoundError:
            return  # the service answered (no such row, or no table yet: created on first use)
        except AzureError as exc:
            raise translate(exc, "reaching the run ledger") from exc

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


def _record(run: Run) -> dict[str, Any]:
    """The run as JSON split over ``Json0..JsonN`` properties, with ``JsonParts``."""
    text = json.dumps(run.to_dict(), separators=(",", ":"))
    parts = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
    record: dict[str, Any] = {"JsonParts": len(parts)}
    record.update({f"Json{i}": part for i, part in enumerate(parts)})
    return record


def _run_entity(run: Run, record: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": RUN_PREFIX + run.run_id,
        "State": run.state.value,
        "UpdatedAt": run.updated_at.isoformat(),
        **(record or _record(run)),
    }


def _active_entity(run: Run, record: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": ACTIVE_PREFIX + run.run_id,
        "State": run.state.value,
        "NextCheckAt": run.next_check_at.isoformat() if run.next_check_at else "",
        **(record or _record(run)),
    }


def _created_key(run: Run) -> str:
    created = run.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    micros = (created - _EPOCH) // dt.timedelta(microseconds=1)
    return f"{CREATED_PREFIX}{_INVERT_FROM - micros:018d}|{run.run_id}"


def _created_entity(run: Run) -> dict[str, Any]:
    return {
        "PartitionKey": PARTITION,
        "RowKey": _created_key(run),
        "RunId": run.run_id,
        "State": run.state.value,
        "Activity": run.activity[:CHUNK],
        "Dataset": run.dataset.name,
        "CreatedAt": run.created_at.isoformat(),
        "UpdatedAt": run.updated_at.isoformat(),
        "JobName": run.job_name,
        "Deployment": run.deployment,
        "LastError": run.last_error[:CHUNK],
    }


def _summary(entity: Any) -> RunSummary:
    return RunSummary(
        run_id=str(entity["RunId"]),
        state=RunState(entity["State"]),
        activity=str(entity.get("Activity") or ""),
        dataset_name=str(entity.get("Dataset") or ""),
        created_at=dt.datetime.fromisoformat(entity["CreatedAt"]),
        updated_at=dt.datetime.fromisoformat(entity["UpdatedAt"]),
        job_name=str(entity.get("JobName") or ""),
        deployment=str(entity.get("Deployment") or ""),
        last_error=str(entity.get("LastError") or ""),
    )


def _position(continuation: str | None) -> tuple[str, dict[str, str] | None]:
    """Where a page starts: (first row key, the service's continuation token or None).

    A continuation is ``{"from": row key}`` (the next page's first row), or, when a
    listing stopped after ``LIST_ROUND_TRIPS``, also ``"resume"``: the service's own
    token (opaque, and only ever resuming the same ``created|`` range query).
    """
    if continuation is None:
        return CREATED_PREFIX, None
    invalid = InvalidInput("continuation is not a position in the run listing")
    try:
        position = json.loads(continuation)
    except ValueError:
        raise invalid from None
    if not isinstance(position, dict) or set(position) - {"from", "resume"}:
        raise invalid
    start = position.get("from")
    if not isinstance(start, str) or not CREATED_PREFIX <= start < CREATED_END:
        raise invalid
    resume = position.get("resume")
    if resume is None:
        return start, None
    if (
        not isinstance(resume, dict)
        or set(resume) != {"PartitionKey", "RowKey"}
        or not all(isinstance(v, str) and len(v) <= 1024 for v in resume.values())
    ):
        raise invalid
    return start, resume


def _stored(entity: Any) -> StoredRun:
    text = "".join(entity[f"Json{i}"] for i in range(int(entity["JsonParts"])))
    return StoredRun(Run.from_dict(json.loads(text)), str(entity.metadata["etag"]))


def _etag(result: Any) -> str:
    return str(result.get("etag", "")) if isinstance(result, dict) else str(result)


def _code(exc: TableTransactionError) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")
