"""``make run`` / ``make demo``: the whole product on one machine.

Starts Azurite, the Azure ML emulator and the local Functions host (a separate
process running ``function_app.py``'s own triggers), uploads two training sets
cut from the sample dialog-summarization dataset (its first 32 training
examples, then all 324), each after the same held-out validation file, and
shows both runs state by state with timings: the first model goes LIVE by the
evaluation floor, the second is evaluated against it and takes over. Then it
prints the verdict with both scores and asks the deployed model the
notebook's own question.

    python -m local.demo            # make demo: exit 0 once LIVE, non-zero otherwise
    python -m local.demo --serve    # make run: then keep serving until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from azure.storage.blob import BlobServiceClient

from local.azureml_emulator import AzureMLEmulator
from local.azurite import Azurite
from local.demo import make_dataset
from local.functions_host import FunctionsHost
from local.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DATASET = Path(__file__).resolve().parent / "dialogsum.jsonl"
CONTAINER = "datasets"
WORK_CONTAINER = "autopilot-work"  # the app's reports and splits, out of the watched container
ENDPOINT = "dialogsum"
QUESTION = (
    "Summarize the dialog.\n<dialog>: Edward: Rachel, at what time is the meeting..\n"
    "Rachel: At 2pm..\nEdward: Ok, see you then\n<summary>: "
)
TIMEOUT_SECONDS = 170.0


def app_settings(
    azurite: Azurite, emulator: AzureMLEmulator, keys: dict[str, str]
) -> dict[str, str]:
    """The app's settings for the local stack: what local.settings.json would hold."""
    return {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": azurite.connection_string,
        "DATASET_STORAGE": azurite.connection_string,
        "DATASET_CONTAINER": CONTAINER,
        "WORK_CONTAINER": WORK_CONTAINER,
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_RESOURCE_GROUP": "rg-finetune-demo",
        "AZUREML_WORKSPACE": "mlw-finetune-demo",
        "FINETUNE_BASE_MODEL": (
            "azureml://registries/azureml/models/mistralai-Mistral-7B-v01/versions/19"
        ),
        "FINETUNE_INSTANCE_TYPES": "Standard_NC24ads_A100_v4",
        "ENDPOINT_NAME": ENDPOINT,
        "RECONCILE_SCHEDULE": "*/2 * * * * *",
        "JOB_POLL_SECONDS": "2",
        "DEPLOY_POLL_SECONDS": "1",
        "SMOKE_PROMPT_COUNT": "3",
        "EVAL_FLOOR_ROUGE_L": "0.5",
        "EVENTS_TOPIC_ENDPOINT": emulator.topic_endpoint,
        "EVENTS_TOPIC_KEY": emulator.topic_key,
        "FUNCTIONS_HOST_FUNCTION_KEY": keys["function"],
        "FUNCTIONS_HOST_MASTER_KEY": keys["master"],
        **emulator.client_env(),
        **emulator.identity_env(),
    }


class Clock:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def stamp(self) -> str:
        elapsed = time.monotonic() - self.start
        return f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}]"


def say(clock: Clock, text: str) -> None:
    print(f"{clock.stamp()} {text}", flush=True)


def watch(
    clock: Clock,
    api: str,
    key: str,
    run_id: str,
    on_state: Callable[[str], None] = lambda state: None,
) -> dict[str, Any]:
    """Print each state and activity change of the run until it ends (calling
    ``on_state`` with each new state); returns the record."""
    last_state, last_activity = "", ""
    entered = time.monotonic()
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while True:
        response = requests.get(
            f"{api}/runs/{run_id}", headers={"x-functions-key": key}, timeout=10
        )
        response.raise_for_status()
        run: dict[str, Any] = response.json()
        state, activity = run["state"], run.get("activity") or ""
        if state != last_state:
            took = f"  (previous step took {time.monotonic() - entered:.1f}s)" if last_state else ""
            detail = run["timeline"][-1]["detail"].splitlines()[0] if run["timeline"] else ""
            say(clock, f"{state:<16} {detail}{took}")
            last_state, last_activity, entered = state, "", time.monotonic()
            on_state(state)
        if activity and activity != last_activity and state == last_state:
            say(clock, f"{'':<16} ... {activity}")
            last_activity = activity
        if state in TERMINAL:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is still {state} after {TIMEOUT_SECONDS:.0f}s")
        time.sleep(0.5)


