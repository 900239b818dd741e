"""The HTTP API through the local Functions host with a real HTTP client: function-key
auth, SSRF guards, and the OpenAPI document checked against the live API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from local.functions_host import FunctionsHost
from tests.e2e.conftest import make_host

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("app_identity")]


@pytest.fixture
def host(host_settings: dict[str, str], tmp_path: Path) -> Iterator[FunctionsHost]:
    with make_host(host_settings, tmp_path / "host") as running:
        yield running


@pytest.mark.parametrize(
    ("method", "route"),
    [
        ("GET", "runs"),
        ("POST", "runs"),
        ("GET", "runs/ft-x"),
        ("POST", "runs/ft-x/cancel"),
        ("POST", "runs/ft-x/retry"),
        ("POST", "runs/ft-x/approve"),
    ],
)
def test_keyed_routes_refuse_a_missing_or_wrong_key(
    host: FunctionsHost, method: str, route: str
) -> None:
    url = host.url(route)
    assert requests.request(method, url, timeout=10).status_code == 401
    wrong = {"x-functions-key": "not-the-key"}
    assert requests.request(method, url, headers=wrong, timeout=10).status_code == 401
    assert requests.request(method, url, params={"code": "nope"}, timeout=10).status_code == 401


def test_the_key_works_in_the_header_and_in_the_query(host: FunctionsHost) -> None:
    by_header = requests.get(
        host.url("runs"), headers={"x-functions-key": host.function_key}, timeout=10
    )
    by_query = requests.get(host.url("runs"), params={"code": host.function_key}, timeout=10)
    assert by_header.status_code == by_query.status_code == 200
    assert by_header.json() == {"runs": [], "continuation": None}


def test_health_and_the_openapi_document_are_anonymous(host: FunctionsHost) -> None:
    health = requests.get(host.url("health"), timeout=10)
    assert health.status_code == 200 and health.json()["ledger"] == "reachable"
    document = requests.get(host.url("openapi.json"), timeout=10)
    assert document.status_code == 200 and "/api/runs" in document.json()["paths"]


@pytest.mark.parametrize(
    "blob",
    [
        "http://169.254.169.254/latest/meta-data",
        "https://evil.example.com/datasets/a.jsonl",
        "../other-container/a.jsonl",
        "/etc/passwd",
        "a/../../b.jsonl",
        "file:///etc/passwd",
    ],
)
def test_start_refuses_urls_and_paths_outside_the_container(host: FunctionsHost, blob: str) -> None:
    response = requests.post(
        host.url("runs"),
        json={"blob": blob},
        headers={"x-functions-key": host.function_key},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(error["field"] == "blob" for error in problem["errors"])


@pytest.fixture
def api_schema(host: FunctionsHost) -> object:
    schema = schemathesis.openapi.from_url(host.url("openapi.json"))
    # The Functions host answers 404, not 405, to a method a function does not
    # declare (azure-functions-host#10098); the local host keeps that behaviour.
    schema.config.checks.unsupported_method.enabled = False
    # Schema-valid is not always acceptable: a generated blob name usually does not
    # exist (404) or is not a .jsonl upload (422), and a hyperparameter can be of
    # the right type yet out of its allowed range (400, naming the field).
    schema.config.checks.positive_data_acceptance.expected_statuses = [
        "2XX",
        "400",
        "404",
        "409",
        "422",
    ]
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_keeps_to_its_openapi_document(
    case: schemathesis.Case[Any], host: FunctionsHost
) -> None:
    case.call_and_validate(base_url=host.base_url, headers={"x-functions-key": host.function_key})


def test_4xx_answers_through_the_host(host: FunctionsHost, host_settings: dict[str, str]) -> None:
    from azure.storage.blob import BlobServiceClient

    key = {"x-functions-key": host.function_key}
    blobs = BlobServiceClient.from_connection_string(host_settings["DATASET_STORAGE"])
    container = blobs.get_container_client(host_settings["DATASET_CONTAINER"])
    container.upload_blob("notes.txt", b"not a dataset")
    container.upload_blob("broken.jsonl", b'{"prompt": "a"\n')

    unknown = requests.get(host.url("runs/ft-nope"), headers=key, timeout=10)
    assert unknown.status_code == 404
    bad_state = requests.get(host.url("runs"), params={"state": "DONE"}, headers=key, timeout=10)
    assert bad_state.status_code == 400
    assert bad_state.json()["errors"][0]["field"] == "state"
    bad_body = requests.post(host.url("runs"), json={"blob": 7}, headers=key, timeout=10)
    assert bad_body.status_code == 400 and bad_body.json()["errors"][0]["field"] == "blob"
    missing = requests.post(host.url("runs"), json={"blob": "nope.jsonl"}, headers=key, timeout=10)
    assert missing.status_code == 404
    skipped = requests.post(host.url("runs"), json={"blob": "notes.txt"}, headers=key, timeout=10)
    assert skipped.status_code == 422 and skipped.json()["errors"][0]["field"] == "blob"
    started = requests.post(
        host.url("runs"), json={"blob": "broken.jsonl"}, headers=key, timeout=10
    )
    assert started.status_code == 202 and started.json()["state"] == "REJECTED"
    run_url = host.base_url + started.headers["Location"]
    assert requests.get(run_url, headers=key, timeout=10).json()["state"] == "REJECTED"
    for action in ("cancel", "retry"):
        refused = requests.post(f"{run_url}/{action}", headers=key, timeout=10)
        assert refused.status_code == 409, (action, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
