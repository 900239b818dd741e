"""The app module: importable with no settings, every function indexable and well bound."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import azure.functions as func
import pytest
from azure.storage.blob import BlobClient

from tests.support.indexing import app_functions

ROOT = Path(__file__).resolve().parents[2]


def test_import_needs_no_settings_and_indexes_every_function() -> None:
    # A clean interpreter with an environment holding no app setting at all.
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    script = (
        "import function_app; "
        "print(','.join(f.get_function_name() for f in function_app.app.get_functions()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "health" in done.stdout.strip().split(",")


def test_binding_names_match_parameters() -> None:
    # The real worker drops functions whose binding names don't match their
    # parameters; get_functions() does not check it, so this test does.
    for function in app_functions():
        params = set(inspect.signature(function.get_user_function()).parameters)
        for binding in function.get_bindings():
            name = binding.get_dict_repr()["name"]
            if name != "$return":
                assert name in params, f"{function.get_function_name()}: binding {name!r}"


def test_the_health_route_without_settings_answers_503_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Up, but unable to reach its ledger: 503 with the reason, never a crash.
    # (200 with "ledger": "reachable" is tested against Azurite in tests/api.)
    import function_app
    from shared.composition import services

    for name in list(os.environ):
        if name.startswith(("AZURE", "FINETUNE", "DATASET", "RUN_", "AzureWebJobs")):
            monkeypatch.delenv(name)
    services.cache_clear()
    request = func.HttpRequest("GET", "http://localhost/api/health", body=b"")
    response = function_app.health_route(request)
    services.cache_clear()
    assert response.status_code == 503
    assert response.mimetype == "application/problem+json"
    body = json.loads(response.get_body())
    assert body["service"] == "finetune-autopilot" and body["ledger"] == "unknown"
    assert "AZURE_SUBSCRIPTION_ID is missing" in body["detail"]


def test_a_trigger_with_missing_settings_fails_with_the_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import function_app
    from shared.composition import services
    from shared.domain.errors import SettingsError

    for name in list(os.environ):
        if name.startswith(("AZURE", "FINETUNE", "DATASET", "RUN_", "AzureWebJobs")):
            monkeypatch.delenv(name)
    services.cache_clear()
    client = BlobClient.from_blob_url("https://account.blob.core.windows.net/datasets/a.jsonl")
    with pytest.raises(SettingsError) as caught:
        function_app.dataset_uploaded(client)
    services.cache_clear()
    message = str(caught.value)
    assert "AZURE_SUBSCRIPTION_ID is missing" in message
    assert "FINETUNE_BASE_MODEL is missing" in message


def test_the_blob_trigger_source_is_polling_unless_event_grid_is_chosen() -> None:
    script = (
        "import function_app; "
        "f = [f for f in function_app.app.get_functions() "
        "if f.get_function_name() == 'dataset_uploaded'][0]; "
        "print(f.get_bindings()[0].get_dict_repr()['source'])"
    )
    base = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    for env, expected in (
        (base, "LogsAndContainerScan"),
        ({**base, "DATASET_TRIGGER_SOURCE": "EventGrid"}, "EventGrid"),
    ):
        done = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


# Index the app as the worker does, call the read-only routes through the app's own
# functions, and report their statuses and which of Azure ML and the pipeline they loaded.
READ_ROUTES = r"""
import json, sys
import azure.functions as func
import function_app

functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
statuses = {}
for name, path, params in (
    ("health", "/api/health", {}),
    ("list_runs", "/api/runs", {}),
    ("get_run", "/api/runs/r-1", {"id": "r-1"}),
):
    request = func.HttpRequest("GET", "http://127.0.0.1" + path, body=b"", route_params=params)
    statuses[name] = functions[name](request).status_code
loaded = [name for name in ("azure.ai.ml", "shared.pipeline.reconciler") if name in sys.modules]
print(json.dumps({"statuses": statuses, "loaded": loaded}))
"""


def test_the_health_list_and_get_run_routes_never_import_azure_ml_or_the_pipeline() -> None:
    # Every setting valid, every service on a closed loopback port: the routes
    # build the app's services and fail fast on the ledger, with no network time.
    from local.azurite import ACCOUNT_KEY, ACCOUNT_NAME
    from local.ports import free_port

    closed = free_port()
    endpoint = f"http://127.0.0.1:{closed}/{ACCOUNT_NAME}"
    storage = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={endpoint};QueueEndpoint={endpoint};TableEndpoint={endpoint};"
    )
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "AzureWebJobsStorage": storage,
        "DATASET_STORAGE": storage,
        "DATASET_CONTAINER": "datasets",
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_RESOURCE_GROUP": "rg-cold",
        "AZUREML_WORKSPACE": "mlw-cold",
        "FINETUNE_BASE_MODEL": (
            "azureml://registries/azureml/models/mistralai-Mistral-7B-v01/versions/19"
        ),
        "FINETUNE_INSTANCE_TYPES": "Standard_NC24ads_A100_v4",
        "AZUREML_DEV_URL_MFE": f"http://127.0.0.1:{closed}",
    }
    done = subprocess.run(
        [sys.executable, "-c", READ_ROUTES],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # 503: the services were built and the ledger was tried (not a settings error).
    assert result["statuses"] == {"health": 503, "list_runs": 503, "get_run": 503}
    assert result["loaded"] == []
