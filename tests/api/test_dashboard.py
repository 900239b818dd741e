"""The dashboard's route, called in-process as the host calls it: its files with their
media types and security headers, nothing else (no path reaches another file), pages
that load nothing from elsewhere and run no inline script, and the script's copy of
the run states and their rules kept equal to the domain's."""

from __future__ import annotations

import re

import azure.functions as func
import pytest

from shared.domain.runs import CANCELLABLE, RETRY_FROM, RunState
from shared.http import dashboard
from tests.api.contract import http_functions


def _get(file: str | None, path: str = "") -> func.HttpResponse:
    function, trigger = http_functions()["dashboard"]
    assert trigger["authLevel"].value == "anonymous"
    url = "http://localhost:7071/api/ui" + (f"/{path or file}" if file is not None else "")
    request = func.HttpRequest(
        "GET", url, headers={}, route_params={} if file is None else {"file": file}, body=b""
    )
    response: func.HttpResponse = function(request)
    return response


def _text(name: str) -> str:
    return (dashboard.STATIC / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "media_type", "marker"),
    [
        (None, "text/html", "<!doctype html>"),
        ("index.html", "text/html", "<!doctype html>"),
        ("app.js", "text/javascript", '"use strict";'),
        ("app.css", "text/css", ":root"),
    ],
)
def test_each_file_is_served_with_its_media_type_and_a_strict_policy(
    file: str | None, media_type: str, marker: str
) -> None:
    response = _get(file)
    assert response.status_code == 200
    assert response.mimetype == media_type
    assert marker in response.get_body().decode()
    headers = dict(response.headers)
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy and "frame-ancestors 'none'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "file",
    [
        "../function_app.py",
        "../../function_app.py",
        "..%2Fapi.py",
        "../api.py",
        "/etc/passwd",
        "static/app.js",
        "dashboard.py",
        "APP.JS",
        "app.js/",
        "app.js%00.html",
        ".",
    ],
)
def test_any_other_path_is_a_404_problem_that_reads_no_file(file: str) -> None:
    response = _get(file)
    assert response.status_code == 404
    assert response.mimetype == "application/problem+json"
    assert b"file-not-found" in response.get_body()
    assert "Content-Security-Policy" in dict(response.headers)


def test_the_page_loads_only_its_own_files_and_runs_no_inline_script() -> None:
    page = _text("index.html")
    assert re.findall(r'<script\b[^>]*\bsrc="([^"]+)"', page) == ["/api/ui/app.js"]
    assert len(re.findall(r"<script\b", page)) == 1  # no inline script
    assert re.findall(r'<link\b[^>]*\bhref="([^"]+)"', page) == ["/api/ui/app.css"]
    assert not re.search(r"\son[a-z]+=", page), "inline event handlers need 'unsafe-inline'"
    assert "style=" not in page
    for name in ("index.html", "app.js", "app.css"):
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", _text(name)), name


def test_the_script_never_parses_api_text_as_html() -> None:
    script = _text("app.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def _js_list(script: str, name: str) -> set[str]:
    found = re.search(rf"const {name} = (?:new Set\()?\[(.*?)\]", script, re.DOTALL)
    assert found, name
    return set(re.findall(r'"([A-Z_]+)"', found.group(1)))


def test_the_scripts_states_and_rules_are_the_domains() -> None:
    script = _text("app.js")
    assert _js_list(script, "STATES") == {s.value for s in RunState}
    assert _js_list(script, "TERMINAL") == {s.value for s in RunState if s.terminal}
    assert _js_list(script, "CANCELLABLE") == {s.value for s in CANCELLABLE}
    retryable = {s.value for s in RETRY_FROM} | {RunState.FAILED.value}
    assert _js_list(script, "RETRYABLE") == retryable
