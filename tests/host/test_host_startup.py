"""Starting the host: the real app loads and answers, bad apps and settings fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from local.azurite import Azurite
from local.functions_host import FunctionsHost, HostStartError
from local.ports import free_port
from tests.support.app import app_settings
from tests.support.functions_host import NEVER, app_values, write_test_app

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_the_real_app_loads_and_health_answers_anonymously(azurite: Azurite) -> None:
    # The app's settings on the local stack; the timer is kept out of the way.
    values = app_settings(azurite, RECONCILE_SCHEDULE=NEVER)
    with FunctionsHost(REPO_ROOT, values, port=free_port()) as host:
        answer = requests.get(host.url("health"), timeout=10)
        log = host.log_text()

    assert answer.status_code == 200
    assert answer.json()["status"] == "ok"
    for function in ("health", "dataset_uploaded", "reconcile_timer", "azureml_event"):
        assert f"        {function}: " in log  # listed at start, like Core Tools
    assert host.returncode == 0


def test_a_missing_setting_in_a_binding_is_a_clear_start_up_error(tmp_path: Path) -> None:
    app_dir = write_test_app(tmp_path / "app")
    values = app_values_without_storage(tmp_path)
    del values["WATCH_CONTAINER"]

    with pytest.raises(HostStartError) as raised:
        FunctionsHost(app_dir, values, port=free_port(), state_dir=tmp_path / "state").start()

    message = str(raised.value)
    assert "%WATCH_CONTAINER%" in message
    assert "function 'on_blob'" in message


def test_a_binding_without_its_parameter_is_a_start_up_error(tmp_path: Path) -> None:
    source = (
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "@app.route(route='x', auth_level=func.AuthLevel.ANONYMOUS)\n"
        "def x(request: func.HttpRequest) -> func.HttpResponse:\n"
        "    return func.HttpResponse('x')\n"
    )
    app_dir = write_test_app(tmp_path / "app", source)

    with pytest.raises(HostStartError) as raised:
        FunctionsHost(app_dir, {}, port=free_port(), state_dir=tmp_path / "state").start()

    assert "binding 'req' has no parameter of that name" in str(raised.value)


def test_an_invalid_schedule_is_a_start_up_error(tmp_path: Path) -> None:
    app_dir = write_test_app(tmp_path / "app")
    values = app_values_without_storage(tmp_path)
    values["TICK_SCHEDULE"] = "*/5 * * * *"

    with pytest.raises(HostStartError) as raised:
        FunctionsHost(app_dir, values, port=free_port(), state_dir=tmp_path / "state").start()

    assert "function 'tick'" in str(raised.value)
    assert "six" in str(raised.value)


def app_values_without_storage(tmp_path: Path) -> dict[str, str]:
    """Settings for the test app; these start-ups fail before any storage is reached."""
    return app_values("UseDevelopmentStorage=true", tmp_path / "records.jsonl")
