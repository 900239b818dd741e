"""P4: upload -> fine-tuning job submitted, through the local Functions host.

What it measures, on one stack (Azurite, the Azure ML emulator, local Functions
hosts running ``function_app.py``; the reconcile timer never fires, so only the
blob trigger works):

* **Latency**, upload returned -> the emulator answered the job's PUT (its
  request log, wall clock), for distinct variants of the demo dataset (80 KB)
  uploaded at random phases of the blob scan, with the polling source
  (``DATASET_TRIGGER_SOURCE`` unset: the host scans every 2 s) and with the
  Event Grid source (``local.storage_events`` raising BlobCreated for writes
  through it, delivered to the host's blob webhook, subscribed as
  ``scripts/postdeploy.sh`` does); then 20 MB chat files through the Event Grid
  source. The cells are measured in alternation, round by round.
* **Invocations per upload** and **blobs in the watched container per upload**,
  from the hosts' status and a listing once they settled.
* **Requests per intake**, per destination, and **downloads per dataset**
  (bytes read from the dataset blob / its size), for a warm intake of the small
  file and of a 20 MB file, in a child process calling ``accept_upload`` with
  every HTTP request recorded (``requests``' adapter: all Azure SDK traffic goes
  through it); and the 20 MB intake's time.

With ``--baseline REF`` (a git ref or a directory; default the commit before
this work) every measurement also runs on that code, in alternation with this
checkout, and the figures are "after / before" ratios. ``--baseline none``
skips it (``--quick`` does, too).

    .venv/bin/python -m bench.p4_latency [--rounds 8] [--big-mb 20] [--big-rounds 3]
        [--intake-rounds 5] [--baseline 7d64d79|DIR|none] [--quick] [--out DIR]

Writes ``bench/results/p4_latency.json`` (raw figures) and ``p4_latency.md``
(``--quick``: tiny sizes, no baseline, into a temporary directory unless ``--out``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from azure.storage.blob import BlobServiceClient

from local.azureml_emulator import AzureMLEmulator
from local.azurite import Azurite
from local.functions_host import FunctionsHost
from local.ports import free_port
from local.storage_events import StorageEvents

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DATASET = ROOT / "local" / "demo" / "dialogsum.jsonl"
NAME = "p4_latency"
DEFAULT_BASELINE = "7d64d79"  # main before issue 10's work
NEVER = "0 0 0 1 1 *"
FUNCTION = "dataset_uploaded"
SCAN_SECONDS = 2.0
SOURCES = ("polling", "eventgrid")

CHILD = r"""
import json, os, sys, time
import requests.adapters

settings = json.loads(sys.argv[1])
os.environ.update(settings)
seen = []
original = requests.adapters.HTTPAdapter.send

def send(self, request, **kwargs):
    response = original(self, request, **kwargs)
    seen.append([request.method, request.url, response.status_code,
                 int(response.headers.get("Content-Length") or 0)])
    return response

requests.adapters.HTTPAdapter.send = send
from shared.composition import build
from shared.pipeline.intake import accept_upload

services = build(settings)
out = {}
for label, name in zip(sys.argv[2::2], sys.argv[3::2]):
    seen.clear()
    started = time.perf_counter()
    result = accept_upload(services, name)
    out[label] = {"outcome": result.outcome, "seconds": time.perf_counter() - started,
                  "requests": list(seen)}
