"""scripts/postdeploy.sh, run against stand-ins of azd, az and curl.

The stand-ins record every call, so these tests see exactly which Event Grid
subscriptions the hook would create, and that it waits for the host's key
and for the azureml_event function. No network: curl and az are stubs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "scripts" / "postdeploy.sh"
APP = "func-abc123"
APP_ID = f"/subscriptions/s/resourceGroups/rg-dev/providers/Microsoft.Web/sites/{APP}"
VALUES = {
    "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_RESOURCE_GROUP": "rg-dev",
    "AZURE_FUNCTION_APP_NAME": APP,
    "AZURE_FUNCTION_APP_ID": APP_ID,
    "DATASET_CONTAINER": "datasets",
    "STORAGE_SYSTEM_TOPIC_NAME": "egst-st-abc123",
    "AZUREML_EVENTS_SYSTEM_TOPIC": "egst-mlw-abc123",
    "AZUREML_EVENTS_SYSTEM_TOPIC_RESOURCE_GROUP": "rg-ml",
}

# Each stub appends its arguments (unit-separated) as one line to $STUB_LOG.
AZ = r"""#!/bin/sh
{ printf 'az'; printf '\037%s' "$@"; printf '\n'; } >>"$STUB_LOG"
count() {
    n=$(cat "$STUB_DIR/$1" 2>/dev/null || echo 0)
    n=$((n + 1))
    echo "$n" >"$STUB_DIR/$1"
    echo "$n"
}
case "$1 $2 $3" in
"functionapp keys list")
    # The host is not up for the first KEY_AFTER calls.
    [ "$(count keys)" -gt "${KEY_AFTER:-1}" ] && echo "blob-key-42"
    exit 0 ;;
"functionapp function show")
    [ "$(count functions)" -gt 1 ] && exit 0
    exit 3 ;;
"eventgrid system-topic event-subscription")
    exit 0 ;;
esac
echo "az stub: unexpected call: $*" >&2
exit 2
"""
AZD = r"""#!/bin/sh
{ printf 'azd'; printf '\037%s' "$@"; printf '\n'; } >>"$STUB_LOG"
[ "$1 $2" = "env get-values" ] && cat "$STUB_DIR/values.env"
"""
CURL = r"""#!/bin/sh
{ printf 'curl'; printf '\037%s' "$@"; printf '\n'; } >>"$STUB_LOG"
"""


def run_hook(
    tmp_path: Path, values: dict[str, str], **env: str
) -> tuple[subprocess.CompletedProcess[str], list[list[str]]]:
    stubs = tmp_path / "bin"
    stubs.mkdir(parents=True)
    for name, text in (("az", AZ), ("azd", AZD), ("curl", CURL)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    (stubs / "values.env").write_text("".join(f'{k}="{v}"\n' for k, v in values.items()))
    log = tmp_path / "calls.log"
    done = subprocess.run(
        ["sh", str(HOOK)],
        env={
            "PATH": f"{stubs}:/usr/bin:/bin",
            "STUB_LOG": str(log),
            "STUB_DIR": str(stubs),
            "POSTDEPLOY_WAIT_SECONDS": "0",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = [line.split("\x1f") for line in log.read_text().splitlines()] if log.exists() else []
    return done, calls


def option(call: list[str], name: str) -> list[str]:
    """The values after ``name`` up to the next option."""
    start = call.index(name) + 1
    end = next((i for i in range(start, len(call)) if call[i].startswith("--")), len(call))
    return call[start:end]


def subscriptions(calls: list[list[str]]) -> list[list[str]]:
    return [
        c
        for c in calls
        if c[:5] == ["az", "eventgrid", "system-topic", "event-subscription", "create"]
    ]


def test_the_hook_waits_for_the_host_then_creates_both_subscriptions(tmp_path: Path) -> None:
    done, calls = run_hook(tmp_path, VALUES, KEY_AFTER="2")
    assert done.returncode == 0, done.stderr
    keys = [c for c in calls if c[1:4] == ["functionapp", "keys", "list"]]
    assert len(keys) == 3  # two misses while the host starts, then the key
    blob, azureml = subscriptions(calls)

    assert option(blob, "--system-topic-name") == ["egst-st-abc123"]
    assert option(blob, "--resource-group") == ["rg-dev"]
    assert option(blob, "--endpoint-type") == ["webhook"]
    assert option(blob, "--endpoint") == [
        f"https://{APP}.azurewebsites.net/runtime/webhooks/blobs"
        "?functionName=Host.Functions.dataset_uploaded&code=blob-key-42"
    ]
    assert option(blob, "--included-event-types") == ["Microsoft.Storage.BlobCreated"]
    prefix = "/blobServices/default/containers/datasets/blobs/"
    assert option(blob, "--subject-begins-with") == [prefix]
    # The app's own outputs in the same container do not wake it.
    assert option(blob, "--advanced-filter") == [
        "subject",
        "StringNotBeginsWith",
        f"{prefix}_autopilot/",
    ]

    assert option(azureml, "--system-topic-name") == ["egst-mlw-abc123"]
    assert option(azureml, "--resource-group") == ["rg-ml"]
    assert option(azureml, "--endpoint-type") == ["azurefunction"]
    assert option(azureml, "--endpoint") == [f"{APP_ID}/functions/azureml_event"]
    assert option(azureml, "--included-event-types") == [
        "Microsoft.MachineLearningServices.RunCompleted",
        "Microsoft.MachineLearningServices.RunStatusChanged",
    ]
    assert option(azureml, "--event-delivery-schema") == ["eventgridschema"]
    # It waited for the function to be listed before subscribing it.
    shows = [i for i, c in enumerate(calls) if c[1:4] == ["functionapp", "function", "show"]]
    assert len(shows) == 2 and shows[-1] < calls.index(azureml)
    # Every az call is pinned to the deployment's subscription.
    for call in calls:
        if call[0] == "az":
            assert option(call, "--subscription") == [VALUES["AZURE_SUBSCRIPTION_ID"]]


def test_running_the_hook_again_recreates_the_same_subscriptions(tmp_path: Path) -> None:
    first, first_calls = run_hook(tmp_path / "one", VALUES)
    again, again_calls = run_hook(tmp_path / "two", VALUES)
    assert first.returncode == again.returncode == 0
    assert subscriptions(first_calls) == subscriptions(again_calls)


def test_a_missing_output_stops_the_hook_naming_it(tmp_path: Path) -> None:
    values = {k: v for k, v in VALUES.items() if k != "STORAGE_SYSTEM_TOPIC_NAME"}
    done, calls = run_hook(tmp_path, values)
    assert done.returncode != 0
    assert "STORAGE_SYSTEM_TOPIC_NAME is not set" in done.stderr
    assert subscriptions(calls) == []


def test_no_key_after_every_try_fails_without_subscribing(tmp_path: Path) -> None:
    done, calls = run_hook(tmp_path, VALUES, KEY_AFTER="99", POSTDEPLOY_ATTEMPTS="3")
    assert done.returncode != 0
    assert "no blobs_extension system key after 3 tries" in done.stderr
    assert subscriptions(calls) == []


@pytest.mark.skipif(
    not os.path.exists("/usr/bin/shellcheck"), reason="shellcheck not installed (apt-get)"
)
def test_shellcheck_is_clean() -> None:
    done = subprocess.run(
        ["shellcheck", "-s", "sh", str(HOOK)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout
