"""The deployment template against the code: settings, roles, functions, runtime.

Everything the template must provide is computed from the code where the code
says it (``load_settings({})``'s problems, ``shared.domain.permissions``, the app's
function metadata, ``pyproject.toml``); the checks themselves live in
``bicep_contract.py`` and return problems, so the last tests can break a copy
of the template and watch them fail with a message naming what is missing.

The template is parsed by pycep in ``.venv-iac`` (``make check-infra`` creates
it); without that venv these tests skip.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.domain.errors import SettingsError
from shared.domain.permissions import APP_ROLES, TRAINING_ROLES, Role, Scope
from shared.domain.settings import DATASET_CONNECTION, LEDGER_CONNECTION, load_settings
from tests.infra.bicep_contract import (
    ROOT_FILE,
    Template,
    check_forbidden_settings,
    check_identity,
    check_platform,
    check_posture,
    check_roles,
    check_setting_values,
    check_settings,
    function_app,
    parse_infra,
    scope_roots,
    setting_value,
)

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
HOOK = ROOT / "scripts" / "postdeploy.sh"
PARSER = Path(__file__).with_name("parse_bicep.py")
SERVICE = "api"  # the azd service (azure.yaml) and the Function App's azd-service-name tag

# Which app setting names the resource of each scope in shared/domain/permissions.py.
SCOPE_SETTINGS = {
    Scope.WORKSPACE: "AZUREML_WORKSPACE",
    Scope.HOST_STORAGE: f"{LEDGER_CONNECTION}__blobServiceUri",
    Scope.DATASET_STORAGE: f"{DATASET_CONNECTION}__blobServiceUri",
    Scope.EVENTS_TOPIC: "EVENTS_TOPIC_ENDPOINT",
    Scope.APP_INSIGHTS: "APPLICATIONINSIGHTS_CONNECTION_STRING",
}

# What the deployment itself must pin, beyond what the code requires: the
# identity plumbing, and values whose app defaults are wrong on Azure.
DEPLOYMENT_SETTINGS: list[tuple[str, ...]] = [
    ("AZURE_CLIENT_ID",),  # DefaultAzureCredential -> the user-assigned identity
    ("APPLICATIONINSIGHTS_CONNECTION_STRING",),
    ("APPLICATIONINSIGHTS_AUTHENTICATION_STRING",),
    ("ENDPOINT_NAME",),  # the default is not unique in the region
    ("DATASET_CONTAINER",),  # must be the container the template creates
    ("WORK_CONTAINER",),  # likewise, and apart from it (the app's writes must not trigger)
    ("RUN_TABLE",),
    ("EVENTS_TOPIC_ENDPOINT",),  # events go to the template's topic
    ("EVENTS_SOURCE",),
]
FIXED_VALUES = {
    "DATASET_TRIGGER_SOURCE": "EventGrid",  # Flex Consumption: the only blob trigger source
    f"{LEDGER_CONNECTION}__credential": "managedidentity",
    f"{DATASET_CONNECTION}__credential": "managedidentity",
}
FORBIDDEN = {
    "FUNCTIONS_WORKER_RUNTIME": "Flex takes the runtime from functionAppConfig.runtime",
    "FUNCTIONS_EXTENSION_VERSION": "not used on Flex Consumption",
    "WEBSITE_RUN_FROM_PACKAGE": "Flex deploys from functionAppConfig.deployment",
    LEDGER_CONNECTION: "a connection string: the host uses the identity (__credential)",
    DATASET_CONNECTION: "a connection string: the trigger uses the identity (__credential)",
    "AzureWebJobsDashboard": "key-based, retired",
    "APPINSIGHTS_INSTRUMENTATIONKEY": "key-based telemetry; local auth is off",
    "EVENTS_TOPIC_KEY": "the topic has local auth off; the app publishes with its identity",
    "AZUREML_DEV_URL_MFE": "points the SDK at the local emulator",
    "REQUESTS_CA_BUNDLE": "the local emulator's certificate bundle",
    "IDENTITY_ENDPOINT": "the local managed-identity stand-in; Azure sets its own",
    "IDENTITY_HEADER": "the local managed-identity stand-in; Azure sets its own",
}
AZD_PROVIDED = {"AZURE_SUBSCRIPTION_ID", "AZURE_ENV_NAME", "AZURE_LOCATION", "AZURE_PRINCIPAL_ID"}


def _iac_python() -> Path:
    configured = os.environ.get("IAC_PYTHON")
    return Path(configured) if configured else ROOT / ".venv-iac" / "bin" / "python"


def _parse(root: Path) -> Template:
    python = _iac_python()
    if not python.exists():
        pytest.skip(f"{python} is missing: `make check-infra` creates the IaC venv (pycep)")
    return Template(parse_infra(root, python, PARSER)["files"])


@pytest.fixture(scope="module")
def template() -> Template:
    return _parse(INFRA)


# -- what the code says -------------------------------------------------------------------


def required_by_settings() -> list[tuple[str, ...]]:
    """The settings ``load_settings`` cannot do without: each problem of an empty environment."""
    with pytest.raises(SettingsError) as caught:
        load_settings({})
    required: list[tuple[str, ...]] = []
    for problem in caught.value.problems:
        match = re.match(r"^([A-Za-z_]\w*(?: or [A-Za-z_]\w*)*) is missing", problem)
        if match:
            required.append(tuple(match.group(1).split(" or ")))
    return required


def required_connections(functions: dict[str, list[dict[str, Any]]]) -> list[tuple[str, ...]]:
    """The identity-based connection settings the code's clients and the host read."""
    # shared/composition.py: the ledger is a table of LEDGER_CONNECTION, the datasets
    # are blobs of DATASET_CONNECTION; the host's own storage needs all three.
    required: list[tuple[str, ...]] = [
        (f"{LEDGER_CONNECTION}__tableServiceUri",),
        (f"{DATASET_CONNECTION}__blobServiceUri",),
        (f"{LEDGER_CONNECTION}__blobServiceUri",),
        (f"{LEDGER_CONNECTION}__queueServiceUri",),
        (f"{LEDGER_CONNECTION}__clientId",),
    ]
    for bindings in functions.values():
        for binding in bindings:
            if binding["type"] == "blobTrigger":
                # A blob trigger's connection needs its queue service too (poison messages).
                connection = binding["connection"]
                for part in ("blobServiceUri", "queueServiceUri", "credential", "clientId"):
                    required.append((f"{connection}__{part}",))
    return required


