"""P1 benchmark: the cold start of the Functions app, in fresh processes.

What a new worker pays before it answers, each figure a ratio against a
reference measured in the same run:

- ``import function_app`` against ``import azure.functions`` (the host's own
  library, the floor of any Python function app), and the share of the
  SDK-type blob binding extension in it;
- the first call of the health, list and get-run routes against the second
  call of the same route, in one fresh process with the settings pointing at a
  closed loopback port (no network time), and whether the first call loaded
  ``azure.ai.ml``;
- the first blob-trigger call, up to its first request and up to its first
  Azure ML request (the dataset in Azurite, Azure ML and the identity endpoint
  on a closed port), against ``import function_app``;
- ``import azure.ai.ml`` against ``import azure.functions``, for reference.

Whole-process rows are A/B pairs run in alternation (A B, then B A) after
warm-up runs; each pair gives one ratio, and the table shows the median and
the range of those ratios, so drift on a shared machine cancels. Peak RSS comes
from ``wait4`` for each child.

    .venv/bin/python -m bench.p1_cold_start [--pairs 9] [--warmup 1] [--quick] [--out DIR]

Results go to ``bench/results/p1_cold_start.json`` (raw figures) and ``.md``
(the report section); ``--quick`` (one pair, no warm-up: a smoke test) writes
to a temporary folder unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
NAME = "p1_cold_start"
COMMAND = f".venv/bin/python -m bench.{NAME}"
CONTAINER = "datasets"
MIB = 1 << 20

# --- the children: each is ``python -c SOURCE`` in a fresh interpreter ------------------

IMPORT_FUNCTIONS = "import azure.functions"
IMPORT_BLOB_EXTENSION = "import azure.functions, azurefunctions.extensions.bindings.blob"
IMPORT_APP = "import function_app"
IMPORT_AZURE_ML = "import azure.ai.ml"

# Index the app as the worker does, then call one HTTP route twice through the
# app's own functions; print the two durations and what the first call loaded.
ROUTE_CALLS = r"""
import json, sys, time
import azure.functions as func
import function_app

route = sys.argv[1]
functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
request = {
    "health": ("GET", "/api/health", {}),
    "list_runs": ("GET", "/api/runs", {}),
    "get_run": ("GET", "/api/runs/r-1", {"id": "r-1"}),
}[route]

def call():
    method, path, params = request
    req = func.HttpRequest(method, "http://127.0.0.1" + path, body=b"", route_params=params)
    started, cpu = time.perf_counter(), time.thread_time()
    status = functions[route](req).status_code
    return time.perf_counter() - started, time.thread_time() - cpu, status

first, first_cpu, first_status = call()
azure_ml = "azure.ai.ml" in sys.modules
telemetry = any(m.startswith(("opentelemetry", "azure.monitor")) for m in sys.modules)
second, _, second_status = call()
print(json.dumps({"first_s": first, "first_cpu_s": first_cpu, "second_s": second,
                  "status": first_status, "azure_ai_ml": azure_ml, "telemetry": telemetry}))
"""

# Import the app, then call the blob trigger as the worker would (a BlobClient for
# the blob) and stop it at the first request it sends (``any``) or at the first one
# that goes anywhere but the storage ports given (``not:PORT,PORT``). The stop is a
# BaseException that every later request raises too, so no handler swallows it and
# the process then ends the way the reference (a plain import) does.
BLOB_TRIGGER = r"""
import json, os, sys, time
started = time.perf_counter()
import function_app
imported = time.perf_counter()
from urllib.parse import urlsplit
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobClient

class Stop(BaseException):
    pass

blob_name, stop_at = sys.argv[1], sys.argv[2]
storage_ports = set(stop_at.removeprefix("not:").split(",")) if stop_at != "any" else set()
send = RequestsTransport.send
seen = {}

def first_request(self, request, **kwargs):
    url = urlsplit(request.url)
    if seen or str(url.port) not in storage_ports:
        seen.setdefault("out", {
            "import_s": imported - started,
            "call_s": time.perf_counter() - called,
            "request": f"{request.method} {url.path}",
            "azure_ai_ml": "azure.ai.ml" in sys.modules,
        })
        raise Stop()
    return send(self, request, **kwargs)

RequestsTransport.send = first_request
client = BlobClient.from_connection_string(
    os.environ["DATASET_STORAGE"], os.environ["DATASET_CONTAINER"], blob_name
)
called = time.perf_counter()
try:
    function_app.dataset_uploaded(client)
