"""The host's pure parts: route templates, settings and %NAME% references, keys, connections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local.functions_host import keys as host_keys
from local.functions_host.blob_trigger import BlobPattern, normalize_etag
from local.functions_host.config import (
    HostStartError,
    apply_settings,
    default_host_id,
    read_host_json,
    read_local_settings,
    resolve_references,
)
from local.functions_host.routes import RouteError, RouteTemplate
from local.functions_host.storage import resolve_connection

# --- routes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("health", "/health", {}),
        ("health", "/HEALTH/", {}),
        ("health", "/healthz", None),
        ("runs/{id}", "/runs/abc", {"id": "abc"}),
        ("runs/{id}", "/runs/a%20b", {"id": "a b"}),
        ("runs/{id}", "/runs", None),
        ("runs/{id}", "/runs/a/b", None),
        ("runs/{id}/events", "/runs/7/events", {"id": "7"}),
        ("items/{id:int}", "/items/42", {"id": "42"}),
        ("items/{id:int}", "/items/-3", {"id": "-3"}),
        ("items/{id:int}", "/items/4x", None),
        ("items/{id:int}", "/items/99999999999", None),
        ("items/{id:long}", "/items/99999999999", {"id": "99999999999"}),
        ("items/{id:int:min(1)}", "/items/0", None),
        ("items/{id:range(1,5)}", "/items/5", {"id": "5"}),
        ("items/{id:range(1,5)}", "/items/6", None),
        ("tags/{tag:alpha}", "/tags/blue", {"tag": "blue"}),
        ("tags/{tag:alpha}", "/tags/blue2", None),
        ("flags/{on:bool}", "/flags/True", {"on": "True"}),
        (
            "runs/{id:guid}",
            "/runs/9f0d8a2e-5f5b-4bb7-a0fa-0a8b5f3d2b11",
            {"id": "9f0d8a2e-5f5b-4bb7-a0fa-0a8b5f3d2b11"},
        ),
        ("runs/{id:guid}", "/runs/nope", None),
        ("names/{name:minlength(3):maxlength(5)}", "/names/abcd", {"name": "abcd"}),
        ("names/{name:length(2)}", "/names/abc", None),
        ("codes/{code:regex(^[a-z]{{2}}\\d+$)}", "/codes/ab12", {"code": "ab12"}),
        ("files/{name}.{ext}", "/files/report.txt", {"name": "report", "ext": "txt"}),
        ("files/{*path}", "/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        ("files/{*path}", "/files", {}),
        ("page/{number?}", "/page", {}),
        ("page/{number?}", "/page/2", {"number": "2"}),
        ("page/{number=1}", "/page", {"number": "1"}),
        ("", "/", {}),
    ],
)
def test_route_templates(template: str, path: str, expected: dict[str, str] | None) -> None:
    assert RouteTemplate(template).match(path) == expected


@pytest.mark.parametrize(
    "template",
    [
        "runs/{id:nosuch}",
        "runs/{id}/{id}",
        "runs/{*rest}/more",
        "runs/{a?}/more",
        "runs//x",
        "runs/{1bad}",
        "runs/{id",
    ],
)
def test_bad_route_templates_are_rejected(template: str) -> None:
    with pytest.raises(RouteError):
        RouteTemplate(template)


def test_literal_segments_take_precedence_over_parameters() -> None:
    templates = ["files/{*rest}", "files/{name}", "files/{id:int}", "files/latest"]
    ordered = sorted((RouteTemplate(t) for t in templates), key=lambda r: r.precedence)

    assert [r.template for r in ordered] == [
        "files/latest",
        "files/{id:int}",
        "files/{name}",
        "files/{*rest}",
    ]


# --- blob paths ---------------------------------------------------------------------------


def test_blob_patterns() -> None:
    assert BlobPattern("{name}").match("a/b.jsonl") == {"name": "a/b.jsonl"}
    assert BlobPattern("{name}").prefix == ""
    incoming = BlobPattern("incoming/{name}.jsonl")
    assert incoming.prefix == "incoming/"
    assert incoming.match("incoming/x.jsonl") == {"name": "x"}
    assert incoming.match("incoming/x.csv") is None
    assert incoming.match("other/x.jsonl") is None
    assert BlobPattern("").match("anything") == {}
    assert normalize_etag("0x8DC") == normalize_etag('"0x8DC"') == '"0x8DC"'


# --- settings --------------------------------------------------------------------------------


def test_references_resolve_from_settings_and_name_what_is_missing() -> None:
    settings = {"CONTAINER": "datasets", "EMPTY": ""}

    assert resolve_references("%CONTAINER%/{name}", settings, where="path") == (
        "datasets/{name}",
        [],
    )
    _, problems = resolve_references("%NOPE%/%EMPTY%/{name}", settings, where="function 'f'")
    assert problems == [
        "function 'f' refers to app setting %NOPE%, which is not set",
        "function 'f' refers to app setting %EMPTY%, which is empty",
    ]


def test_local_settings_are_read_like_core_tools(tmp_path: Path) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(
        json.dumps({"IsEncrypted": False, "Values": {"A": "1"}, "Host": {"LocalHttpPort": 7072}})
    )

    settings = read_local_settings(path)

    assert settings.values == {"A": "1"}
    assert settings.local_http_port == 7072


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"Values": {"A": 1}}, "must be a string"),
        ({"IsEncrypted": True, "Values": {}}, "encrypted settings"),
        ({"Values": []}, "'Values' must be an object"),
        ([], "expected a JSON object"),
    ],
)
def test_bad_local_settings_are_start_up_errors(
    tmp_path: Path, document: object, complaint: str
) -> None:
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps(document))

    with pytest.raises(HostStartError, match=complaint):
        read_local_settings(path)


def test_the_environment_wins_over_the_settings_file_unless_told_otherwise() -> None:
    environ = {"A": "from the environment"}

    apply_settings({"A": "from the file", "B": "b"}, environ)
    assert environ == {"A": "from the environment", "B": "b"}

    apply_settings({"A": "from the file"}, environ, override=True)
    assert environ["A"] == "from the file"


def test_host_json_defaults_and_overrides(tmp_path: Path) -> None:
    assert read_host_json(tmp_path).route_prefix == "api"
    assert read_host_json(tmp_path).blob_max_attempts == 5
    (tmp_path / "host.json").write_text(
        json.dumps(
            {
                "version": "2.0",
                "extensions": {
                    "http": {"routePrefix": ""},
                    "queues": {"maxDequeueCount": 3},
                    "blobs": {"maxDegreeOfParallelism": 2},
                },
            }
        )
    )

    host_json = read_host_json(tmp_path)

    assert (host_json.route_prefix, host_json.blob_max_attempts, host_json.blob_parallelism) == (
        "",
        3,
        2,
    )


def test_the_default_host_id_is_stable_short_and_lower_case(tmp_path: Path) -> None:
    app_dir = tmp_path / "My_Function.App-with-a-very-long-directory-name"
    app_dir.mkdir()

    host_id = default_host_id(app_dir)

    assert host_id == default_host_id(app_dir)
    assert len(host_id) <= 32
    assert host_id == host_id.lower()
    assert default_host_id(tmp_path) != host_id


# --- keys ----------------------------------------------------------------------------------------


def test_keys_are_created_once_and_kept(tmp_path: Path) -> None:
    first = host_keys.load_or_create(tmp_path)
    second = host_keys.load_or_create(tmp_path)

    assert first == second
    assert len({first.master_key, first.function_key, first.system_key("eventgrid_extension")}) == 3
    assert (tmp_path / "host_keys.json").stat().st_mode & 0o077 == 0
    with pytest.raises(KeyError, match="no system key 'other'"):
        first.system_key("other")


def test_settings_override_the_stored_keys(tmp_path: Path) -> None:
    stored = host_keys.load_or_create(tmp_path)

    keys = host_keys.with_overrides(
        stored,
        {
            "FUNCTIONS_HOST_MASTER_KEY": "master",
            "FUNCTIONS_HOST_FUNCTION_KEY": "function",
            "FUNCTIONS_HOST_SYSTEM_KEY_EVENTGRID_EXTENSION": "system",
        },
    )

    assert (keys.master_key, keys.function_key, keys.system_key("eventgrid_extension")) == (
        "master",
        "function",
        "system",
    )
    assert keys.allows_function("function") and keys.allows_function("master")
    assert not keys.allows_function("system") and not keys.allows_function(None)
    assert keys.is_master("master") and not keys.is_master("function")
    assert keys.allows_system("eventgrid_extension", "system")
    assert keys.allows_system("eventgrid_extension", "master")
    assert not keys.allows_system("eventgrid_extension", "function")


# --- connections ---------------------------------------------------------------------------------


def test_connections_from_connection_strings_and_identity_settings() -> None:
    azurite = resolve_connection(
        "C",
        {
            "C": "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
            "BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"
            "QueueEndpoint=http://127.0.0.1:2/devstoreaccount1;"
        },
    )
    assert (azurite.blob_url, azurite.queue_url) == (
        "http://127.0.0.1:1/devstoreaccount1",
        "http://127.0.0.1:2/devstoreaccount1",
    )
    assert not azurite.uses_identity

    cloud = resolve_connection("C", {"C": "AccountName=acct;AccountKey=a2V5"})
    assert cloud.blob_url == "https://acct.blob.core.windows.net"
    assert cloud.queue_url == "https://acct.queue.core.windows.net"

    identity = resolve_connection(
        "DATA",
        {
            "DATA__blobServiceUri": "https://acct.blob.core.windows.net/",
            "DATA__queueServiceUri": "https://acct.queue.core.windows.net",
        },
    )
    assert identity.uses_identity
    assert identity.blob_url == "https://acct.blob.core.windows.net"
    assert identity.queue_url == "https://acct.queue.core.windows.net"

    host = resolve_connection("AzureWebJobsStorage", {"AzureWebJobsStorage__accountName": "a"})
    assert host.blob_url == "https://a.blob.core.windows.net"

    with pytest.raises(HostStartError, match="DATASET_STORAGE__blobServiceUri"):
        resolve_connection("DATASET_STORAGE", {})
