"""The host's HTTP front: routes, route parameters, auth levels, errors, Event Grid webhook."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from local.azurite import Azurite
from local.functions_host import FunctionsHost
from local.ports import free_port
from tests.support.azureml import wait_until
from tests.support.functions_host import Records, app_values, write_test_app

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> Records:
    return Records(tmp_path_factory.mktemp("http-records") / "records.jsonl")


@pytest.fixture(scope="module")
def host(
    tmp_path_factory: pytest.TempPathFactory, azurite: Azurite, records: Records
) -> Iterator[FunctionsHost]:
    """One host for the module: these tests only send requests."""
    app_dir = write_test_app(tmp_path_factory.mktemp("http-app"))
    values = app_values(azurite.connection_string, records.path)
    with FunctionsHost(app_dir, values, port=free_port()) as running:
        yield running


def _get(host: FunctionsHost, route: str, **kwargs: Any) -> requests.Response:
    return requests.get(host.url(route), timeout=10, **kwargs)


# --- routes and auth levels --------------------------------------------------------------


def test_an_anonymous_route_needs_no_key(host: FunctionsHost) -> None:
    answer = _get(host, "hello/world")

    assert answer.status_code == 200
    assert answer.text == "hello world"
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_a_function_route_without_a_key_or_with_a_wrong_one_is_401_with_no_body(
    host: FunctionsHost,
) -> None:
    for answer in (
        _get(host, "items/7/x"),
        _get(host, "items/7/x", headers={"x-functions-key": "wrong"}),
        _get(host, "items/7/x", params={"code": "wrong"}),
    ):
        assert answer.status_code == 401
        assert answer.content == b""


def test_a_function_key_works_in_the_header_and_in_the_code_parameter(
    host: FunctionsHost,
) -> None:
    by_header = _get(host, "items/7/x", headers={"x-functions-key": host.function_key})
    by_code = _get(host, "items/7/x", params={"code": host.function_key})
    by_master = _get(host, "items/7/x", headers={"x-functions-key": host.master_key})

    assert [a.status_code for a in (by_header, by_code, by_master)] == [201, 201, 201]


def test_an_admin_route_needs_the_master_key(host: FunctionsHost) -> None:
    assert _get(host, "admin-only").status_code == 401
    assert _get(host, "admin-only", params={"code": host.function_key}).status_code == 401

    answer = _get(host, "admin-only", headers={"x-functions-key": host.master_key})
    assert answer.status_code == 200
    assert answer.text == "admin ok"


def test_the_request_reaches_the_function_whole_and_the_response_comes_back_whole(
    host: FunctionsHost,
) -> None:
    answer = requests.post(
        host.url("items/42/a/b%20c"),
        params={"code": host.function_key, "q": "x", "many": ["1", "2"]},
        headers={"X-Test": "header value"},
        data=b'{"hello": "body"}',
        timeout=10,
    )

    assert answer.status_code == 201
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["X-Handled-By"] == "item"
    seen = answer.json()
    assert seen["method"] == "POST"
    assert seen["route_params"] == {"id": "42", "rest": "a/b c"}
    assert seen["params"]["q"] == "x"
    assert seen["params"]["many"] == "1,2"
    assert seen["x_test"] == "header value"
    assert seen["body"] == '{"hello": "body"}'
    assert seen["url"].startswith(f"{host.base_url}/api/items/42/a/b%20c?")


def test_a_route_constraint_that_does_not_hold_is_404(host: FunctionsHost) -> None:
    answer = _get(host, "items/not-a-number/x", headers={"x-functions-key": host.function_key})

    assert answer.status_code == 404


def test_a_literal_segment_wins_over_a_parameter(host: FunctionsHost) -> None:
    assert _get(host, "files/latest").text == "the latest file"
    assert _get(host, "files/report.txt").text == "file report.txt"


def test_unknown_routes_and_methods_are_404(host: FunctionsHost) -> None:
    assert _get(host, "no/such/route").status_code == 404
    assert requests.delete(host.url("hello/world"), timeout=10).status_code == 404
    assert requests.get(f"{host.base_url}/elsewhere", timeout=10).status_code == 404


def test_an_exception_in_the_function_is_a_500_and_is_logged(host: FunctionsHost) -> None:
    answer = _get(host, "boom")

    assert answer.status_code == 500
    wait_until(
        host.log_text,
        lambda log: "boom on purpose" in log,
        what="the exception in the host's log",
    )
    assert "Executed 'Functions.boom' (Failed" in host.log_text()


# --- Event Grid ------------------------------------------------------------------------------


def _event(**data: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.MachineLearningServices"
        "/workspaces/ws",
        "subject": "experiments/e/runs/r",
        "eventType": "Microsoft.MachineLearningServices.RunCompleted",
        "eventTime": "2024-05-01T12:30:45.1234567Z",
        "dataVersion": "2",
        "data": data,
    }


def _deliver(
    host: FunctionsHost, events: list[dict[str, Any]], kind: str, **params: str
) -> requests.Response:
    return requests.post(
        f"{host.base_url}/runtime/webhooks/eventgrid",
        params={"functionName": "on_event", **params},
        headers={"aeg-event-type": kind},
        json=events,
        timeout=10,
    )


def test_the_eventgrid_webhook_needs_the_system_key(host: FunctionsHost) -> None:
    events = [_event(n=1)]

    assert _deliver(host, events, "Notification").status_code == 401
    assert _deliver(host, events, "Notification", code="wrong").status_code == 401
    assert _deliver(host, events, "Notification", code=host.function_key).status_code == 401


def test_the_subscription_validation_handshake(host: FunctionsHost) -> None:
    validation = {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/x",
        "subject": "",
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2024-05-01T12:00:00Z",
        "dataVersion": "1",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
    }

    answer = _deliver(
        host, [validation], "SubscriptionValidation", code=host.system_key("eventgrid_extension")
    )

    assert answer.status_code == 200
    assert answer.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


def test_a_notification_invokes_the_function_once_per_event(
    host: FunctionsHost, records: Records
) -> None:
    first, second = _event(n=1), _event(n=2)

    answer = _deliver(
        host, [first, second], "Notification", code=host.system_key("eventgrid_extension")
    )

    assert answer.status_code == 200
    seen = {r["id"]: r for r in records.of("event") if r["id"] in (first["id"], second["id"])}
    assert seen[first["id"]] == {
        "kind": "event",
        "at": seen[first["id"]]["at"],
        "id": first["id"],
        "topic": first["topic"],
        "subject": "experiments/e/runs/r",
        "event_type": "Microsoft.MachineLearningServices.RunCompleted",
        "event_time": "2024-05-01T12:30:45.123456+00:00",
        "data_version": "2",
        "data": {"n": 1},
    }
    assert seen[second["id"]]["data"] == {"n": 2}


def test_a_failed_event_answers_500_so_event_grid_delivers_again(
    host: FunctionsHost, records: Records
) -> None:
    good, bad = _event(n=3), _event(fail=True)

    answer = requests.post(
        host.eventgrid_url("on_event"),
        headers={"aeg-event-type": "Notification"},
        json=[bad, good],
        timeout=10,
    )

    assert answer.status_code == 500
    delivered = {r["id"] for r in records.of("event")}
    assert {good["id"], bad["id"]} <= delivered


def test_the_webhook_for_an_unknown_function_is_404(host: FunctionsHost) -> None:
    answer = requests.post(
        f"{host.base_url}/runtime/webhooks/eventgrid",
        params={"functionName": "no_such_function", "code": host.system_key("eventgrid_extension")},
        headers={"aeg-event-type": "Notification"},
        json=[_event()],
        timeout=10,
    )

    assert answer.status_code == 404


def test_the_master_key_also_opens_the_webhook(host: FunctionsHost) -> None:
    answer = _deliver(host, [_event(n=4)], "Notification", code=host.master_key)

    assert answer.status_code == 200
