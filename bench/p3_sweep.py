"""P3: what one timer sweep costs per idle active run, and what finished runs add.

The stack is the one the tests use, each part in its own process: Azurite and
the Azure ML emulator (``python -m local.azureml_emulator``), with the app built
by ``tests.support.app.LocalApp`` (``shared.composition.build`` from app
settings) and its identity served by the emulator. Every emulator request is
slowed by ``--latency-ms`` (the emulator's latency fault, on every route), so
the sweep pays a round trip per Azure ML call as it would on Azure.

Seeding goes through the app's own code: one real upload is accepted
(``accept_upload``: validate, split, register data, submit), and its TRAINING
record is the template of every other run; each clone's job is submitted by
the app's adapter (``AzureMLWorkspace.submit_job``; the emulator keeps it
Running: job fault ``stuck``) and its record written by ``TableLedger.create``.
Finished runs are LIVE clones written with the ledger's own row builders in
entity-group transactions of 99 rows: a run row and its ``created|`` row each
(the ``upload|`` row intake also writes is left out: Azurite's inserts slow as
a table grows, 10k runs already take minutes, and no sweep reads those rows).

Measured: ``shared.pipeline.sweep.sweep(services)`` (JOB_POLL_SECONDS=0, so
every active run is due every sweep), after warm-up sweeps that leave every
run idle (its record already says what the emulator shows). Requests are
counted at ``requests.adapters.HTTPAdapter.send``, the transport under both
azure-core and azure-ai-ml, by destination and kind.

- Scale: apps with N = 10, 100, 1000 active runs, swept in turn, round after
  round; each round's ms per run is divided by the same round's N=10 figure.
- Finished runs: an app with 10 active runs and 10,000 finished ones against
  the N=10 app, swept in alternated pairs (AB, BA, ...); ratio per pair.

    .venv/bin/python -m bench.p3_sweep            # the default run, about 3-6 minutes
    .venv/bin/python -m bench.p3_sweep --quick    # tiny sizes: a smoke test

Results: ``bench/results/p3_sweep.json`` (raw) and ``bench/results/p3_sweep.md``
(``--results DIR`` elsewhere; ``--quick`` writes to a new temporary folder unless
told). The markdown ends with the same bench's figures from before this change,
``bench/results/p3_sweep_before.json`` (recorded once, on the code before it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "p3_sweep"
ROW_BATCH = 99  # entities per entity-group transaction (the service allows 100)


def _say(message: str) -> None:
    print(f"[p3 {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- counting requests ----------------------------------------------------------------------


class RequestCounter:
    """Counts every request the process sends, by (destination, kind)."""

    def __init__(self, destinations: dict[str, str]) -> None:
        self._destinations = destinations  # "host:port" -> name
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()

    def record(self, method: str, url: str) -> None:
        parts = urlsplit(url)
        where = self._destinations.get(parts.netloc, parts.netloc)
        kind = _kind(where, method, parts.path, parts.query)
        with self._lock:
            self.counts[(where, kind)] += 1

    def take(self) -> Counter[tuple[str, str]]:
        with self._lock:
            taken, self.counts = self.counts, Counter()
        return taken

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from requests.adapters import HTTPAdapter

        original = HTTPAdapter.send
        counter = self

        def send(adapter: HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
            counter.record(str(request.method), str(request.url))
            return original(adapter, request, *args, **kwargs)

        HTTPAdapter.send = send  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            HTTPAdapter.send = original  # type: ignore[method-assign]


def _kind(where: str, method: str, path: str, query: str) -> str:
    if where == "table":
        if method == "POST" and path.endswith("$batch"):
            return "write"  # an entity-group transaction
        if method == "GET":
            return "read" if "(PartitionKey=" in path else "query"
        return f"{method.lower()}"
    if where == "emulator":
        if "/jobs/" in path and method == "GET":
            return "job GET"
        return f"{method} other"
    return method


# -- the stack --------------------------------------------------------------------------------


@dataclasses.dataclass
class Emulator:
    process: subprocess.Popen[str]
    base_url: str
    env: dict[str, str]


@contextlib.contextmanager
def emulator_process(workdir: Path) -> Iterator[Emulator]:
    """The emulator in a process of its own (its CPU is not the app's)."""
    command = [
        sys.executable,
        "-m",
        "local.azureml_emulator",
        "--port",
        "0",
        "--speed",
        "10",
        "--workdir",
        str(workdir),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        env: dict[str, str] = {}
        base_url = ""
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.strip()
            if line.startswith("Azure ML emulator serving "):
                base_url = line.rsplit(" ", 1)[1]
            elif line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                env[name] = value
            elif line.startswith("Admin routes"):
                break
        if not base_url:
            raise RuntimeError("the emulator did not start")
        yield Emulator(process, base_url, env)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


# -- seeding ----------------------------------------------------------------------------------


@dataclasses.dataclass
class App:
    label: str
    services: Any  # shared.domain.ports.Services
    active: int
    template: Any  # the run every other run of this app is cloned from
    finished: int = 0


def _template(app: Any) -> Any:
    """One run accepted through the real intake path: its TRAINING record."""
    from shared.pipeline.intake import accept_upload
    from tests.support.app import jsonl, text_examples

    app.upload("template.jsonl", jsonl(text_examples(40, "template")))
    result = accept_upload(app.services, "template.jsonl")
    stored = app.services.ledger.get(result.run_id)
    assert stored is not None, result
    return stored.run


def _clone(template: Any, run_id: str, sha: str) -> Any:
    dataset = dataclasses.replace(
        template.dataset,
        name=f"{run_id}.jsonl",
        url=template.dataset.url.replace("template.jsonl", f"{run_id}.jsonl"),
    )
    return dataclasses.replace(
        template,
        run_id=run_id,
        job_name=run_id,
        job_status="Running",
        activity="job Running",
        dataset=dataset,
        sha256=sha,
        lease_owner="",
        lease_until=None,
        published=len(template.timeline),
    )


def seed_active(app: App, template: Any, count: int, workers: int = 4) -> None:
    """``count`` TRAINING runs, each with its own job (kept Running by the emulator)."""
    from shared.domain.azureml import JobSpec

    services = app.services
    config = template.config

    def one(i: int) -> None:
        sha = f"{app.label}{i:08d}".encode().hex().ljust(64, "0")[:64]
        run_id = f"ft-{app.label}-{i:05d}"
        services.azureml.submit_job(
            JobSpec(
                name=run_id,
                experiment_name=str(config["experiment_name"]),
                base_model=str(config["base_model"]),
                task=str(config["task"]),
                training_data=template.training_data,
                validation_data=template.validation_data,
                output_model_prefix=run_id,
                compute=config.get("compute") or None,
                instance_types=tuple(config.get("instance_types") or ()),
                hyperparameters=dict(config["hyperparameters"]),
                tags={"finetune-autopilot.run": run_id},
            )
        )
        if services.ledger.create(_clone(template, run_id, sha)) is None:
            raise RuntimeError(f"run {run_id} exists already")

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(one, range(count)):
            pass


def _live(template: Any, run_id: str, at: dt.datetime) -> Any:
    from shared.domain.runs import RunState

    smoke = {
        "passed": True,
        "reason": "",
        "results": [
            {"prompt": f"prompt {i}", "answer": "an answer of a few words", "latency_ms": 80.0}
            for i in range(3)
        ],
    }
    run = _clone(template, run_id, run_id.encode().hex().ljust(64, "0")[:64])
    run = dataclasses.replace(run, created_at=at)
    run = run.moved_to(
        RunState.DEPLOYING, at, f"job {run_id} completed", model_name=run_id, activity="deploying"
    )
    run = run.moved_to(
        RunState.SMOKE_TESTING,
        at,
        f"deployment {run_id} is up at 0% traffic",
        model_id=f"azureml:{run_id}:1",
        deployment=run_id,
    )
    run = run.moved_to(RunState.PROMOTING, at, "smoke test passed (3 prompts)", smoke=smoke)
    run = run.moved_to(RunState.LIVE, at, "serving 100%", activity="serving")
    return dataclasses.replace(run, job_status="Completed", published=len(run.timeline))


def seed_finished(app: App, template: Any, count: int) -> float:
    """``count`` LIVE runs written straight as rows, 99 per transaction; returns seconds."""
    from shared.adapters import tables

    table = app.services.ledger._client()  # the adapter's own table client
    rows: list[dict[str, Any]] = []
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for i in range(count):
        run = _live(template, f"ft-done-{i:06d}", start + dt.timedelta(minutes=i))
        rows.append(tables._run_entity(run))
        rows.append(tables._created_entity(run))
    started = time.perf_counter()
    for first in range(0, len(rows), ROW_BATCH):
        table.submit_transaction([("upsert", row) for row in rows[first : first + ROW_BATCH]])
        done = first + ROW_BATCH
        if done % (ROW_BATCH * 50) == 0:
            _say(f"  {done:,} of {len(rows):,} rows written")
    return time.perf_counter() - started


# -- measuring --------------------------------------------------------------------------------


@dataclasses.dataclass
class Sweep:
    app: str
    active: int
    due: int
    seconds: float
    cpu_seconds: float  # this process's CPU time during the sweep (the app's own work)
    failed: int
    requests: dict[str, int]

    @property
    def ms_per_run(self) -> float:
        return self.seconds * 1000.0 / max(1, self.due)


def sweep_once(app: App, counter: RequestCounter) -> Sweep:
    from shared.pipeline.sweep import sweep

    counter.take()
    started, cpu = time.perf_counter(), time.process_time()
    result = sweep(app.services)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    counted = counter.take()
    return Sweep(
        app=app.label,
        active=result.active,
        due=result.due,
        seconds=seconds,
        cpu_seconds=cpu,
        failed=len(result.failed),
        requests={f"{where} {kind}": n for (where, kind), n in sorted(counted.items())},
    )


def _round(sweep: Sweep) -> str:
    return f"{sweep.app} {sweep.seconds:.2f}s ({sweep.ms_per_run:.1f} ms/run)"


def per_run(sweep: Sweep, key: str) -> float:
    return sweep.requests.get(key, 0) / max(1, sweep.due)


def _median_range(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# -- the run ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Options:
    active: list[int]
    finished: int
    finished_active: int
    rounds: int
    pairs: int
    latency_ms: int
    concurrency: int | None
    warmups: int
    results: Path  # where the .json and .md go
    before: Path  # the figures of the same bench before this change, if the file exists


def parse(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.p3_sweep", description=__doc__)
    parser.add_argument("--active", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--finished", type=int, default=10_000)
    parser.add_argument("--finished-active", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="scale rounds (all N each)")
    parser.add_argument("--pairs", type=int, default=6, help="finished vs none: A/B pairs")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=None, help="RECONCILE_CONCURRENCY")
    parser.add_argument("--warmups", type=int, default=2)
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help=f"where to write {NAME}.json and .md (default: bench/results; with --quick, "
        "a new temporary folder, so a smoke test never replaces the recorded figures)",
    )
    parser.add_argument("--before", type=Path, default=RESULTS / f"{NAME}_before.json")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    args = parser.parse_args(argv)
    results = args.results
    if results is None:
        results = Path(tempfile.mkdtemp(prefix="p3-quick-")) if args.quick else RESULTS
    if args.quick:
        return Options(
            [5, 20], 300, 5, 2, 2, args.latency_ms, args.concurrency, 1, results, args.before
        )
    return Options(
        sorted(set(args.active)),
        args.finished,
        args.finished_active,
        args.rounds,
        args.pairs,
        args.latency_ms,
        args.concurrency,
        args.warmups,
        results,
        args.before,
    )


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run(options: Options) -> dict[str, Any]:
    from local.azurite import Azurite
    from tests.support.app import LocalApp
    from tests.support.azureml import EmulatorAdmin

    overrides = {"JOB_POLL_SECONDS": "0", "MAX_ATTEMPTS": "1000"}
    if options.concurrency is not None:
        overrides["RECONCILE_CONCURRENCY"] = str(options.concurrency)
    with (
        tempfile.TemporaryDirectory(prefix="p3-emulator-") as workdir,
        Azurite() as azurite,
        emulator_process(Path(workdir)) as emulator,
    ):
        os.environ.update(emulator.env)
        admin = EmulatorAdmin(emulator.base_url, Path(emulator.env["REQUESTS_CA_BUNDLE"]))
        admin.fault_job("*", "stuck")
        destinations = {
            urlsplit(emulator.base_url).netloc: "emulator",
            urlsplit(azurite.table_endpoint).netloc: "table",
            urlsplit(azurite.blob_endpoint).netloc: "blob",
        }
        counter = RequestCounter(destinations)

        def make(label: str, active: int) -> App:
            local = LocalApp.create(azurite, **overrides)
            template = _template(local)
            app = App(label, local.services, active, template)
            _say(f"seeding {active} active runs for app {label}")
            started = time.perf_counter()
            seed_active(app, template, active - 1)  # the template is one of them
            _say(f"  seeded in {time.perf_counter() - started:.1f}s")
            return app

        apps = [make(f"n{n}", n) for n in options.active]
        base = apps[0]
        finished_app = make("fin", options.finished_active)
        _say(f"writing {options.finished:,} finished runs")
        finished_app.finished = options.finished
        seed_seconds = seed_finished(finished_app, finished_app.template, options.finished)
        _say(f"  written in {seed_seconds:.1f}s")

        admin.fault_requests(".", latency_ms=options.latency_ms)
        with counter.installed():
            _say("warm-up sweeps (every run's record catches up with its job)")
            for app in [*apps, finished_app]:
                for _ in range(options.warmups):
                    warm = sweep_once(app, counter)
                    _say(f"  {app.label}: {warm.seconds:.2f}s, {warm.requests}")

            scale: list[list[Sweep]] = []
            for round_no in range(options.rounds):
                swept = [sweep_once(app, counter) for app in apps]
                scale.append(swept)
                _say(f"round {round_no + 1}: " + ", ".join(_round(s) for s in swept))

            pairs: list[tuple[Sweep, Sweep]] = []
            reference = next((a for a in apps if a.active == options.finished_active), None)
            if reference is None:
                reference = make("ref", options.finished_active)
                for _ in range(options.warmups):
                    sweep_once(reference, counter)
            for pair_no in range(options.pairs):
                order = [reference, finished_app] if pair_no % 2 == 0 else [finished_app, reference]
                got = {app.label: sweep_once(app, counter) for app in order}
                pairs.append((got[reference.label], got[finished_app.label]))
                _say(
                    f"pair {pair_no + 1}: none {got[reference.label].seconds:.3f}s, "
                    f"finished {got[finished_app.label].seconds:.3f}s"
                )
        admin.clear_faults()
        admin.close()
    return _figures(options, scale, pairs, base, seed_seconds)


def _figures(
    options: Options,
    scale: list[list[Sweep]],
    pairs: list[tuple[Sweep, Sweep]],
    base: App,
    seed_seconds: float,
) -> dict[str, Any]:
    rows = []
    for column, n in enumerate(options.active):
        sweeps = [r[column] for r in scale]
        ratios = [r[column].ms_per_run / r[0].ms_per_run for r in scale]
        keys = sorted({k for s in sweeps for k in s.requests})
        rows.append(
            {
                "active": n,
                "due": sweeps[0].due,
                "seconds": _median_range([s.seconds for s in sweeps]),
                "ms_per_run": _median_range([s.ms_per_run for s in sweeps]),
                "ms_per_run_vs_first": _median_range(ratios),
                "cpu_share": _median_range([s.cpu_seconds / s.seconds for s in sweeps]),
                "requests_per_run": {
                    k: statistics.median(per_run(s, k) for s in sweeps) for k in keys
                },
                "failed": max(s.failed for s in sweeps),
            }
        )
    finished_ratios = [b.seconds / a.seconds for a, b in pairs]
    keys = sorted({k for a, b in pairs for k in (*a.requests, *b.requests)})
    return {
        "bench": NAME,
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "commit": _commit(),
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "options": {
            k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(options).items()
        },
        "reference_n": options.active[0],
        "scale": rows,
        "scale_sweeps": [[dataclasses.asdict(s) for s in r] for r in scale],
        "finished": {
            "finished_runs": options.finished,
            "active": options.finished_active,
            "write_seconds": seed_seconds,
            "none_seconds": _median_range([a.seconds for a, _ in pairs]),
            "finished_seconds": _median_range([b.seconds for _, b in pairs]),
            "ratio": _median_range(finished_ratios),
            "requests_none": {
                k: statistics.median(a.requests.get(k, 0) for a, _ in pairs) for k in keys
            },
            "requests_finished": {
                k: statistics.median(b.requests.get(k, 0) for _, b in pairs) for k in keys
            },
        },
    }


# -- the report -------------------------------------------------------------------------------


def _ratio(r: dict[str, float]) -> str:
    return f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"


def markdown(figures: dict[str, Any], before: dict[str, Any] | None) -> str:
    o = figures["options"]
    lines = [
        "## P3: the timer sweep's cost per idle active run",
        "",
        f"Run {figures['when']} at {figures['commit']} on {figures['machine']}.",
        "Rerun: `.venv/bin/python -m bench.p3_sweep` (`--quick` for tiny sizes).",
        "",
        f"Azurite and the Azure ML emulator in processes of their own, "
        f"{o['latency_ms']} ms added to every emulator request, idle TRAINING runs "
        "(the job Running, the record up to date), every run due. Each round sweeps "
        "every N once; ratios are per round against the same round's "
        f"N={figures['reference_n']} sweep: median (min-max) over {o['rounds']} rounds.",
        "",
        "| active runs | sweep, ms per run vs N=" + str(figures["reference_n"]) + " | "
        "app CPU / sweep time | requests per run per sweep |",
        "|---:|---|---|---|",
    ]
    for row in figures["scale"]:
        lines.append(
            f"| {row['active']:,} | {_ratio(row['ms_per_run_vs_first'])} | "
            f"{_ratio(row['cpu_share']).replace('x', '')} | {_requests(row['requests_per_run'])} |"
        )
    f = figures["finished"]
    lines += [
        "",
        f"Finished runs: {f['active']} active runs alone against {f['active']} active runs "
        f"with {f['finished_runs']:,} finished (LIVE) runs in the same table, "
        f"{o['pairs']} alternated pairs:",
        "",
        "| ledger | sweep vs none | requests per sweep |",
        "|---|---|---|",
        f"| {f['active']} active, no finished runs | 1 | {_requests(f['requests_none'])} |",
        f"| {f['active']} active, {f['finished_runs']:,} finished | {_ratio(f['ratio'])} | "
        f"{_requests(f['requests_finished'])} |",
        "",
    ]
    scale = {row["active"]: row for row in figures["scale"]}
    biggest = scale[max(scale)]
    lines += ["Targets:", ""]
    lines += _targets(figures, biggest)
    lines += ["", *NOTES]
    if before is not None:
        lines += ["", *_before(figures, before)]
    return "\n".join(lines) + "\n"


NOTES = [
    "Notes:",
    "",
    "- An idle run's sweep is one Azure ML GET (the job at 2024-10-01-preview; "
    "`jobs.get` sent two) and its share of one ledger range query (the `active|` rows "
    "carry the runs); a look that changes nothing writes nothing "
    "(`shared/pipeline/reconciler.py`, `reconcile_listed`).",
    "- The scale row depends on `RECONCILE_CONCURRENCY`, now 8 by default: at 4 (as "
    "before), 1,000 requests of 50 ms alone take 12.5 s.",
    "- The emulator used to answer every request about 40 ms late (headers and body in "
    "two writes, Nagle's algorithm against the client's delayed ACK); fixed with this "
    "change, and the figures before were measured with the fix, so both see the same "
    "emulator.",
    "- Locally, what finished runs still add is Azurite's: it answers a range query by "
    "scanning the whole table. Azure Table storage serves PartitionKey + RowKey ranges "
    "from its index.",
    "- On Azure, the limit at this scale is Azure Resource Manager's, not the sweep's: a "
    "principal's reads on a subscription refill at 25 a second (250 at once), so reading "
    "1,000 jobs takes at least (1,000 - 250) / 25 = 30 s there; reads sent faster are "
    "throttled, and a throttled look is recorded and waits its `Retry-After`.",
]


def _requests(per_run: dict[str, float]) -> str:
    shown = [f"{k} {v:.3g}" for k, v in sorted(per_run.items()) if v]
    return ", ".join(shown) or "none"


def _targets(figures: dict[str, Any], biggest: dict[str, Any]) -> list[str]:
    sent = biggest["requests_per_run"]
    reads = sent.get("table read", 0) + sent.get("table query", 0)
    writes = sent.get("table write", 0)
    azureml = sum(v for k, v in sent.items() if k.startswith("emulator"))
    seconds = biggest["seconds"]["median"]
    ratio = figures["finished"]["ratio"]["median"]
    met = {True: "met", False: "NOT met"}
    return [
        f"- An idle run's sweep costs at most 1 ledger read: {met[reads <= 1]} "
        f"({reads:.3g} per run at N={biggest['active']:,}, the listing query included).",
        f"- At most 1 Azure ML request: {met[azureml <= 1]} ({azureml:.3g} per run).",
        f"- No ledger write when nothing changed: {met[writes == 0]} ({writes:.3g} per run).",
        f"- {biggest['active']:,} active runs swept in at most 10 s at "
        f"{figures['options']['latency_ms']} ms per emulator request: {met[seconds <= 10]} "
        f"(median {seconds:.1f} s; an absolute time, on this machine).",
        f"- {figures['finished']['finished_runs']:,} finished runs add at most 20%: "
        f"{met[ratio <= 1.2]} ({_ratio(figures['finished']['ratio'])}).",
    ]


def _before(figures: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """The same bench, run once on the code before this change (its own ratios)."""
    note = f" {before['note']}" if before.get("note") else ""
    lines = [
        f"Before (the same bench at {before['commit']}, {before['when']}; its own rounds).{note}",
        "",
        "| active runs | ms per run vs N=" + str(before["reference_n"]) + " | requests per run |",
        "|---:|---|---|",
    ]
    for row in before["scale"]:
        lines.append(
            f"| {row['active']:,} | {_ratio(row['ms_per_run_vs_first'])} | "
            f"{_requests(row['requests_per_run'])} |"
        )
    f = before["finished"]
    lines.append(
        f"| {f['active']} + {f['finished_runs']:,} finished | {_ratio(f['ratio'])} "
        f"vs none | {_requests(f['requests_finished'])} per sweep |"
    )
    now = {row["active"]: row for row in figures["scale"]}
    then = {row["active"]: row for row in before["scale"]}
    common = sorted(set(now) & set(then))
    if common:
        lines += [
            "",
            "After vs before, ms per run (medians of separate runs on the same machine: "
            "indicative, not paired):",
            "",
        ]
        for n in common:
            ratio = now[n]["ms_per_run"]["median"] / then[n]["ms_per_run"]["median"]
            before_s, after_s = then[n]["seconds"]["median"], now[n]["seconds"]["median"]
            lines.append(f"- N={n:,}: {ratio:.2f}x ({before_s:.2f} s -> {after_s:.2f} s a sweep)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    figures = run(options)
    options.results.mkdir(parents=True, exist_ok=True)
    (options.results / f"{NAME}.json").write_text(json.dumps(figures, indent=2) + "\n")
    before = json.loads(options.before.read_text()) if options.before.is_file() else None
    (options.results / f"{NAME}.md").write_text(markdown(figures, before))
    _say(f"wrote {options.results / f'{NAME}.md'} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