except Stop:
    print(json.dumps(seen["out"]))
else:
    print(json.dumps({"error": "the blob trigger returned without sending the request"}))
"""


@dataclass(frozen=True)
class Sample:
    wall_s: float
    peak_rss_mib: float
    out: Mapping[str, Any]


def run_child(source: str, args: Sequence[str], env: Mapping[str, str]) -> Sample:
    """Run ``python -c source args`` from the project root; wall time and peak RSS."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-c", source, *args],
        cwd=ROOT,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    assert child.stdout is not None and child.stderr is not None
    stdout, stderr = child.stdout.read(), child.stderr.read()
    child.stdout.close()
    child.stderr.close()
    lines = stdout.strip().splitlines()
    out: dict[str, Any] = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if child.returncode != 0 or "error" in out:
        raise RuntimeError(
            f"child failed ({child.returncode}): {out.get('error', '')}\n{stderr[-3000:]}"
        )
    return Sample(wall, usage.ru_maxrss / 1024, out)  # ru_maxrss is KiB on Linux


# --- the environment: settings pointing at a closed port, or at Azurite ----------------


def closed_port() -> int:
    from local.ports import free_port

    return free_port()  # free a moment ago and nothing of ours binds it: refused


def base_env() -> dict[str, str]:
    """The parent's environment without app settings, the project on the path."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONDONTWRITEBYTECODE")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONPATH"] = str(ROOT)
    return env


def app_env(connection_string: str, closed: int) -> dict[str, str]:
    """Valid app settings: storage as given; Azure ML and the identity on ``closed``."""
    return {
        **base_env(),
        "AzureWebJobsStorage": connection_string,
        "DATASET_STORAGE": connection_string,
        "DATASET_CONTAINER": CONTAINER,
        "RUN_TABLE": "p1coldstart",
        "AZURE_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000001",
        "AZURE_RESOURCE_GROUP": "rg-bench",
        "AZUREML_WORKSPACE": "mlw-bench",
        "FINETUNE_BASE_MODEL": (
            "azureml://registries/azureml/models/mistralai-Mistral-7B-v01/versions/19"
        ),
        "FINETUNE_INSTANCE_TYPES": "Standard_NC24ads_A100_v4",
        "MIN_EXAMPLES": "10",
        # Where Azure ML and the managed identity would be: a port nobody listens on.
        # https, as Azure ML is: the SDK refuses a bearer token over plain http before sending.
        "AZUREML_DEV_URL_MFE": f"https://127.0.0.1:{closed}",
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{closed}/msi/token",
        "IDENTITY_HEADER": "bench",
    }


def closed_storage(closed: int) -> str:
    from local.azurite import ACCOUNT_KEY, ACCOUNT_NAME

    endpoint = f"http://127.0.0.1:{closed}/{ACCOUNT_NAME}"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={endpoint};QueueEndpoint={endpoint};TableEndpoint={endpoint};"
    )


def dataset(tag: str, examples: int = 60) -> bytes:
    """A small valid text-completion dataset whose content is unique to ``tag``."""
    lines = [
        json.dumps(
            {
                "prompt": f"Summarize the note {tag}-{i}.\n<note>: meet at {1 + i % 11}pm\n",
                "completion": f"A meeting at {1 + i % 11}pm ({tag}-{i}).",
            }
        )
        for i in range(examples)
    ]
    return ("\n".join(lines) + "\n").encode()


# --- measuring --------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    measurement: str
    reference: str
    ratios: list[float] = field(default_factory=list)
    rss_ratios: list[float] = field(default_factory=list)
    a: list[Sample] = field(default_factory=list)
    b: list[Sample] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def spread(values: Sequence[float]) -> dict[str, float] | None:
            if not values:
                return None
            return {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
            }

        return {
            "key": self.key,
            "measurement": self.measurement,
            "reference": self.reference,
            "n": len(self.ratios),
            "ratio": spread(self.ratios),
            "rss_ratio": spread(self.rss_ratios),
            "a_wall_s": spread([s.wall_s for s in self.a]),
            "b_wall_s": spread([s.wall_s for s in self.b]),
            "a_peak_rss_mib": spread([s.peak_rss_mib for s in self.a]),
            "b_peak_rss_mib": spread([s.peak_rss_mib for s in self.b]),
            "a_out": [dict(s.out) for s in self.a],
        }


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pairs(
    row: Row,
    a: Callable[[int], Sample],
    b: Callable[[int], Sample],
    count: int,
    warmup: int,
) -> Row:
    """``count`` A/B pairs after ``warmup`` unrecorded ones, the order swapped every pair."""
    progress(f"{row.key}: {row.measurement} vs {row.reference}")
    for i in range(warmup + count):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        one, other = first(i), second(i)
        sample_a, sample_b = (one, other) if i % 2 == 0 else (other, one)
        if i < warmup:
            continue
        row.a.append(sample_a)
        row.b.append(sample_b)
        row.ratios.append(sample_a.wall_s / sample_b.wall_s)
        row.rss_ratios.append(sample_a.peak_rss_mib / sample_b.peak_rss_mib)
        progress(
            f"  pair {i - warmup + 1}/{count}: {sample_a.wall_s:.3f}s / {sample_b.wall_s:.3f}s"
            f" = {row.ratios[-1]:.2f}x"
        )
    return row


def first_calls(row: Row, route: str, env: Mapping[str, str], count: int, warmup: int) -> Row:
    """First vs second call of ``route``, both in each of ``count`` fresh processes."""
    progress(f"{row.key}: {row.measurement} vs {row.reference}")
    for i in range(warmup + count):
        sample = run_child(ROUTE_CALLS, [route], env)
        if i < warmup:
            continue
        row.a.append(sample)
        row.ratios.append(float(sample.out["first_s"]) / float(sample.out["second_s"]))
        progress(
            f"  process {i - warmup + 1}/{count}: first {sample.out['first_s'] * 1000:.1f} ms,"
            f" second {sample.out['second_s'] * 1000:.1f} ms,"
            f" azure.ai.ml loaded: {sample.out['azure_ai_ml']}"
        )
    return row


def compile_app() -> None:
    """Compile the app's bytecode first, as a deployment package built with compileall
    has it: with PYTHONDONTWRITEBYTECODE set (as in some shells and CI) nothing would
    be cached and every fresh process would compile the app's modules again."""
    import compileall

    compileall.compile_file(str(ROOT / "function_app.py"), quiet=1)
    compileall.compile_dir(str(ROOT / "shared"), quiet=1)