@functools.cache
def function_metadata(trigger_source: str) -> dict[str, list[dict[str, Any]]]:
    """The app's functions and bindings as the host indexes them, in a fresh interpreter.

    DATASET_TRIGGER_SOURCE shapes the blob trigger at import, so the app is
    imported anew with the template's value, as it is on Azure.
    """
    script = (
        "import json, function_app; print(json.dumps({f.get_function_name(): "
        "[b.get_dict_repr() for b in f.get_bindings()] "
        "for f in function_app.app.get_functions()}, default=str))"
    )
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)}
    env["DATASET_TRIGGER_SOURCE"] = trigger_source
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    functions: dict[str, list[dict[str, Any]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return functions


def python_version() -> str:
    """``requires-python`` of pyproject.toml (``>=3.11,<3.12``) as the Flex runtime version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    match = re.search(r">=\s*(\d+\.\d+)", project["requires-python"])
    assert match, project["requires-python"]
    return match.group(1)


def role_table(table: dict[Scope, tuple[Role, ...]]) -> dict[str, list[tuple[str, str]]]:
    return {str(scope): [(r.name, r.guid) for r in roles] for scope, roles in table.items()}


def all_problems(t: Template) -> list[str]:
    """Every check of this module on one template (the mutation tests use this)."""
    app, problems = function_app(t)
    if app is None:
        return problems
    source = setting_value(t, app, "DATASET_TRIGGER_SOURCE") or ""
    functions = function_metadata(str(source))
    required = required_by_settings() + required_connections(functions) + DEPLOYMENT_SETTINGS
    return [
        *check_settings(t, required, "the app needs it on Azure"),
        *check_setting_values(t, FIXED_VALUES),
        *check_forbidden_settings(t, FORBIDDEN),
        *check_identity(t),
        *check_platform(t, python_version(), SERVICE),
        *check_posture(t),
        *check_roles(
            t,
            app_roles=role_table(APP_ROLES),
            training_roles=role_table(TRAINING_ROLES),
            scope_settings={str(k): v for k, v in SCOPE_SETTINGS.items()},
            workspace_setting=SCOPE_SETTINGS[Scope.WORKSPACE],
        ),
    ]


# -- the template as it is -------------------------------------------------------------------


def test_the_code_requires_what_the_checks_look_for() -> None:
    # Guards against a vacuous pass: the derived list must hold the known essentials.
    required = {name for names in required_by_settings() for name in names}
    assert {"AZURE_SUBSCRIPTION_ID", "AZUREML_WORKSPACE", "FINETUNE_BASE_MODEL"} <= required
    assert {"FINETUNE_COMPUTE", "FINETUNE_INSTANCE_TYPES"} <= required
    assert set(SCOPE_SETTINGS) >= set(APP_ROLES) | set(TRAINING_ROLES)


def test_every_setting_the_code_requires_is_set(template: Template) -> None:
    app, problems = function_app(template)
    assert app is not None, problems
    functions = function_metadata(str(setting_value(template, app, "DATASET_TRIGGER_SOURCE")))
    required = required_by_settings() + required_connections(functions)
    assert check_settings(template, required, "required by the code") == []
    assert check_settings(template, DEPLOYMENT_SETTINGS, "required on Azure") == []
    assert check_setting_values(template, FIXED_VALUES) == []


def test_the_template_values_pass_the_apps_own_validation(template: Template) -> None:
    # Literal values (parameter defaults) as the app will read them; values only
    # known at deployment (resource names, endpoints) take their example values.
    app, problems = function_app(template)
    assert app is not None, problems
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    env = {}
    for name in app.settings:
        value = setting_value(template, app, name)
        env[name] = value if isinstance(value, str) else example.get(name, "runtime-value")
    settings = load_settings(env)  # raises SettingsError naming each bad value
    assert settings.dataset_container == setting_value(template, app, "DATASET_CONTAINER")
    assert settings.work_container == setting_value(template, app, "WORK_CONTAINER")


def test_the_app_writes_into_a_container_of_its_own(template: Template) -> None:
    # Both settings name containers the template creates, and not the same one:
    # the app's outputs must not land where the blob trigger listens.
    app, problems = function_app(template)
    assert app is not None, problems
    kind = "Microsoft.Storage/storageAccounts/blobServices/containers"
    roots = {}
    for setting in ("DATASET_CONTAINER", "WORK_CONTAINER"):
        created = [r for r in scope_roots(template, app, setting) if r.kind == "resource"]
        types = [template.declared(r) for r in created]
        assert created and all(t is not None and t[0] == kind for t in types), (
            f"{setting} names no container the template creates: {created}"
        )
        roots[setting] = set(created)
    assert roots["DATASET_CONTAINER"].isdisjoint(roots["WORK_CONTAINER"])
    assert setting_value(template, app, "WORK_CONTAINER") != setting_value(
        template, app, "DATASET_CONTAINER"
    )


def test_no_key_based_or_local_only_settings(template: Template) -> None:
    assert check_forbidden_settings(template, FORBIDDEN) == []


def test_one_user_assigned_identity_for_host_trigger_and_code(template: Template) -> None:
    assert check_identity(template) == []


def test_flex_consumption_python_runtime_and_azd_tag(template: Template) -> None:
    assert check_platform(template, python_version(), SERVICE) == []


def test_storage_telemetry_and_events_are_identity_only(template: Template) -> None:
    assert check_posture(template) == []


def test_every_role_of_shared_permissions_is_assigned(template: Template) -> None:
    assert (
        check_roles(
            template,
            app_roles=role_table(APP_ROLES),
            training_roles=role_table(TRAINING_ROLES),
            scope_settings={str(k): v for k, v in SCOPE_SETTINGS.items()},
            workspace_setting=SCOPE_SETTINGS[Scope.WORKSPACE],
        )
        == []
    )


def test_the_hook_subscribes_functions_that_exist_with_the_right_triggers(
    template: Template,
) -> None:
    app, problems = function_app(template)
    assert app is not None, problems
    source = str(setting_value(template, app, "DATASET_TRIGGER_SOURCE"))
    functions = function_metadata(source)
    hook = HOOK.read_text()
    webhooks = set(re.findall(r"functionName=Host\.Functions\.(\w+)", hook))
    destinations = set(re.findall(r"/functions/(\w+)", hook))
    assert webhooks and destinations, "the hook subscribes no function"
    for name in webhooks:
        assert name in functions, f"the hook's webhook names {name}, not a function of the app"
        triggers = [b for b in functions[name] if b["type"] == "blobTrigger"]
        assert triggers, f"{name} is not a blob trigger"
        assert triggers[0]["source"] == "EventGrid", (
            f"{name} must use the Event Grid source (DATASET_TRIGGER_SOURCE={source})"
        )
        container = triggers[0]["path"].split("/", 1)[0]
        assert container == "%DATASET_CONTAINER%", triggers[0]["path"]
    for name in destinations:
        assert name in functions, f"the hook's AzureFunction endpoint names {name}, not a function"
        assert [b for b in functions[name] if b["type"] == "eventGridTrigger"], (
            f"{name} is not an Event Grid trigger"
        )


def test_the_hook_reads_only_values_the_template_outputs(template: Template) -> None:
    outputs = template.files[ROOT_FILE]["outputs"]
    read = set(re.findall(r"\$\(azd_value ([A-Z][A-Z0-9_]*)\)", HOOK.read_text()))
    assert read, "the hook reads no azd value"
    assert read - AZD_PROVIDED - set(outputs) == set()
    # The container the hook filters on is the one the app watches.
    app, _ = function_app(template)
    assert app is not None
    root = template.contexts().__next__()
    assert template.value(outputs["DATASET_CONTAINER"]["value"], root) == setting_value(
        template, app, "DATASET_CONTAINER"
    )


def test_azure_yaml_deploys_this_folder_as_the_function_app() -> None:
    config = yaml.safe_load((ROOT / "azure.yaml").read_text())
    service = config["services"][SERVICE]
    assert (service["project"], service["language"], service["host"]) == (
        ".",
        "python",
        "function",
    )
    hook = config["hooks"]["postdeploy"]["posix"]
    assert hook["shell"] == "sh"
    script = ROOT / hook["run"]
    assert script.resolve() == HOOK.resolve() and os.access(script, os.X_OK)


def test_the_parameters_file_matches_main_bicep(template: Template) -> None:
    declared = template.files[ROOT_FILE]["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(declared), f"unknown parameters: {set(given) - set(declared)}"
    without_default = {name for name, p in declared.items() if p.get("default") is None}
    assert without_default <= set(given), f"not supplied: {without_default - set(given)}"
    for name, entry in given.items():
        match = re.fullmatch(r"\$\{\w+=(.*)\}", entry["value"])
        default = declared[name].get("default")
        if match and isinstance(default, str):
            assert match.group(1) == default, f"{name}: {match.group(1)!r} != {default!r}"


def test_the_hook_is_posix_sh() -> None:
    done = subprocess.run(["sh", "-n", str(HOOK)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert HOOK.read_text().startswith("#!/bin/sh\n")
    assert "set -eu" in HOOK.read_text()


# -- the acceptance point: break a copy, the checks say what is missing --------------------


def _remove_line(text: str, pattern: str) -> str:
    lines = [line for line in text.splitlines(keepends=True) if not re.search(pattern, line)]
    return "".join(lines)


def _remove_resource(text: str, symbol: str) -> str:
    """Delete ``resource <symbol> ... = {`` through its closing ``}`` at column 0."""
    match = re.search(rf"^resource {symbol} .*$", text, re.M)
    assert match, symbol
    end = text.index("\n}\n", match.end()) + 3
    return text[: match.start()] + text[end:]


def _broken_copy(tmp_path: Path, file: str, edit: Callable[[str], str]) -> Template:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    target = copy / file
    before = target.read_text()
    after = edit(before)
    assert after != before, "the edit changed nothing"
    target.write_text(after)
    return _parse(copy)


BREAKAGES = {
    "a required app setting": (
        "app/api.bicep",
        lambda text: _remove_line(text, r"name: 'AZUREML_WORKSPACE'"),
        ["AZUREML_WORKSPACE is not set"],
    ),
    "the ledger's connection": (
        "app/api.bicep",
        lambda text: _remove_line(text, r"name: 'AzureWebJobsStorage__tableServiceUri'"),
        ["AzureWebJobsStorage__tableServiceUri is not set"],
    ),
    "the app's table role": (
        "app/rbac.bicep",
        lambda text: _remove_resource(text, "appHostTable"),
        ["missing role assignment: Storage Table Data Contributor"],
    ),
    "the app's workspace role": (
        "app/workspace-access.bicep",
        lambda text: _remove_resource(text, "appOnWorkspace"),
        ["missing role assignment: AzureML Data Scientist"],
    ),
    "the training identity's role": (
        "app/rbac.bicep",
        lambda text: _remove_resource(text, "workspaceDatasetReader"),
        ["missing role assignment: Storage Blob Data Reader", "workspace's identity"],
    ),
    "the Python version": (
        "app/api.bicep",
        lambda text: text.replace("version: '3.11'", "version: '3.12'"),
        ["functionAppConfig.runtime is ('python', '3.12')"],
    ),
    "the Event Grid trigger source": (
        "app/api.bicep",
        lambda text: text.replace("value: 'EventGrid'", "value: 'LogsAndContainerScan'"),
        ["DATASET_TRIGGER_SOURCE must be 'EventGrid'"],
    ),
}


@pytest.mark.parametrize("what", sorted(BREAKAGES))
def test_a_broken_template_fails_naming_what_is_missing(tmp_path: Path, what: str) -> None:
    file, edit, expected = BREAKAGES[what]
    problems = all_problems(_broken_copy(tmp_path, file, edit))
    assert problems, f"removing {what} went unnoticed"
    text = "\n".join(problems)
    for fragment in expected:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


def test_the_intact_template_has_no_problems(template: Template) -> None:
    assert all_problems(template) == []