print(json.dumps(out))
"""


def say(text: str) -> None:
    print(f"[p4] {text}", file=sys.stderr, flush=True)


# --- data ----------------------------------------------------------------------------------


def small_variant(tag: str) -> bytes:
    """The demo dataset with every prompt tagged: new bytes, same shape (80 KB)."""
    out = bytearray()
    for line in DATASET.read_bytes().splitlines():
        record = json.loads(line)
        record["prompt"] = f"[{tag}] {record['prompt']}"
        out += json.dumps(record).encode() + b"\n"
    return bytes(out)


def big_variant(tag: str, size: int) -> bytes:
    """A chat dataset of about ``size`` bytes, 1-2 KB lines, distinct per ``tag``."""
    out = bytearray()
    for i, (user, answer) in enumerate(_conversations(size)):
        record = {
            "messages": [
                {"role": "system", "content": "You summarise conversations in one line."},
                {"role": "user", "content": f"[{tag} #{i}] {user}"},
                {"role": "assistant", "content": answer},
            ]
        }
        out += json.dumps(record).encode() + b"\n"
    return bytes(out)


@functools.cache
def _conversations(size: int, seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    words = [
        *("meeting", "budget", "review", "launch", "design", "report", "customer"),
        *("schedule", "travel", "lunch", "deadline", "invoice", "draft", "team"),
        *("office", "project", "update", "call", "weekend", "plan"),
    ]
    found: list[tuple[str, str]] = []
    total = 0
    while total < size:
        user = " ".join(rng.choice(words) for _ in range(rng.randint(60, 140)))
        answer = " ".join(rng.choice(words) for _ in range(rng.randint(30, 90)))
        found.append((user, answer))
        total += len(user) + len(answer) + 190  # the JSON around them
    return found


# --- the stack -----------------------------------------------------------------------------


@dataclass
class App:
    """One deployment of one code version with one trigger source, on the shared stack."""

    code: str  # "after" | "before"
    source: str  # "polling" | "eventgrid"
    settings: dict[str, str]
    host: FunctionsHost | None = None
    upload_connection: str = ""
    uploads: int = 0

    @property
    def key(self) -> str:
        return f"{self.code}/{self.source}"

    @property
    def container(self) -> str:
        return self.settings["DATASET_CONTAINER"]

    @property
    def workspace(self) -> str:
        return self.settings["AZUREML_WORKSPACE"]


def app_settings(
    azurite: Azurite, emulator: AzureMLEmulator, code: str, source: str, storage: str
) -> dict[str, str]:
    suffix = f"{code[:2]}{source[:2]}{uuid.uuid4().hex[:8]}"
    settings = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AzureWebJobsStorage": azurite.connection_string,
        "DATASET_STORAGE": storage,
        "DATASET_CONTAINER": f"datasets-{suffix}",
        "WORK_CONTAINER": f"work-{suffix}",
        "RUN_TABLE": f"runs{suffix}",
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-0000000000b4",
        "AZURE_RESOURCE_GROUP": "rg-bench",
        "AZUREML_WORKSPACE": f"mlw-{suffix}",
        "FINETUNE_BASE_MODEL": (
            "azureml://registries/azureml/models/mistralai-Mistral-7B-v01/versions/19"
        ),
        "FINETUNE_INSTANCE_TYPES": "Standard_NC24ads_A100_v4",
        "ENDPOINT_NAME": f"ep-{suffix}",
        "RECONCILE_SCHEDULE": NEVER,  # only the blob trigger works
        "EVENTS_TOPIC_ENDPOINT": emulator.topic_endpoint,
        "EVENTS_TOPIC_KEY": emulator.topic_key,
        **emulator.client_env(),
        **emulator.identity_env(),
    }
    if source == "eventgrid":
        settings["DATASET_TRIGGER_SOURCE"] = "EventGrid"
    return settings


@contextlib.contextmanager
def baseline_checkout(spec: str, workdir: Path) -> Iterator[Path | None]:
    """The code to compare with: a directory as is, or a git ref checked out (detached)."""
    if spec.lower() == "none":
        yield None
        return
    if Path(spec).is_dir():
        yield app_only(Path(spec).resolve(), workdir / "baseline-app")
        return
    target = workdir / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(target), spec],
        check=True,
    )
    try:
        yield app_only(target, workdir / "baseline-app")
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(target)], check=False
        )


def app_only(code: Path, target: Path) -> Path:
    """The app's own files of checkout ``code`` (links), without its ``local/``: the
    host runs in the app's directory, where another ``local`` package would shadow
    this checkout's host."""
    target.mkdir(parents=True)
    for name in ("function_app.py", "host.json", "shared"):
        (target / name).symlink_to(code / name)
    return target


def job_put_times(emulator: AzureMLEmulator, workspace: str) -> list[float]:
    """When the emulator answered each successful job PUT of ``workspace`` (wall clock)."""
    answer = requests.get(
        f"{emulator.base_url}/_emulator/requests",
        params={"contains": f"/workspaces/{workspace}/jobs/"},
        verify=str(emulator.ca_bundle),
        timeout=30,
    )
    answer.raise_for_status()
    return sorted(
        float(e["replied"])
        for e in answer.json()["requests"]
        if e["method"] == "PUT" and 200 <= int(e["status"]) < 300
    )


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def upload(connection: str, container: str, name: str, data: bytes) -> float:
    with BlobServiceClient.from_connection_string(connection) as service:
        service.get_blob_client(container, name).upload_blob(data, overwrite=True)
    return time.time()