def measure(count: int, warmup: int) -> list[Row]:
    from azure.storage.blob import BlobServiceClient

    from local.azurite import Azurite

    compile_app()
    plain = base_env()
    closed = closed_port()
    offline = app_env(closed_storage(closed), closed)

    def child(source: str, env: Mapping[str, str], *args: str) -> Callable[[int], Sample]:
        return lambda _: run_child(source, args, env)

    rows = [
        pairs(
            Row("import_app", "`import function_app`", "`import azure.functions`"),
            child(IMPORT_APP, plain),
            child(IMPORT_FUNCTIONS, plain),
            count,
            warmup,
        ),
        pairs(
            Row(
                "import_blob_extension",
                "`import azure.functions, azurefunctions.extensions.bindings.blob`",
                "`import azure.functions`",
            ),
            child(IMPORT_BLOB_EXTENSION, plain),
            child(IMPORT_FUNCTIONS, plain),
            count,
            warmup,
        ),
        pairs(
            Row(
                "import_app_over_extension",
                "`import function_app`",
                "`import azure.functions, azurefunctions.extensions.bindings.blob`",
            ),
            child(IMPORT_APP, plain),
            child(IMPORT_BLOB_EXTENSION, plain),
            count,
            warmup,
        ),
    ]
    for route in ("health", "list_runs", "get_run"):
        rows.append(
            first_calls(
                Row(f"first_{route}", f"first `{route}` call", "second call, same process"),
                route,
                offline,
                count,
                warmup,
            )
        )
    rows.append(
        pairs(
            Row(
                "blob_first_request",
                "first blob-trigger call, up to its first request (storage closed)",
                "`import function_app`",
            ),
            child(BLOB_TRIGGER, offline, "a.jsonl", "any"),
            child(IMPORT_APP, plain),
            count,
            warmup,
        )
    )
    progress("starting Azurite for the blob trigger's way to Azure ML...")
    with Azurite() as azurite:
        storage = azurite.connection_string
        service = BlobServiceClient.from_connection_string(storage)
        container = service.create_container(CONTAINER)
        online = app_env(storage, closed)
        ports = ",".join(
            str(urlsplit(url).port) for url in (azurite.blob_endpoint, azurite.table_endpoint)
        )

        def upload_then_trigger(i: int) -> Sample:
            name = f"bench-{os.getpid()}-{i}.jsonl"
            container.upload_blob(name, dataset(f"{os.getpid()}-{i}"), overwrite=True)
            return run_child(BLOB_TRIGGER, [name, f"not:{ports}"], online)

        rows.append(
            pairs(
                Row(
                    "blob_first_azureml_request",
                    "first blob-trigger call, up to its first request to Azure ML or its identity "
                    "(dataset in Azurite)",
                    "`import function_app`",
                ),
                upload_then_trigger,
                child(IMPORT_APP, plain),
                count,
                warmup,
            )
        )
    rows.append(
        pairs(
            Row("import_azure_ml", "`import azure.ai.ml` (reference)", "`import azure.functions`"),
            child(IMPORT_AZURE_ML, plain),
            child(IMPORT_FUNCTIONS, plain),
            count,
            warmup,
        )
    )
    return rows


