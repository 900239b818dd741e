"""The API's pure rules: blob names and URLs, bodies, listing queries, paging tokens,
problem details, and how each error family is answered (with tiny fakes, no I/O)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from shared.domain.errors import (
    ConcurrencyConflict,
    InvalidInput,
    NotAllowedNow,
    PermanentError,
    RetryableError,
    RunNotFound,
    SettingsError,
)
from shared.domain.ledger import RunSummary, StoredRun
from shared.domain.runs import DatasetRef, Run, RunState
from shared.http import api

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
CONTAINER_URL = "http://127.0.0.1:10000/devstoreaccount1/datasets"
NOW = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)


def _fields(caught: pytest.ExceptionInfo[api.RequestInvalid]) -> dict[str, str]:
    return {e.field: e.detail for e in caught.value.errors}


# -- the dataset container's URL, as the storage SDK resolves the setting --


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATASET_STORAGE": AZURITE}, CONTAINER_URL),
        ({"DATASET_STORAGE": "UseDevelopmentStorage=true"}, CONTAINER_URL),
        (
            {"DATASET_STORAGE": "AccountName=acct;AccountKey=a2V5;EndpointSuffix=core.usgov"},
            "https://acct.blob.core.usgov/datasets",
        ),
        (
            {"DATASET_STORAGE": "defaultendpointsprotocol=https;accountname=acct;accountkey=k=="},
            "https://acct.blob.core.windows.net/datasets",
        ),
        (
            {"DATASET_STORAGE__blobServiceUri": "https://acct.blob.core.windows.net/"},
            "https://acct.blob.core.windows.net/datasets",
        ),
        (
            {"DATASET_STORAGE__accountName": "acct"},
            "https://acct.blob.core.windows.net/datasets",
        ),
        ({}, None),
        ({"DATASET_STORAGE": "AccountKey=only"}, None),
    ],
)
def test_the_dataset_container_url_follows_the_connection_setting(
    env: dict[str, str], expected: str | None
) -> None:
    assert api.dataset_container_url(env, "datasets") == expected


# -- blob names and URLs --


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("data.jsonl", "data.jsonl"),
        ("team/q3/data.jsonl", "team/q3/data.jsonl"),
        ("with space & ünïcode.jsonl", "with space & ünïcode.jsonl"),
        ("a..b.jsonl", "a..b.jsonl"),  # dots inside a segment are fine
        ("%2e%2e/x.jsonl", "%2e%2e/x.jsonl"),  # a name is literal: no decoding
        (f"{CONTAINER_URL}/data.jsonl", "data.jsonl"),
        (f"{CONTAINER_URL}/team/q3%20final.jsonl", "team/q3 final.jsonl"),
        ("HTTP://127.0.0.1:10000/devstoreaccount1/datasets/a.jsonl", "a.jsonl"),
    ],
)
def test_a_blob_is_a_name_in_the_container_or_a_url_of_exactly_it(value: str, name: str) -> None:
    assert api.blob_name(value, CONTAINER_URL) == name


def test_a_default_port_may_be_spelled_out() -> None:
    container = "https://acct.blob.core.windows.net/datasets"
    url = "https://acct.blob.core.windows.net:443/datasets/a.jsonl"
    assert api.blob_name(url, container) == "a.jsonl"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        # Other hosts, accounts, containers, schemes, ports: never fetched, refused.
        ("http://169.254.169.254/metadata/identity/oauth2/token", "only blob names"),
        ("http://127.0.0.1:10000/otheraccount/datasets/a.jsonl", "only blob names"),
        ("http://127.0.0.1:10000/devstoreaccount1/other/a.jsonl", "only blob names"),
        ("http://127.0.0.1:10000/devstoreaccount1/datasets-x/a.jsonl", "only blob names"),
        ("http://127.0.0.1:10000/devstoreaccount1/datasets", "only blob names"),
        ("https://127.0.0.1:10000/devstoreaccount1/datasets/a.jsonl", "only blob names"),
        ("http://127.0.0.1:10001/devstoreaccount1/datasets/a.jsonl", "only blob names"),
        ("http://127.0.0.1:99999/devstoreaccount1/datasets/a.jsonl", "only blob names"),
        ("http://evil.example/devstoreaccount1/datasets/a.jsonl", "only blob names"),
        ("http://user:pw@127.0.0.1:10000/devstoreaccount1/datasets/a.jsonl", "only blob names"),
        ("http://127.0.0.1:10000@evil.example/devstoreaccount1/datasets/a.jsonl", "only blob"),
        ("ftp://127.0.0.1/devstoreaccount1/datasets/a.jsonl", "not a blob name"),
        ("file:///etc/passwd", "not a blob name"),
        ("gopher://127.0.0.1:10000/x", "not a blob name"),
        # Traversal, in a name or hidden in a URL's percent-encoding.
        ("../a.jsonl", "'..'"),
        ("team/../../a.jsonl", "'..'"),
        ("team/./a.jsonl", "'..'"),
        (f"{CONTAINER_URL}/../other/a.jsonl", "'..'"),
        (f"{CONTAINER_URL}/%2e%2e/other/a.jsonl", "'..'"),
        (f"{CONTAINER_URL}/team%2F..%2F..%2Fa.jsonl", "'..'"),
        (f"{CONTAINER_URL}/%ff.jsonl", "UTF-8"),
        # Absolute paths, backslashes, queries and fragments, empty, control characters.
        ("/a.jsonl", "absolute"),
        ("/etc/passwd", "absolute"),
        ("team\\a.jsonl", "backslash"),
        ("..\\..\\a.jsonl", "backslash"),
        (f"{CONTAINER_URL}/a.jsonl?sv=2024&sig=x", "query"),
        (f"{CONTAINER_URL}/a.jsonl#frag", "query"),
        (f"{CONTAINER_URL}/a.jsonl?", "query"),
        ("a.jsonl?comp=list", "query"),
        ("a.jsonl#x", "query"),
        ("", "empty"),
        ("team//a.jsonl", "empty path segments"),
        ("team/", "empty path segments"),
        ("a\x00.jsonl", "control"),
        ("a\n.jsonl", "control"),
        ("x" * 1025, "longer than 1024"),
    ],
)
def test_anything_else_is_refused_naming_the_blob_field(value: str, why: str) -> None:
    with pytest.raises(api.RequestInvalid) as caught:
        api.blob_name(value, CONTAINER_URL)
    fields = _fields(caught)
    assert list(fields) == ["blob"]
    assert why in fields["blob"], fields


@pytest.mark.parametrize("value", [None, 3, True, ["a.jsonl"], {"name": "a.jsonl"}])
def test_a_blob_must_be_a_string(value: object) -> None:
    with pytest.raises(api.RequestInvalid) as caught:
        api.blob_name(value, CONTAINER_URL)
    assert "must be a string" in _fields(caught)["blob"]


def test_urls_are_refused_when_no_account_is_configured() -> None:
    with pytest.raises(api.RequestInvalid) as caught:
        api.blob_name(f"{CONTAINER_URL}/a.jsonl", None)
    assert "cannot be checked" in _fields(caught)["blob"]
    assert api.blob_name("a.jsonl", None) == "a.jsonl"


# -- the body of POST /api/runs --


def _body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def test_a_full_body_is_parsed_and_hyperparameters_normalised() -> None:
    body = _body(
        blob="a.jsonl",
        hyperparameters={"num_train_epochs": 3, "learning_rate": "0.0002", "lora_r": "8"},
        force=True,
    )
    request = api.parse_start(body, CONTAINER_URL)
    assert request == api.StartRequest(
        "a.jsonl", {"num_train_epochs": "3", "learning_rate": "0.0002", "lora_r": "8"}, True
    )
    assert api.parse_start(_body(blob="a.jsonl"), CONTAINER_URL) == api.StartRequest(
        "a.jsonl", {}, False
    )


def test_every_bad_field_is_named_at_once() -> None:
    body = _body(
        blob="../a.jsonl",
        hyperparameters={
            "num_train_epochs": 0,
            "learning_rate": True,
            "optimizer": "adam",
            "lora_r": None,
            "lora_alpha": 16.5,
        },
        force="yes",
        extra=1,
    )
    with pytest.raises(api.RequestInvalid) as caught:
        api.parse_start(body, CONTAINER_URL)
    assert caught.value.kind == "invalid-request"
    fields = _fields(caught)
    assert set(fields) == {
        "blob",
        "hyperparameters.num_train_epochs",
        "hyperparameters.learning_rate",
        "hyperparameters.optimizer",
        "hyperparameters.lora_r",
        "hyperparameters.lora_alpha",
        "force",
        "extra",
    }
    assert "an integer from 1 to 100" in fields["hyperparameters.num_train_epochs"]
    assert "not an allowed hyperparameter" in fields["hyperparameters.optimizer"]
    assert "string or a number" in fields["hyperparameters.learning_rate"]
    assert "unknown field" in fields["extra"]


@pytest.mark.parametrize(
    ("body", "field", "why"),
    [
        (b"", "", "not JSON"),
        (b"{", "", "not JSON"),
        (b"\xff\xfe\x00", "", "not JSON"),
        (b'{"blob": NaN}', "", "not JSON"),
        (b"[" * 50_000 + b"]" * 50_000, "", "over"),
        (b"[" * 20_000 + b"]" * 20_000, "", "not JSON"),
        (b'["a.jsonl"]', "", "JSON object"),
        (b'"a.jsonl"', "", "JSON object"),
        (b"{}", "blob", "required"),
        (b'{"blob": "a.jsonl", "hyperparameters": [1]}', "hyperparameters", "object"),
        (b'{"blob": "a.jsonl", "force": null}', "force", "true or false"),
    ],
)
def test_malformed_bodies_are_400_naming_the_field(body: bytes, field: str, why: str) -> None:
    with pytest.raises(api.RequestInvalid) as caught:
        api.parse_start(body, CONTAINER_URL)
    fields = _fields(caught)
    assert field in fields and why in fields[field], fields


def test_a_body_over_the_limit_is_413() -> None:
    body = _body(blob="a.jsonl", pad="x" * api.MAX_BODY_BYTES)
    with pytest.raises(api.RequestInvalid) as caught:
        api.parse_start(body, CONTAINER_URL)
    assert caught.value.kind == "body-too-large"
    assert api.PROBLEMS[caught.value.kind][0] == 413


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("notes.txt", "not a .jsonl file"),
        ("_autopilot/reports/a.jsonl", "written by the app"),
        ("a.validation.jsonl", "validation file"),
    ],
)
def test_names_the_blob_trigger_skips_are_422_naming_blob_and_why(name: str, why: str) -> None:
    with pytest.raises(api.RequestInvalid) as caught:
        api.parse_start(_body(blob=name), CONTAINER_URL)
    assert caught.value.kind == "not-a-dataset"
    assert why in _fields(caught)["blob"]


def test_a_blob_name_with_a_lone_surrogate_is_422_naming_the_field() -> None:
    body = b'{"blob": "ok-\\ud800.jsonl"}'  # valid JSON, not valid Unicode
    with pytest.raises(api.RequestInvalid) as caught:
        api.parse_start(body, CONTAINER_URL)
    assert caught.value.kind == "not-unicode"
    assert "lone UTF-16 surrogate" in _fields(caught)["blob"]
    assert api.PROBLEMS[caught.value.kind][0] == 422


def test_field_errors_come_before_the_skip_rule() -> None:
    with pytest.raises(api.RequestInvalid) as caught:
        api.parse_start(_body(blob="notes.txt", force=1), CONTAINER_URL)
    assert caught.value.kind == "invalid-request"
    assert set(_fields(caught)) == {"force"}


# -- listing queries and paging tokens --


def test_listing_defaults_and_ignores_the_function_key() -> None:
    assert api.parse_listing({"code": "secret"}) == api.ListQuery(None, 20, None)


def test_a_full_listing_query() -> None:
    token = api.encode_continuation("created|000123|ft-a")
    query = api.parse_listing({"state": "LIVE", "limit": "100", "continuation": token})
    assert query == api.ListQuery(RunState.LIVE, 100, "created|000123|ft-a")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "live"}, "state"),
        ({"state": "DONE"}, "state"),
        ({"state": ""}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": "05"}, "limit"),
        ({"limit": " 5"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"continuation": ""}, "continuation"),
        ({"continuation": "created|000|x"}, "continuation"),
        ({"continuation": "v1.!!!"}, "continuation"),
        ({"continuation": "v2.Y3JlYXRlZA"}, "continuation"),
        ({"continuation": "v1.Y3JlYXRlZA=="}, "continuation"),  # padding: not canonical
        ({"continuation": "v1.A"}, "continuation"),
        ({"continuation": "v1._-8"}, "continuation"),  # not UTF-8
        ({"continuation": "v1." + "A" * 2000}, "continuation"),
    ],
)
def test_bad_listing_parameters_are_400_naming_each(params: dict[str, str], field: str) -> None:
    with pytest.raises(api.RequestInvalid) as caught:
        api.parse_listing(params)
    errors = caught.value.errors
    assert [(e.field, e.location) for e in errors] == [(field, "query")]


def test_all_bad_listing_parameters_are_named_together() -> None:
    with pytest.raises(api.RequestInvalid) as caught:
        api.parse_listing({"state": "x", "limit": "x", "continuation": "x"})
    assert {e.field for e in caught.value.errors} == {"state", "limit", "continuation"}


@pytest.mark.parametrize("position", ["created|", "created|000000000000000001|ft-a", "ü|/?#&="])
def test_continuation_tokens_round_trip_and_are_url_safe(position: str) -> None:
    token = api.encode_continuation(position)
    assert api.decode_continuation(token) == position
    assert token.startswith("v1.")
    assert all(c.isalnum() or c in "._-" for c in token)


# -- problem details --


def test_problems_are_rfc9457_with_field_errors() -> None:
    reply = api.problem(
        "invalid-request",
        "blob: must not be empty",
        errors=[api.FieldError("blob", "must not be empty")],
    )
    assert reply.status == 400
    assert reply.media_type == "application/problem+json"
    assert json.loads(reply.text()) == {
        "type": "urn:finetune-autopilot:problem:invalid-request",
        "title": "The request is invalid",
        "status": 400,
        "detail": "blob: must not be empty",
        "errors": [{"field": "blob", "in": "body", "detail": "must not be empty"}],
    }


@pytest.mark.parametrize(("seconds", "header"), [(None, None), (0.2, "1"), (7.01, "8"), (30, "30")])
def test_retry_after_is_whole_seconds_when_known(seconds: float | None, header: str | None) -> None:
    assert api.retry_after_header(seconds).get("Retry-After") == header


# -- how each error family is answered (fake services) --


DATASET = DatasetRef("datasets", "a.jsonl", f"{CONTAINER_URL}/a.jsonl", '"0x1"', 10)


def _run(state: RunState = RunState.REGISTERING_DATA) -> Run:
    run = Run.new("ft-abc", DATASET, NOW, "uploaded")
    return dataclasses.replace(
        run, state=state, lease_owner="me", lease_until=NOW, published=1, job_name="ft-abc"
    )


class FakeLedger:
    def __init__(self, run: Run | None = None, error: Exception | None = None) -> None:
        self.run = run
        self.error = error

    def get(self, run_id: str) -> StoredRun | None:
        if self.error is not None:
            raise self.error
        return StoredRun(self.run, "etag") if self.run and self.run.run_id == run_id else None

    def ping(self) -> None:
        if self.error is not None:
            raise self.error


@dataclasses.dataclass
class FakeServices:
    ledger: FakeLedger


def _services(ledger: FakeLedger) -> Any:
    return lambda: FakeServices(ledger)


def _failing(error: Exception) -> Any:
    def get_services() -> Any:
        raise error

    return get_services


def test_a_record_leaves_out_the_reconcilers_internals() -> None:
    reply = api.get_run(_services(FakeLedger(_run())), "ft-abc")
    assert reply.status == 200
    assert not {"lease_owner", "lease_until", "published"} & set(reply.body)
    assert reply.body["run_id"] == "ft-abc" and reply.body["job_name"] == "ft-abc"


@pytest.mark.parametrize("run_id", ["ft-nope", "../x", "a/b", "a\\b", "", "x" * 200, "a?b"])
def test_unknown_or_malformed_run_ids_are_404(run_id: str) -> None:
    reply = api.get_run(_services(FakeLedger(_run())), run_id)
    assert reply.status == 404 and reply.body["type"].endswith("run-not-found")


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (SettingsError(["AZURE_SUBSCRIPTION_ID is missing", "RUN_TABLE='x' is invalid"]), 500, ""),
        (RetryableError("reading run: 503 busy", retry_after=12.5), 503, "unavailable"),
        (ConcurrencyConflict("raced"), 503, "unavailable"),
        (PermanentError("reading run: 403 AuthorizationFailure"), 502, "dependency-failed"),
        (RunNotFound("run x does not exist"), 404, "run-not-found"),
        (NotAllowedNow("run x is LIVE"), 409, "not-allowed-now"),
        (InvalidInput("bad"), 400, "invalid-request"),
        (KeyError("bug"), 500, "internal-error"),
    ],
)
def test_each_error_family_has_its_status(error: Exception, status: int, kind: str) -> None:
    reply = api.get_run(_services(FakeLedger(error=error)), "ft-abc")
    assert reply.status == status
    assert reply.media_type == "application/problem+json"
    assert reply.body["status"] == status
    assert reply.body["type"].endswith(kind or "settings-invalid")
    if isinstance(error, SettingsError):
        assert reply.body["settings"] == error.problems
        assert "AZURE_SUBSCRIPTION_ID is missing" in reply.body["detail"]
    if isinstance(error, RetryableError) and error.retry_after:
        assert reply.headers == {"Retry-After": "13"}
    if isinstance(error, KeyError):
        assert "bug" not in reply.text()  # no internals leak


def test_a_settings_problem_is_500_before_anything_else() -> None:
    error = SettingsError(["DATASET_STORAGE is missing"])
    reply = api.start_run(_failing(error), b"not json", env={})
    assert reply.status == 500
    assert "DATASET_STORAGE is missing" in reply.body["detail"]


def test_health_is_ok_when_the_ledger_answers() -> None:
    reply = api.health(_services(FakeLedger()))
    assert (reply.status, reply.body) == (
        200,
        {"status": "ok", "service": "finetune-autopilot", "ledger": "reachable"},
    )


@pytest.mark.parametrize(
    ("get_services", "ledger", "detail"),
    [
        (_failing(SettingsError(["AZURE_SUBSCRIPTION_ID is missing"])), "unknown", "SUBSCRIPTION"),
        (_failing(ValueError("Connection string is malformed")), "unknown", "ValueError"),
        (_services(FakeLedger(error=RetryableError("unreachable", 3))), "unreachable", "unreach"),
        (_services(FakeLedger(error=PermanentError("403 denied"))), "refused", "403"),
    ],
)
def test_health_is_503_with_the_reason_and_never_raises(
    get_services: Any, ledger: str, detail: str
) -> None:
    reply = api.health(get_services)
    assert reply.status == 503
    assert reply.body["type"].endswith("unhealthy") and reply.body["status"] == 503
    assert reply.body["ledger"] == ledger and reply.body["service"] == "finetune-autopilot"
    assert detail in reply.body["detail"]


def test_a_summary_has_what_a_listing_shows() -> None:
    run = dataclasses.replace(_run(RunState.TRAINING), activity="job Running", last_error="x")
    assert RunSummary.of(run).to_dict() == {
        "run_id": "ft-abc",
        "state": "TRAINING",
        "activity": "job Running",
        "dataset_name": "a.jsonl",
        "created_at": NOW.isoformat(),
        "updated_at": NOW.isoformat(),
        "job_name": "ft-abc",
        "deployment": "",
        "last_error": "x",
    }


# -- approving a run over budget ----------------------------------------------------------------


def _approve(h: Any, run_id: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    from tests.api.contract import Answer, check

    reply = api.approve_run(lambda: h.services, run_id, body, headers or {}, {})
    answer = Answer(reply.status, reply.media_type, dict(reply.headers), reply.body)
    check("POST", "/api/runs/{id}/approve", answer)  # as the OpenAPI document says
    return answer


def _waiting(**settings: Any) -> tuple[Any, str]:
    from tests.support.fakes import Harness, accept

    h = Harness().configure(
        max_run_cost=0.01,
        training_tokens_per_second=100.0,
        instance_prices={"Standard_NC24ads_A100_v4": 4.0},
        **settings,
    )
    run_id = accept(h)
    assert h.ledger.run(run_id).state is RunState.AWAITING_APPROVAL
    return h, run_id


def test_approve_names_the_approver_from_the_keys_fingerprint_and_answers_the_run() -> None:
    from shared.domain.approval import key_fingerprint

    fingerprint = key_fingerprint("the-function-key")
    h, run_id = _waiting(approver_keys={fingerprint: "alice"})

    answer = _approve(h, run_id, b'{"by": "Alice A."}', {"X-Functions-Key": "the-function-key"})

    assert answer.status == 200 and answer.headers["Location"] == f"/api/runs/{run_id}"
    assert answer.body["state"] == "TRAINING"
    assert answer.body["approval"] == {
        "by": "alice",
        "at": NOW.isoformat(),
        "key": fingerprint,
        "claimed_by": "Alice A.",
    }
    assert answer.body["plan"]["over_budget"] is True
    assert "the-function-key" not in json.dumps(answer.body)
    # Again: the same run, the first approval.
    again = _approve(h, run_id, headers={"x-functions-key": "another-key"})
    assert again.status == 200 and again.body["approval"] == answer.body["approval"]


def test_approve_by_code_or_principal_or_nobody_known() -> None:
    h, run_id = _waiting()
    from shared.domain.approval import key_fingerprint

    reply = api.approve_run(lambda: h.services, run_id, b"", {}, {"code": "query-key"})
    assert reply.status == 200
    assert reply.body["approval"]["by"] == "unknown"
    assert reply.body["approval"]["key"] == key_fingerprint("query-key")
    assert "claimed_by" not in reply.body["approval"]
    h, run_id = _waiting()
    principal = {"x-ms-client-principal-name": "bob@corp", "x-functions-key": "k"}
    assert _approve(h, run_id, headers=principal).body["approval"]["by"] == "bob@corp"


def test_approve_is_409_for_a_run_that_is_not_waiting() -> None:
    from shared.pipeline.control import request_cancel
    from tests.support.app import text_examples

    h, waiting = _waiting()
    request_cancel(h.services, waiting)
    canceled = _approve(h, waiting)
    assert canceled.status == 409 and "is CANCELED" in canceled.body["detail"]
    h.configure(max_run_cost=None)
    from tests.support.fakes import accept

    # No limit now: another upload goes straight to training.
    other = accept(h, "other.jsonl", text_examples(20, "standup"))
    answer = _approve(h, other)
    assert answer.status == 409 and answer.media_type == "application/problem+json"
    assert answer.body["type"] == api.PROBLEM_TYPE + "not-allowed-now"
    assert "is TRAINING: only runs in AWAITING_APPROVAL" in answer.body["detail"]
    assert h.ledger.run(other).approval == {}


@pytest.mark.parametrize("run_id", ["ft-000000000000-00000000", "../x", "x" * 200])
def test_approve_is_404_for_an_unknown_run(run_id: str) -> None:
    h, _ = _waiting()
    answer = _approve(h, run_id)
    assert answer.status == 404 and answer.body["type"] == api.PROBLEM_TYPE + "run-not-found"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"by": ""}', "by"),
        (b'{"by": 7}', "by"),
        (b'{"by": "' + b"x" * 201 + b'"}', "by"),
        (b'{"who": "alice"}', "who"),
        (b"[1]", ""),
        (b"{nope", ""),
    ],
)
def test_approve_bodies_are_checked_before_anything_is_recorded(body: bytes, field: str) -> None:
    h, run_id = _waiting()
    answer = _approve(h, run_id, body)
    assert answer.status == 400 and field in answer.field_errors()
    assert h.ledger.run(run_id).state is RunState.AWAITING_APPROVAL


def test_approve_body_rules() -> None:
    assert api.parse_approve(b"") == "" and api.parse_approve(b"  \n") == ""
    assert api.parse_approve(b"{}") == ""
    assert api.parse_approve(b'{"by": "  carol  "}') == "carol"
    with pytest.raises(api.RequestInvalid) as caught:
        api.parse_approve(b'{"by": "\\ud800"}')
    assert caught.value.kind == "not-unicode"