TERMINAL = {
    "LIVE",
    "REJECTED",
    "DUPLICATE",
    "TRAINING_FAILED",
    "CANCELED",
    "DEPLOY_FAILED",
    "ROLLED_BACK",
    "FAILED",
}


def ask(settings: dict[str, str], question: str) -> str:
    """Score the live endpoint like the notebook does: POST .../completions with the key."""
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    client = MLClient(
        DefaultAzureCredential(),
        settings["AZURE_SUBSCRIPTION_ID"],
        settings["AZURE_RESOURCE_GROUP"],
        settings["AZUREML_WORKSPACE"],
    )
    endpoint = client.online_endpoints.get(ENDPOINT)
    key = client.online_endpoints.get_keys(ENDPOINT).primary_key
    response = requests.post(
        str(endpoint.scoring_uri).replace("/score", "/completions"),
        json={"prompt": question, "temperature": 0, "max_tokens": 200},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )
    response.raise_for_status()
    return str(response.json()["choices"][0]["text"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo", description=__doc__)
    parser.add_argument("--serve", action="store_true", help="keep serving once LIVE")
    args = parser.parse_args(argv)
    clock = Clock()
    workdir = Path(tempfile.mkdtemp(prefix="finetune-demo-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        say(clock, "starting Azurite (Blob, Queue, Table)...")
        with Azurite(data_dir=workdir / "azurite") as azurite:
            say(clock, "starting the Azure ML emulator...")
            with AzureMLEmulator(workdir=workdir / "emulator") as emulator:
                emulator.world.timings.update(
                    {
                        "job_queue_seconds": 4,
                        "job_run_seconds": 10,
                        "provisioning_seconds": 6,
                        "delete_seconds": 2,
                    }
                )
                keys = {"function": secrets.token_urlsafe(18), "master": secrets.token_urlsafe(18)}
                settings = app_settings(azurite, emulator, keys)
                os.environ.update({**emulator.client_env(), **emulator.identity_env()})
                port = free_port()
                api = f"http://127.0.0.1:{port}/api"
                say(clock, f"starting the local Functions host on {api} ...")
                host = FunctionsHost(
                    ROOT, settings, port, state_dir=workdir / "host", blob_scan_seconds=1
                )
                with host:
                    # Azure ML events reach the app the way an Event Grid subscription
                    # would deliver them: to the host's webhook, with its system key.
                    emulator.events.webhook_url = host.eventgrid_url("azureml_event")
                    say(clock, f"functions host log: {host.log_path}")
                    return demo(clock, settings, azurite, api, keys, args.serve, stop)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def demo(
    clock: Clock,
    settings: dict[str, str],
    azurite: Azurite,
    api: str,
    keys: dict[str, str],
    serve: bool,
    stop: threading.Event,
) -> int:
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    with contextlib.suppress(Exception):
        blobs.create_container(CONTAINER)
    training, validation = make_dataset.held_out(make_dataset.records())
    key = keys["function"]
    # A small model first (the endpoint's first: judged against the floor)...
    upload(clock, blobs, "dialogsum-small.jsonl", training[:32], validation)
    first_id = wait_for_run(api, key, "dialogsum-small.jsonl")
    say(clock, f"run {first_id}")
    uploaded: list[str] = []

    def then_the_full_set(state: str) -> None:
        # ...and, once its job is done, the whole training set, which trains meanwhile
        # and is evaluated against it.
        if state == "DEPLOYING" and not uploaded:
            upload(clock, blobs, DATASET.name, training, validation)
            uploaded.append(DATASET.name)

    first = watch(clock, api, key, first_id, then_the_full_set)
    print_evaluation(first)
    if first["state"] != "LIVE":
        print(f"Run {first_id} ended {first['state']}: {first.get('last_error')}", flush=True)
        return 1
    if not uploaded:
        upload(clock, blobs, DATASET.name, training, validation)
    run_id = wait_for_run(api, key, DATASET.name)
    say(clock, f"run {run_id}")
    run = watch(clock, api, key, run_id)
    print_evaluation(run)
    if run["state"] != "LIVE":
        print(f"Run {run_id} ended {run['state']}: {run.get('last_error')}", flush=True)
        return 1
    for result in run.get("smoke", {}).get("results", []):
        print(f"Smoke prompt: {result['prompt'].strip()}", flush=True)
        print(f"Answer:       {result['answer']}  ({result['latency_ms']:.0f} ms)\n", flush=True)
    answer = ask(settings, QUESTION)
    print(f"Prompt: {QUESTION.strip()}", flush=True)
    print(f"Answer: {answer}", flush=True)
    print(f"\nRun {run_id}: {run['state']} in {clock.stamp()[1:-1]}", flush=True)
    if not serve:
        return 0
    print_help(settings, api, keys)
    stop.wait()
    return 0


def upload(
    clock: Clock,
    blobs: BlobServiceClient,
    name: str,
    training: list[dict[str, str]],
    validation: list[dict[str, str]],
) -> None:
    """The held-out validation file first (so the app uses it), then the training set."""
    sibling = name.removesuffix(".jsonl") + ".validation.jsonl"
    held_out = "".join(map(make_dataset.line, validation)).encode()
    blobs.get_blob_client(CONTAINER, sibling).upload_blob(held_out, overwrite=True)
    data = "".join(map(make_dataset.line, training)).encode()
    blobs.get_blob_client(CONTAINER, name).upload_blob(data, overwrite=True)
    say(
        clock,
        f"uploaded {name} ({len(training)} examples, held out: {sibling}, "
        f"{len(validation)}) to {CONTAINER}/",
    )


def print_evaluation(run: dict[str, Any]) -> None:
    """The evaluation's verdict, with both scores when there was a champion."""
    record = run.get("evaluation") or {}
    if "verdict" not in record:
        return
    challenger, champion = record["challenger"], record.get("champion") or {}
    verdict = "promoted" if record["verdict"] == "promote" else "rolled back"
    if record["judged_by"] == "champion":
        low, high = record["ci"]
        line = (
            f"challenger {challenger['rouge_l']:.2f} vs champion {champion['rouge_l']:.2f} "
            f"({champion['deployment']}), delta {record['delta']:+.2f} [{low:.2f}, {high:.2f}]"
        )
    else:
        line = f"challenger {challenger['rouge_l']:.2f} against the floor {record['floor']:.2f}"
    print(
        f"\nEvaluation ({record['examples']} held-out examples, ROUGE-L F): {line}: {verdict}\n",
        flush=True,
    )


def wait_for_run(api: str, key: str, dataset: str) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = requests.get(f"{api}/runs", headers={"x-functions-key": key}, timeout=10)
        runs = response.json()["runs"] if response.ok else []
        found = [r for r in runs if r.get("dataset_name") == dataset]
        if found:
            return str(found[0]["run_id"])
        time.sleep(0.5)
    raise TimeoutError(f"the blob trigger did not start a run for {dataset} within 60s")


def print_help(settings: dict[str, str], api: str, keys: dict[str, str]) -> None:
    key = keys["function"]
    print(
        f"""
Serving. Drop another JSONL file into the container to start a run:
  .venv/bin/python -c "from azure.storage.blob import BlobClient as B; \\
B.from_connection_string('{settings["DATASET_STORAGE"]}', '{CONTAINER}', 'mine.jsonl')\\
.upload_blob(open('mine.jsonl','rb'), overwrite=True)"

The dashboard (signs in with the key, which then leaves the address bar):
  {api}/ui#key={key}

The API (function key: {key}):
  curl -s {api}/health
  curl -s -H 'x-functions-key: {key}' {api}/runs
  curl -s -H 'x-functions-key: {key}' {api}/runs/<run id>
  curl -s -X POST -H 'x-functions-key: {key}' -H 'content-type: application/json' \\
       -d '{{"blob": "{DATASET.name}", "force": true}}' {api}/runs
  curl -s -X POST -H 'x-functions-key: {key}' {api}/runs/<run id>/cancel
  curl -s -X POST -H 'x-functions-key: {key}' {api}/runs/<run id>/retry

Ctrl-C stops everything.""",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