# --- the report -------------------------------------------------------------------------


def _x(spread: Mapping[str, float] | None) -> str:
    if not spread:
        return "n/a"
    return f"**{spread['median']:.2f}x** ({spread['min']:.2f}-{spread['max']:.2f})"


def _loaded_count(row: Mapping[str, Any]) -> tuple[int, int]:
    """In how many of the A processes ``azure.ai.ml`` was loaded, of how many told."""
    flags = [bool(out["azure_ai_ml"]) for out in row["a_out"] if "azure_ai_ml" in out]
    return sum(flags), len(flags)


def _loaded(row: Mapping[str, Any]) -> str:
    loaded, told = _loaded_count(row)
    return f"{loaded}/{told}" if told else "-"


def targets(meta: Mapping[str, Any], by_key: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Each target of the issue, met or not, with the measured cause of a gap."""
    load = max(meta["load_average"]["start"][0], meta["load_average"]["end"][0])
    cores = meta["processor_count"]
    lines: list[str] = []
    health = by_key["first_health"]
    routes = [by_key[k] for k in ("first_health", "first_list_runs", "first_get_run")]
    loaded = sum(_loaded_count(r)[0] for r in routes)
    first_ms = [1000 * float(out["first_s"]) for out in health["a_out"]]
    cpu_ms = [1000 * float(out["first_cpu_s"]) for out in health["a_out"]]
    median_ms = statistics.median(first_ms)
    met = loaded == 0
    lines.append(
        f"- Health, list and get-run routes import no Azure ML code: "
        f"**{'met' if met else 'not met'}** (`azure.ai.ml` loaded by the first call in "
        f"{loaded} of {sum(r['n'] for r in routes)} fresh processes)."
    )
    told = [bool(out["telemetry"]) for r in routes for out in r["a_out"] if "telemetry" in out]
    lines.append(
        "- Telemetry costs nothing at cold start when `APPLICATIONINSIGHTS_CONNECTION_STRING` "
        f"is not set (issue 12): **{'met' if told and not any(told) else 'not met'}** "
        f"(`opentelemetry` / `azure.monitor` loaded by the first call in {sum(told)} of "
        f"{len(told)} fresh processes; `import function_app` above includes the telemetry "
        "port, which imports nothing of them)."
    )
    median_cpu = statistics.median(cpu_ms)
    # The call waits on nothing (the ledger's port refuses at once), so on an idle core
    # its wall time is its CPU time; on a loaded machine the difference is time spent
    # waiting for a core, and the verdict then rests on the CPU time.
    if median_ms <= 100:
        verdict = "met"
    elif median_cpu <= 100:
        verdict = (
            f"met by CPU time, not by wall time at this run's load (1-minute load "
            f"average up to {load:.1f} on {cores} cores)"
        )
    else:
        verdict = "not met"
    lines.append(
        f"- First health call <= 0.1 s: **{verdict}**: CPU time median {median_cpu:.0f} ms "
        f"(min {min(cpu_ms):.0f}, max {max(cpu_ms):.0f}), wall median {median_ms:.0f} ms "
        f"(min {min(first_ms):.0f}, max {max(first_ms):.0f}), in-process; the only "
        f"absolute figures here, because the target is one. The call waits on nothing "
        f"(the ledger's port refuses at once), so wall time above CPU time is time spent "
        f"waiting for a core. {_x(health['ratio'])} the second call."
    )
    app = by_key["import_app"]["ratio"]
    extension = by_key["import_blob_extension"]["ratio"]
    rest = by_key["import_app_over_extension"]["ratio"]
    if app and extension and rest:
        ok = app["median"] <= 1.5
        lines.append(
            f"- `import function_app` <= 1.5x `import azure.functions`: "
            f"**{'met' if ok else 'not met'}** ({app['median']:.2f}x). "
            + (
                ""
                if ok
                else (
                    f"The SDK-type blob binding extension alone is {extension['median']:.2f}x "
                    f"`import azure.functions` (it imports `azure.storage.blob` and "
                    f"`azure.identity`), and `import function_app` is {rest['median']:.2f}x "
                    f"`azure.functions` with the extension: the app's own module adds next to "
                    f"nothing (it imports no `shared` module), the gap is the extension. "
                    "The worker resolves the blob trigger's `blob.BlobClient` annotation with "
                    "`typing.get_type_hints` when it indexes the app, before any call, and "
                    "decides from the extension's converter registry that the binding is "
                    "deferred (SDK-type), so deferring the import past `import function_app` "
                    "would only move the cost into indexing. Meeting the target means giving "
                    "up the SDK-type binding, which we keep: the classic `InputStream` binding "
                    "hands the function the whole blob in memory."
                )
            )
        )
    first_request = by_key["blob_first_request"]
    azure_ml = by_key["blob_first_azureml_request"]
    early = _loaded(first_request)
    when = (
        "before its first request, as `services()` builds the Azure ML client eagerly"
        if _loaded_count(first_request)[0] > 0
        else "only once it reaches Azure ML, after its storage work (validation, ledger, split)"
    )
    lines.append(
        f"- First blob-trigger call (measured, no target): up to its first request "
        f"{_x(first_request['ratio'])} `import function_app` (`azure.ai.ml` loaded by then in "
        f"{early} processes); up to its first request to Azure ML (the identity token it "
        f"needs first) {_x(azure_ml['ratio'])}. "
        f"The blob path needs `azure.ai.ml` (data assets, the job), so its first call pays "
        f"the import {when}; `import azure.ai.ml` alone is "
        f"{_x(by_key['import_azure_ml']['ratio'])} `import azure.functions`."
    )
    return lines


def report(meta: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    by_key = {row["key"]: row for row in rows}
    lines = [
        "## P1: Cold start",
        "",
        f"`{COMMAND}` ({meta['pairs']} pairs after {meta['warmup']} warm-up"
        f"{'' if meta['warmup'] == 1 else 's'}; "
        f"run {meta['date']}, {meta['processor_count']} cores, 1-minute load average "
        f"{meta['load_average']['start'][0]:.1f} at the start and "
        f"{meta['load_average']['end'][0]:.1f} at the end, Python {meta['python']}).",
        "",
        "Fresh processes. Whole-process rows: A/B pairs in alternation, ratio A/B per pair. "
        "Route rows: the first and second call of one route in each fresh process, settings "
        "pointing at a closed loopback port (so the ledger check fails at once: no network "
        "time). Blob-trigger rows stop the process at the request named. The app's bytecode "
        "is compiled first (compileall), as in a deployment package built that way; "
        "site-packages' is cached by pip at install.",
        "",
        "| measurement (A) | reference (B) | n | time A/B, median (min-max) "
        "| peak RSS A/B | `azure.ai.ml` loaded by A |",
        "|---|---|---:|---|---|---:|",
    ]
    for row in rows:
        rss = _x(row["rss_ratio"]).replace("**", "") if row["rss_ratio"] else "-"
        lines.append(
            f"| {row['measurement']} | {row['reference']} | {row['n']} | {_x(row['ratio'])} "
            f"| {rss} | {_loaded(row)} |"
        )
    lines += ["", "Targets:", "", *targets(meta, by_key), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or NAME).splitlines()[0])
    parser.add_argument("--pairs", type=int, default=9, help="recorded pairs per row")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded pairs per row first")
    parser.add_argument("--quick", action="store_true", help="one pair, no warm-up")
    parser.add_argument("--out", type=Path, default=None, help="where to write the results")
    args = parser.parse_args(argv)
    count, warmup = (1, 0) if args.quick else (args.pairs, args.warmup)
    out: Path = args.out or (Path(tempfile.mkdtemp(prefix=NAME)) if args.quick else RESULTS)
    load_before = os.getloadavg()
    rows = [row.summary() for row in measure(count, warmup)]
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor_count": os.cpu_count(),
        "pairs": count,
        "warmup": warmup,
        "load_average": {"start": load_before, "end": os.getloadavg()},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{NAME}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    text = report(meta, rows)
    (out / f"{NAME}.md").write_text(text)
    progress(f"wrote {out / NAME}.json and .md")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
