"""Calling function_app's HTTP routes in-process, each answer checked against the
OpenAPI document: the status is documented for the operation, the media type
too, the body validates against its schema, and headers it sets are declared.

``invoke("get_run", id="ft-x")`` finds the function by name in the indexed app,
builds the ``func.HttpRequest`` the host would (URL from the route template,
route parameters, query, body) and calls it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import azure.functions as func
from jsonschema import Draft202012Validator, FormatChecker

from shared.http.openapi import document
from tests.support.indexing import app_functions

_CHECKED_HEADERS = ("Location", "Retry-After")


@dataclass(frozen=True)
class Answer:
    status: int
    media_type: str
    headers: dict[str, str]
    body: Any

    def field_errors(self) -> dict[str, str]:
        return {e["field"]: e["detail"] for e in self.body.get("errors", [])}


@functools.cache
def http_functions() -> dict[str, tuple[Any, dict[str, Any]]]:
    """Every HTTP-triggered function of the app: name -> (callable, trigger binding)."""
    found = {}
    for function in app_functions():
        trigger = function.get_bindings()[0].get_dict_repr()
        if trigger["type"] == "httpTrigger":
            found[str(function.get_function_name())] = (function.get_user_function(), trigger)
    return found


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def check(method: str, template: str, answer: Answer) -> None:
    """Fail unless ``answer`` is what the document says ``method template`` answers."""
    doc = document()
    operation = doc["paths"][template][method.lower()]
    documented = operation["responses"]
    assert str(answer.status) in documented, (
        f"{method} {template} answered {answer.status}, not documented: {answer.body}"
    )
    response = _resolve(doc, documented[str(answer.status)])
    content = response.get("content", {})
    assert answer.media_type in content, (answer.media_type, list(content))
    schema = {**content[answer.media_type]["schema"], "components": doc["components"]}
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(answer.body)
    declared = {name.lower() for name in response.get("headers", {})}
    for name in _CHECKED_HEADERS:
        if name.lower() in {h.lower() for h in answer.headers}:
            assert name.lower() in declared, f"{name} not declared for {answer.status}"


def invoke(
    name: str,
    *,
    id: str | None = None,
    body: bytes | dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> Answer:
    """Call HTTP function ``name`` as the host would; the answer is checked (``check``)."""
    function, trigger = http_functions()[name]
    method = trigger["methods"][0].value
    route = trigger["route"]
    path = "/api/" + route.replace("{id}", quote(id or "", safe=""))
    raw = json.dumps(body).encode() if isinstance(body, dict) else (body or b"")
    request = func.HttpRequest(
        method,
        "http://localhost:7071" + path,
        headers={"Content-Type": "application/json"},
        params=params or {},
        route_params={"id": id} if id is not None else {},
        body=raw,
    )
    response = function(request)
    text = response.get_body()
    answer = Answer(
        status=response.status_code,
        media_type=response.mimetype,
        headers=dict(response.headers),
        body=json.loads(text) if text else None,
    )
    check(method, "/api/" + route, answer)
    return answer