def host_trigger(host: FunctionsHost) -> dict[str, Any]:
    answer = requests.get(
        f"{host.base_url}/admin/host/status",
        headers={"x-functions-key": host.master_key},
        timeout=30,
    )
    answer.raise_for_status()
    status: dict[str, Any] = answer.json()["blobTriggers"][FUNCTION]
    return status


def submit_latency(
    app: App, emulator: AzureMLEmulator, name: str, data: bytes, timeout: float = 120.0
) -> float:
    """Upload ``data`` as ``name``; seconds until its fine-tuning job was submitted."""
    return timed_upload(app, emulator, name, data, timeout)[1]


def timed_upload(
    app: App, emulator: AzureMLEmulator, name: str, data: bytes, timeout: float = 120.0
) -> tuple[float, float]:
    """(when the upload returned, seconds from then until the job was submitted)."""
    before = len(job_put_times(emulator, app.workspace))
    uploaded = upload(app.upload_connection, app.container, name, data)
    app.uploads += 1

    def submitted() -> list[float]:
        times = job_put_times(emulator, app.workspace)
        return times if len(times) > before else []

    times = wait_for(f"the job of {app.key}/{name}", submitted, timeout)
    return uploaded, float(times[-1]) - uploaded


def delivery(events: StorageEvents, app: App, name: str, uploaded: float) -> list[float]:
    """Seconds from the upload's return to the BlobCreated event's publication and to
    the host's answer to its delivery (the event is queued by then)."""
    subject = f"/containers/{app.container}/blobs/{name}"
    subscription = events.subscriptions[app.key.replace("/", "-")]
    for item, at in zip(subscription.delivered, subscription.delivered_at, strict=True):
        if item.event["subject"].endswith(subject):
            return [item.at - uploaded, at - uploaded]
    return []


# --- figures -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio_summary(pairs: list[tuple[float, float]]) -> dict[str, float]:
    """Per-pair ratios a/b: median, min, max, n."""
    ratios = [a / b for a, b in pairs if b > 0]
    return {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "n": len(ratios),
    }


def classify(
    requests_seen: list[list[Any]], settings: dict[str, str], azurite: Azurite
) -> Counter[str]:
    """Requests of one intake, per destination."""
    counts: Counter[str] = Counter()
    dataset, work = settings["DATASET_CONTAINER"], settings["WORK_CONTAINER"]
    blob, table = urlsplit(azurite.blob_endpoint).netloc, urlsplit(azurite.table_endpoint).netloc
    for method, url, _status, _length in requests_seen:
        parts = urlsplit(url)
        segments = unquote(parts.path).split("/")
        container = segments[2] if len(segments) > 2 else ""
        if parts.netloc == blob and container == dataset:
            counts[f"blob: dataset container, {method}"] += 1
        elif parts.netloc == blob and container == work:
            counts["blob: work container"] += 1
        elif parts.netloc == blob:
            counts["blob: other"] += 1
        elif parts.netloc == table:
            counts["table"] += 1
        elif "/eventgrid/" in parts.path:
            counts["events (topic)"] += 1
        elif "/operationstatuses/" in parts.path.lower():
            # The poller of an earlier call (the warm-up's endpoint creation), running
            # in the background: not this intake's.
            counts["not this intake: an earlier LRO's poll"] += 1
        elif "/workspaces/" in parts.path.lower():
            counts["Azure ML (ARM)"] += 1
        else:
            counts["other (identity, ...)"] += 1
    counts["total"] = sum(n for d, n in counts.items() if not d.startswith("not this intake"))
    return counts


def dataset_bytes(requests_seen: list[list[Any]], container: str, name: str) -> int:
    suffix = f"/{container}/{name}"
    return sum(
        int(length)
        for method, url, status, length in requests_seen
        if method == "GET" and unquote(urlsplit(url).path).endswith(suffix) and status < 300
    )


