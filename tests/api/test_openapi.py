"""The OpenAPI document: valid OpenAPI 3.1, and true to the routes the app indexes."""

from __future__ import annotations

import datetime as dt
import json

from openapi_spec_validator import validate

from shared.domain.hyperparameters import ALLOWED
from shared.domain.runs import DatasetRef, Run, RunState
from shared.http import api
from shared.http.openapi import document
from tests.api.contract import http_functions, invoke

NOW = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_every_http_function_is_documented_with_its_method_and_auth_and_nothing_else() -> None:
    doc = document()
    indexed = {}
    for name, (_, trigger) in http_functions().items():
        for method in trigger["methods"]:
            # OpenAPI has no optional path segment: `{file?}` is documented as `{file}`.
            key = (f"/api/{trigger['route']}".replace("?}", "}"), method.value.lower())
            indexed[key] = (name, trigger["authLevel"].value)
    documented = {
        (path, method): operation
        for path, item in doc["paths"].items()
        for method, operation in item.items()
        if method != "parameters"
    }
    assert set(documented) == set(indexed)
    for key, operation in documented.items():
        name, auth = indexed[key]
        assert operation["operationId"] == name
        anonymous = operation.get("security", doc["security"]) == []
        assert anonymous == (auth == "anonymous"), key
        if not anonymous:
            assert "401" in operation["responses"], key


def test_the_function_key_is_accepted_in_the_header_or_the_query() -> None:
    schemes = document()["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values()} == {
        ("header", "x-functions-key"),
        ("query", "code"),
    }


def test_the_record_schema_lists_exactly_the_public_fields_of_a_run() -> None:
    run = Run.new("ft-a", DatasetRef("datasets", "a.jsonl", "http://x/a.jsonl"), NOW)
    schema = document()["components"]["schemas"]["Run"]
    assert set(schema["properties"]) == set(api.public_record(run))


def test_the_shared_definitions_flow_into_the_document() -> None:
    schemas = document()["components"]["schemas"]
    assert schemas["RunState"]["enum"] == [s.value for s in RunState]
    hyper = schemas["StartRun"]["properties"]["hyperparameters"]["properties"]
    assert set(hyper) == set(ALLOWED)
    kinds = schemas["Problem"]["properties"]["type"]["enum"]
    assert kinds == [api.PROBLEM_TYPE + kind for kind in api.PROBLEMS]


def test_the_route_serves_the_document_anonymously_and_each_call_gets_a_copy() -> None:
    answer = invoke("openapi")
    assert answer.status == 200 and answer.media_type == "application/json"
    assert answer.body == json.loads(json.dumps(document()))
    document()["paths"].clear()
    assert document()["paths"]