def in_process_intakes(
    code_dir: Path, settings: dict[str, str], uploads: list[tuple[str, str]]
) -> dict[str, Any]:
    """``accept_upload`` on each (label, blob) in a fresh process of ``code_dir``'s code."""
    env = {**os.environ, **settings, "PYTHONPATH": str(code_dir)}
    args = [sys.executable, "-c", CHILD, json.dumps(settings)]
    for label, name in uploads:
        args += [label, name]
    done = subprocess.run(
        args, cwd=code_dir, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"intake child failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@dataclass
class Figures:
    latency: dict[str, list[float]] = field(default_factory=dict)  # app key -> seconds
    big_latency: dict[str, list[float]] = field(default_factory=dict)
    # Event Grid source: [published, delivered, job submitted], seconds after the upload
    delivery: dict[str, list[list[float]]] = field(default_factory=dict)
    invocations: dict[str, dict[str, Any]] = field(default_factory=dict)
    watched_blobs: dict[str, int] = field(default_factory=dict)
    intakes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # code -> runs


# --- the run -------------------------------------------------------------------------------


@dataclass
class Stack:
    azurite: Azurite
    emulator: AzureMLEmulator
    events: StorageEvents
    blobs: BlobServiceClient
    codes: dict[str, Path]
    workdir: Path


def start_apps(stack: Stack) -> list[App]:
    """One host per (code, source), each with its own containers, table and workspace."""
    apps: list[App] = []
    for code, code_dir in stack.codes.items():
        for source in SOURCES:
            storage = (
                stack.events.connection_string
                if source == "eventgrid"
                else stack.azurite.connection_string
            )
            settings = app_settings(stack.azurite, stack.emulator, code, source, storage)
            stack.blobs.create_container(settings["DATASET_CONTAINER"])
            app = App(code, source, settings, upload_connection=storage)
            say(f"starting the host for {app.key}")
            app.host = FunctionsHost(
                code_dir,
                settings,
                free_port(),
                state_dir=stack.workdir / f"host-{code}-{source}",
                blob_scan_seconds=SCAN_SECONDS,
            )
            app.host.start()
            if source == "eventgrid":
                # As scripts/postdeploy.sh subscribes the deployed app.
                prefix = f"/blobServices/default/containers/{app.container}/blobs/"
                stack.events.subscribe(
                    app.key.replace("/", "-"),
                    app.host.blobs_url(FUNCTION),
                    subject_begins_with=prefix,
                    subject_not_begins_with=[f"{prefix}_autopilot/"],
                )
            apps.append(app)
    return apps


def latency_rounds(
    stack: Stack, apps: list[App], args: argparse.Namespace, figures: Figures
) -> None:
    rng = random.Random(args.seed)
    for app in apps:  # the first invocation of each worker imports the Azure ML SDK
        say(f"warm-up upload for {app.key}")
        submit_latency(app, stack.emulator, "warmup.jsonl", small_variant(f"warm {app.key}"))
    say(f"latency, small file: {args.rounds} rounds of {len(apps)} alternated uploads")
    for r in range(args.rounds):
        for app in apps[r % len(apps) :] + apps[: r % len(apps)]:
            time.sleep(rng.uniform(0, SCAN_SECONDS))  # a random phase of the scan
            name = f"small-{r}.jsonl"
            uploaded, seconds = timed_upload(
                app, stack.emulator, name, small_variant(f"r{r} {app.key}")
            )
            figures.latency.setdefault(app.key, []).append(seconds)
            if app.source == "eventgrid":
                steps = delivery(stack.events, app, name, uploaded)
                figures.delivery.setdefault(app.key, []).append([*steps, seconds])
            say(f"  round {r + 1}: {app.key} {seconds:.2f} s")
    big_apps = [a for a in apps if a.source == "eventgrid"]
    say(f"latency, {args.big_mb:g} MB chat file, Event Grid source: {args.big_rounds} rounds")
    for r in range(args.big_rounds):
        for app in big_apps if r % 2 == 0 else list(reversed(big_apps)):
            data = big_variant(f"big r{r} {app.key}", int(args.big_mb * 1_000_000))
            seconds = submit_latency(app, stack.emulator, f"big-{r}.jsonl", data, timeout=300)
            figures.big_latency.setdefault(app.key, []).append(seconds)
            say(f"  round {r + 1}: {app.key} {seconds:.2f} s")


def count_invocations(stack: Stack, apps: list[App], figures: Figures) -> None:
    say("letting the hosts settle (two more scans), then counting invocations")
    time.sleep(2 * SCAN_SECONDS + 1)
    for app in apps:
        host = app.host
        assert host is not None
        status = wait_for(f"{app.key} idle", functools.partial(_idle, host))
        figures.invocations[app.key] = {
            "uploads": app.uploads,
            "invocations": status["invocations"],
        }
        container = stack.blobs.get_container_client(app.container)
        figures.watched_blobs[app.key] = sum(1 for _ in container.list_blobs())


def _idle(host: FunctionsHost) -> dict[str, Any] | None:
    status = host_trigger(host)
    return status if status["inFlight"] == 0 else None


def intake_pairs(stack: Stack, args: argparse.Namespace, figures: Figures) -> None:
    say(f"requests per intake, in process: {args.intake_rounds} alternated rounds")
    codes = list(stack.codes)
    size = int(args.big_mb * 1_000_000)
    for r in range(args.intake_rounds):
        for code in codes if r % 2 == 0 else list(reversed(codes)):
            settings = app_settings(
                stack.azurite, stack.emulator, code, "polling", stack.azurite.connection_string
            )
            container = settings["DATASET_CONTAINER"]
            stack.blobs.create_container(container)
            files = {
                "warm": small_variant(f"warm r{r} {code}"),
                "small": small_variant(f"small r{r} {code}"),
                "big": big_variant(f"intake r{r} {code}", size),
            }
            for label, data in files.items():
                upload(stack.azurite.connection_string, container, f"{label}.jsonl", data)
            result = in_process_intakes(
                stack.codes[code], settings, [(label, f"{label}.jsonl") for label in files]
            )
            entry: dict[str, Any] = {"size": {k: len(v) for k, v in files.items()}}
            for label in ("small", "big"):
                seen = result[label]["requests"]
                entry[label] = {
                    "outcome": result[label]["outcome"],
                    "seconds": result[label]["seconds"],
                    "requests": dict(classify(seen, settings, stack.azurite)),
                    "calls": [f"{m} {urlsplit(u).netloc}{urlsplit(u).path}" for m, u, *_ in seen],
                    "dataset_bytes": dataset_bytes(seen, container, f"{label}.jsonl"),
                }
            figures.intakes.setdefault(code, []).append(entry)
            say(
                f"  round {r + 1}: {code} big intake {entry['big']['seconds']:.2f} s, "
                f"{entry['big']['dataset_bytes'] / size:.2f} downloads"
            )


def run(args: argparse.Namespace, workdir: Path, baseline: Path | None) -> dict[str, Any]:
    codes = {"after": ROOT} if baseline is None else {"after": ROOT, "before": baseline}
    figures = Figures()
    load_start = os.getloadavg()[0]
    say("starting Azurite, the Azure ML emulator and the storage event topic")
    with (
        Azurite(data_dir=workdir / "azurite") as azurite,
        AzureMLEmulator(workdir=workdir / "emulator") as emulator,
        StorageEvents(azurite) as events,
    ):
        emulator.world.timings.update({"job_queue_seconds": 36_000})  # jobs stay queued
        os.environ.update({**emulator.client_env(), **emulator.identity_env()})
        blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        stack = Stack(azurite, emulator, events, blobs, codes, workdir)
        apps = start_apps(stack)
        try:
            latency_rounds(stack, apps, args, figures)
            count_invocations(stack, apps, figures)
        finally:
            for app in apps:
                if app.host is not None:
                    app.host.stop()
        intake_pairs(stack, args, figures)
    result = summarise(figures, args, baseline)
    result["load"] = [load_start, os.getloadavg()[0]]
    return result


def summarise(figures: Figures, args: argparse.Namespace, baseline: Path | None) -> dict[str, Any]:
    lat = figures.latency
    out: dict[str, Any] = {
        "name": NAME,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "baseline": str(args.baseline) if baseline is not None else None,
        "scan_seconds": SCAN_SECONDS,
        "rounds": args.rounds,
        "big_mb": args.big_mb,
        "big_rounds": args.big_rounds,
        "intake_rounds": args.intake_rounds,
        "raw": {
            "latency": lat,
            "big_latency": figures.big_latency,
            "delivery": figures.delivery,
            "invocations": figures.invocations,
            "watched_blobs": figures.watched_blobs,
            "intakes": figures.intakes,
        },
        "cells": {
            key: {"p50": percentile(values, 0.5), "p95": percentile(values, 0.95)}
            for key, values in lat.items()
        },
    }
    ratios: dict[str, Any] = {}
    ratios["eventgrid/polling (after)"] = ratio_summary(
        list(zip(lat["after/eventgrid"], lat["after/polling"], strict=True))
    )
    if "before/polling" in lat:
        ratios["after/before (polling)"] = ratio_summary(
            list(zip(lat["after/polling"], lat["before/polling"], strict=True))
        )
        ratios["after/before (eventgrid)"] = ratio_summary(
            list(zip(lat["after/eventgrid"], lat["before/eventgrid"], strict=True))
        )
        ratios["after/before (big, eventgrid)"] = ratio_summary(
            list(
                zip(
                    figures.big_latency["after/eventgrid"],
                    figures.big_latency["before/eventgrid"],
                    strict=True,
                )
            )
        )
        ratios["after/before (big intake, in process)"] = ratio_summary(
            [
                (a["big"]["seconds"], b["big"]["seconds"])
                for a, b in zip(figures.intakes["after"], figures.intakes["before"], strict=True)
            ]
        )
    out["ratios"] = ratios
    return out


# --- the report ----------------------------------------------------------------------------


def _r(summary: dict[str, float]) -> str:
    spread = f"{summary['min']:.2f}-{summary['max']:.2f}, n={summary['n']:g}"
    return f"**{summary['median']:.2f}x** ({spread})"


def _median(values: list[float]) -> float:
    return statistics.median(values)


def markdown(result: dict[str, Any], command: str) -> str:
    raw, cells, ratios = result["raw"], result["cells"], result["ratios"]
    has_before = "after/before (polling)" in ratios
    lines = [
        "## P4: upload -> fine-tuning job submitted, through the local host",
        "",
        f"Run {result['when']} on {result['machine']}. Rerun: `{command}`.",
        "",
        "Latency is from the upload call's return to the emulator's answer to the job PUT, "
        f"for 80 KB uploads at random phases of the {result['scan_seconds']:g} s blob scan "
        "(polling) or delivered as BlobCreated events (Event Grid source, local topic: no "
        "Event Grid delivery delay), one upload at a time, cells alternated round by round "
        f"({result['rounds']} rounds). Each figure is a ratio to the reference named next to "
        "it, measured in the same run: medians of per-pair ratios (min-max)"
        + (
            f", and `before` is the code at `{result['baseline']}` (the default is main before "
            "issue 10's work, so after/before covers every change merged since, not only this "
            "section's)"
            if has_before
            else ""
        )
        + ".",
        "",
        "| measurement | reference (same run) | ratio |",
        "|---|---|---|",
    ]
    poll, eg = cells["after/polling"], cells["after/eventgrid"]
    scan = result["scan_seconds"]
    lines.append(
        f"| upload -> job submitted, polling, p50 / p95 | the scan period ({scan:g} s) | "
        f"**{poll['p50'] / scan:.2f}x** / **{poll['p95'] / scan:.2f}x** "
        f"({poll['p50']:.2f} s / {poll['p95']:.2f} s) |"
    )
    lines.append(
        "| upload -> job submitted, Event Grid source, p50 / p95 | polling, same rounds | "
        f"**{eg['p50'] / poll['p50']:.2f}x** / **{eg['p95'] / poll['p95']:.2f}x** "
        f"({eg['p50']:.2f} s / {eg['p95']:.2f} s); per pair "
        f"{_r(ratios['eventgrid/polling (after)'])} |"
    )
    if has_before:
        for source in SOURCES:
            before = cells[f"before/{source}"]
            mine = cells[f"after/{source}"]
            lines.append(
                f"| upload -> job submitted, {source}, p50 / p95 | before, same rounds "
                f"({before['p50']:.2f} s / {before['p95']:.2f} s) | "
                f"**{mine['p50'] / before['p50']:.2f}x** / **{mine['p95'] / before['p95']:.2f}x**; "
                f"per pair {_r(ratios[f'after/before ({source})'])} |"
            )
        big_a = _median(raw["big_latency"]["after/eventgrid"])
        big_b = _median(raw["big_latency"]["before/eventgrid"])
        lines.append(
            f"| upload -> job submitted, {result['big_mb']:g} MB chat, Event Grid source | "
            f"before ({big_b:.2f} s median) | {_r(ratios['after/before (big, eventgrid)'])} "
            f"({big_a:.2f} s median) |"
        )
        intake_a = _median([e["big"]["seconds"] for e in raw["intakes"]["after"]])
        intake_b = _median([e["big"]["seconds"] for e in raw["intakes"]["before"]])
        lines.append(
            f"| intake of a {result['big_mb']:g} MB file (`accept_upload`, warm, in process) | "
            f"before ({intake_b:.2f} s median) | "
            f"{_r(ratios['after/before (big intake, in process)'])} ({intake_a:.2f} s median) |"
        )
    for code in ("after", "before") if has_before else ("after",):
        for source in SOURCES:
            key = f"{code}/{source}"
            counts = raw["invocations"][key]
            per = counts["invocations"] / counts["uploads"]
            watched = raw["watched_blobs"][key] / counts["uploads"]
            lines.append(
                f"| `{FUNCTION}` invocations / blobs in the watched container, {key} | "
                f"uploads ({counts['uploads']}) | **{per:.2f}x** / **{watched:.2f}x** |"
            )
    for code in ("after", "before") if has_before else ("after",):
        entries = raw["intakes"][code]
        for label in ("small", "big"):
            downloads = [e[label]["dataset_bytes"] / e["size"][label] for e in entries]
            lines.append(
                f"| downloads per dataset, {code}, {label} file "
                f"({entries[0]['size'][label] / 1e6:.2f} MB) | its size | "
                f"**{_median(downloads):.2f}x** (bytes GET from the dataset blob) |"
            )
    lines += [
        "",
        f"Requests per warm intake, by destination (small file; {result['big_mb']:g} MB file "
        "in brackets):",
        "",
    ]
    codes = ("after", "before") if has_before else ("after",)
    header = (
        "| destination | " + " | ".join(codes) + (" | after / before |" if has_before else " |")
    )
    lines += [header, "|---|" + "---:|" * (len(codes) + (1 if has_before else 0))]
    destinations = sorted(
        {d for code in codes for e in raw["intakes"][code] for d in e["small"]["requests"]}
        | {d for code in codes for e in raw["intakes"][code] for d in e["big"]["requests"]},
        key=lambda d: (d == "total", d),
    )
    for destination in destinations:
        row = [destination]
        values = {}
        for code in codes:
            small = _median(
                [e["small"]["requests"].get(destination, 0) for e in raw["intakes"][code]]
            )
            big = _median([e["big"]["requests"].get(destination, 0) for e in raw["intakes"][code]])
            values[code] = small
            row.append(f"{small:g} [{big:g}]")
        if has_before:
            row.append(f"{values['after'] / values['before']:.2f}x" if values["before"] else "new")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Notes:", ""]
    lines += notes(result)
    lines += ["", "Targets:", ""]
    lines += targets(result)
    return "\n".join(lines) + "\n"


def notes(result: dict[str, Any]) -> list[str]:
    raw, ratios = result["raw"], result["ratios"]
    load = result.get("load", [])
    found = [
        "- Polling: an upload waits for the next scan (a random phase: half a period on "
        "average) and then the invocation. With one upload at a time, moving the app's "
        "outputs out of the watched container does not shorten that wait; it removes the "
        "invocations the outputs caused and keeps the watched container at one blob per "
        "upload, which on Azure keeps the scan short and away from the 10,000-blob mark "
        "where the polling source falls back to scanning logs (minutes).",
    ]
    if "after/before (polling)" in ratios:
        spread = ratios["after/before (polling)"]
        found.append(
            f"- The polling after/before pairs range {spread['min']:.2f}-{spread['max']:.2f}x: "
            "each upload lands at its own random phase of the scan, so those rows measure the "
            "phase, not the code; the Event Grid rows compare the processing."
        )
    steps = [s for s in raw["delivery"].get("after/eventgrid", []) if len(s) == 3]
    if steps:
        published = _median([s[0] for s in steps])
        delivered = _median([s[1] for s in steps])
        submitted = _median([s[2] for s in steps])
        found.append(
            f"- Event Grid, after: the local topic published BlobCreated {published:.3f} s "
            f"after the upload returned and the host had queued it at {delivered:.3f} s "
            f"(medians), of {submitted:.2f} s to the job: the rest is the queue and the "
            "invocation. On Azure, Event Grid's own publish and delivery time comes on top."
        )
    if "after/before (big, eventgrid)" in ratios:
        found.append(
            f"- {result['big_mb']:g} MB: one read of the upload instead of two (validation, "
            "then the split): the parts are staged while the file is validated. Through the "
            f"host: {_r(ratios['after/before (big, eventgrid)'])} of before; in process "
            f"{_r(ratios['after/before (big intake, in process)'])}: the time saved is one "
            "download, the validation and split CPU stay."
        )
    if load:
        found.append(
            "- The machine was shared (2 cores): load average "
            + ", ".join(f"{x:.1f}" for x in load)
            + " (start, end). Ratios of alternated pairs are the robust figures."
        )
    del raw
    return found


def targets(result: dict[str, Any]) -> list[str]:
    raw = result["raw"]
    after_poll = raw["invocations"]["after/polling"]
    extra = after_poll["invocations"] / after_poll["uploads"]
    watched = raw["watched_blobs"]["after/polling"] / after_poll["uploads"]
    downloads = _median(
        [e["big"]["dataset_bytes"] / e["size"]["big"] for e in raw["intakes"]["after"]]
    )
    outputs_met = extra <= 1.0 and watched <= 1.0
    eg = result["cells"]["after/eventgrid"]
    poll = result["cells"]["after/polling"]
    return [
        f"- The app's own outputs leave the watched container: "
        f"{'**met**' if outputs_met else '**not met**'}: {extra:.2f} invocations and "
        f"{watched:.2f} watched blobs per upload with polling (reports and parts are in "
        "`WORK_CONTAINER`; with Event Grid they raise events outside the subscription).",
        f"- One download per dataset: {'**met**' if downloads <= 1.0 else '**not met**'}: "
        f"{downloads:.2f} downloads of a {result['big_mb']:g} MB file per intake (validator "
        "and splitter share one read).",
        f"- Upload -> job submitted p50/p95 with polling and Event Grid: measured, "
        f"{poll['p50']:.2f}/{poll['p95']:.2f} s and {eg['p50']:.2f}/{eg['p95']:.2f} s. The "
        "polling figure is the local host's 2 s scan; on Azure the polling source can take "
        "minutes (it falls back to scanning logs beyond 10,000 blobs) and Flex Consumption "
        "supports only the Event Grid source, whose local figure excludes Event Grid's own "
        "publish and delivery time.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.p4_latency", description=__doc__)
    parser.add_argument("--rounds", type=int, default=8, help="alternated rounds, small file")
    parser.add_argument("--big-mb", type=float, default=20.0, help="size of the big file")
    parser.add_argument("--big-rounds", type=int, default=3, help="rounds of the big file")
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git ref, dir, or none")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, no baseline")
    parser.add_argument("--intake-rounds", type=int, default=5, help="in-process intake pairs")
    parser.add_argument(
        "--out", type=Path, default=None, help="results directory (default bench/results)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.big_mb, args.big_rounds, args.baseline = 2, 1.0, 1, "none"
        args.intake_rounds = 1
    if args.out is None:
        # A smoke test never overwrites the recorded figures.
        args.out = Path(tempfile.mkdtemp(prefix="p4-quick-")) if args.quick else RESULTS
        say(f"results go to {args.out}")
    command = "python -m bench.p4_latency" + (" --quick" if args.quick else "")
    workdir = Path(tempfile.mkdtemp(prefix="bench-p4-"))
    try:
        with baseline_checkout(args.baseline, workdir) as baseline:
            result = run(args, workdir, baseline)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{NAME}.json").write_text(json.dumps(result, indent=2) + "\n")
    report = markdown(result, command)
    (args.out / f"{NAME}.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
