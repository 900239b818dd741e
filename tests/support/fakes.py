"""In-memory fakes of the app's own ports, for fast unit tests of the services.

Each fake keeps state a test can look at afterwards (runs and their versions,
blobs, jobs, endpoints, deployments, events), behaves like its adapter where
the services depend on it (compare-and-swap on a version counter, ``If-Match``
reads, adopt-on-conflict submits, name-taken endpoints, quota refusals), and
raises the app's own errors on demand: ``fake.fail("method", error, ...)``
queues errors that the next calls of ``method`` raise, one each, in order.

``Harness`` wires them into ``Services`` with a clock the test moves by hand.
Nothing here touches the network or a disk, or starts a thread (the ledger may be
called from the reconciler's lease heartbeat, so it takes a lock).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.domain.azureml import (
    DeploymentSpec,
    DeploymentView,
    EndpointView,
    JobSpec,
    JobView,
    ModelView,
)
from shared.domain.errors import ConcurrencyConflict, InvalidInput, PermanentError
from shared.domain.events import LifecycleEvent
from shared.domain.ledger import MAX_PAGE, RunSummary, StoredRun
from shared.domain.ports import Services
from shared.domain.runs import Run, RunState
from shared.domain.settings import Settings
from shared.domain.smoke import Answer, ScoringTarget, SmokePrompt
from shared.domain.storage import BlobInfo
from tests.support.app import jsonl, text_examples

START = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
ACCOUNT_URL = "https://acct.blob.core.windows.net"
WORKSPACE_ID = (
    "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
)


class Faults:
    """Errors queued per method name; ``check(method)`` raises the next one, if any.

    Every port method of a fake calls ``check`` first, so ``calls`` counts the calls
    of each method (what a sweep costs, in requests, is asserted on these)."""

    def __init__(self) -> None:
        self._queued: dict[str, deque[BaseException | None]] = defaultdict(deque)
        self.calls: Counter[str] = Counter()

    def fail(self, method: str, *errors: BaseException | None) -> None:
        """Make the next ``len(errors)`` calls of ``method`` raise these, in order
        (``None``: that call goes through)."""
        self._queued[method].extend(errors)

    def check(self, method: str) -> None:
        self.calls[method] += 1
        queued = self._queued.get(method)
        if queued:
            error = queued.popleft()
            if error is not None:
                raise error


class Clock:
    """``Services.now``: stands still until the test moves it."""

    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> dt.datetime:
        self.now += dt.timedelta(seconds=seconds)
        return self.now


# -- the ledger ------------------------------------------------------------------------------


class MemoryLedger:
    """The run ledger in a dict: compare-and-swap on a per-run version counter.

    ``before_replace`` (if set) runs at the start of every ``replace``, before the
    version is compared: a test uses it to change a run "concurrently". Safe to
    call from two threads (the reconciler's lease heartbeat writes from its own).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.faults = Faults()
        self.runs: dict[str, tuple[Run, int]] = {}
        self.locks: dict[str, str] = {}  # endpoint (lower case) -> run id holding it
        self.uploads: dict[str, str] = {}  # upload id -> run id
        self.before_replace: Callable[[StoredRun, Run], None] | None = None

    def fail(self, method: str, *errors: BaseException | None) -> None:
        self.faults.fail(method, *errors)

    # - what tests read -

    def run(self, run_id: str) -> Run:
        """The stored run (the test fails if there is none)."""
        stored = self.runs.get(run_id)
        assert stored is not None, f"no run {run_id} in the ledger"
        return stored[0]

    def version(self, run_id: str) -> int:
        return self.runs[run_id][1]

    def put(self, run: Run) -> StoredRun:
        """Store ``run`` as it is (a new version), whatever was there."""
        with self._lock:
            version = self.runs[run.run_id][1] + 1 if run.run_id in self.runs else 1
            self.runs[run.run_id] = (run, version)
            return StoredRun(run, _etag(version))

    # - the port -

    def get(self, run_id: str) -> StoredRun | None:
        self.faults.check("get")
        with self._lock:
            stored = self.runs.get(run_id)
        return None if stored is None else StoredRun(stored[0], _etag(stored[1]))

    def create(self, run: Run) -> StoredRun | None:
        self.faults.check("create")
        with self._lock:
            if run.run_id in self.runs:
                return None
            return self.put(run)

    def replace(self, stored: StoredRun, run: Run) -> StoredRun:
        if self.before_replace is not None:
            self.before_replace(stored, run)
        with self._lock:
            self.faults.check("replace")
            current = self.runs.get(run.run_id)
            if current is None or _etag(current[1]) != stored.etag:
                raise ConcurrencyConflict(f"run {run.run_id} changed since it was read")
            return self.put(run)

    def active(self) -> list[StoredRun]:
        self.faults.check("active")
        return [
            StoredRun(run, _etag(version))
            for run, version in self.runs.values()
            if run.needs_attention
        ]

    def list_runs(
        self, state: RunState | None, limit: int, continuation: str | None
    ) -> tuple[list[RunSummary], str | None]:
        self.faults.check("list_runs")
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be from 1 to {MAX_PAGE}, got {limit}")
        start = 0
        if continuation is not None:
            if not continuation.startswith("at:") or not continuation[3:].isdigit():
                raise InvalidInput("continuation is not a position in the run listing")
            start = int(continuation[3:])
        ordered = sorted(
            (run for run, _ in self.runs.values() if state is None or run.state is state),
            key=lambda run: (run.created_at, run.run_id),
            reverse=True,
        )
        page = ordered[start : start + limit]
        following = f"at:{start + limit}" if start + limit < len(ordered) else None
        return [RunSummary.of(run) for run in page], following

    def ping(self) -> None:
        self.faults.check("ping")

    def acquire_endpoint(self, endpoint: str, run_id: str) -> str:
        self.faults.check("acquire_endpoint")
        key = endpoint.lower()
        holder = self.locks.get(key, "")
        if holder and holder != run_id and holder in self.runs and self.run(holder).active:
            return holder
        self.locks[key] = run_id
        return run_id

    def release_endpoint(self, endpoint: str, run_id: str) -> None:
        self.faults.check("release_endpoint")
        key = endpoint.lower()
        if self.locks.get(key) == run_id:
            self.locks[key] = ""

    def link_upload(self, upload_id: str, run_id: str) -> str:
        self.faults.check("link_upload")
        return self.uploads.setdefault(upload_id, run_id)

    def upload_run(self, upload_id: str) -> str | None:
        self.faults.check("upload_run")
        return self.uploads.get(upload_id)


def _etag(version: int) -> str:
    return f'W/"{version}"'


# -- the dataset store -----------------------------------------------------------------------


@dataclass
class Blob:
    data: bytes
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/octet-stream"

    def text(self) -> str:
        return self.data.decode("utf-8")

    def lines(self) -> list[bytes]:
        return [line for line in self.data.split(b"\n") if line]


class MemoryStore:
    """The dataset container in a dict; every write gets a new ETag.

    ``chunks`` reads only the version asked for (``If-Match``), in pieces of
    ``chunk_bytes``, and fails like the adapter when the blob changed or went away.
    """

    def __init__(self, container: str = "datasets", chunk_bytes: int = 4096) -> None:
        self.container = container
        self.chunk_bytes = chunk_bytes
        self.blobs: dict[str, Blob] = {}
        self.faults = Faults()
        self._versions = 0
        self.reads: list[str] = []  # names whose bytes were read, in order

    def fail(self, method: str, *errors: BaseException | None) -> None:
        self.faults.fail(method, *errors)

    def url(self, name: str) -> str:
        return f"{ACCOUNT_URL}/{self.container}/{name}"

    def upload(self, name: str, data: bytes, **metadata: str) -> Blob:
        """What a user does: write (or overwrite) a blob."""
        self._versions += 1
        blob = Blob(data, f'"0x{self._versions:04X}"', dict(metadata))
        self.blobs[name] = blob
        return blob

    def names(self, prefix: str = "") -> list[str]:
        return sorted(name for name in self.blobs if name.startswith(prefix))

    # - the port -

    def info(self, name: str) -> BlobInfo | None:
        self.faults.check("info")
        blob = self.blobs.get(name)
        if blob is None:
            return None
        return BlobInfo(name, self.url(name), blob.etag, len(blob.data), dict(blob.metadata))

    def chunks(self, name: str, etag: str) -> Iterator[bytes]:
        self.faults.check("chunks")
        self.reads.append(name)
        blob = self.blobs.get(name)
        if blob is None:
            raise PermanentError(f"{name} was deleted while being read")
        if blob.etag != etag:
            raise PermanentError(f"{name} was overwritten while being read (version {etag})")
        data = blob.data
        return iter([data[i : i + self.chunk_bytes] for i in range(0, len(data), self.chunk_bytes)])

    def put_text(self, name: str, text: str, content_type: str) -> str:
        self.faults.check("put_text")
        self.upload(name, text.encode("utf-8")).content_type = content_type
        return self.url(name)

    def writer(self, name: str) -> MemoryWriter:
        self.faults.check("writer")
        return MemoryWriter(self, name)


class MemoryWriter:
    def __init__(self, store: MemoryStore, name: str) -> None:
        self._store = store
        self._name = name
        self._buffer = bytearray()

    def write(self, data: bytes) -> None:
        self._buffer += data

    def commit(self, metadata: Mapping[str, str]) -> str:
        self._store.faults.check("commit")
        blob = self._store.upload(self._name, bytes(self._buffer), **metadata)
        blob.content_type = "application/jsonl"
        return self._store.url(self._name)


# -- the Azure ML workspace ------------------------------------------------------------------


class Script:
    """A scripted sequence of states: each ``next()`` moves one on, then stays at the end."""

    def __init__(self, states: Sequence[str]) -> None:
        if not states:
            raise ValueError("a script needs at least one state")
        self.states = list(states)
        self.position = 0

    @property
    def current(self) -> str:
        return self.states[self.position]

    def next(self) -> str:
        state = self.current
        self.position = min(self.position + 1, len(self.states) - 1)
        return state

    def replace(self, *states: str) -> None:
        self.states = list(states)
        self.position = 0


@dataclass
class FakeJob:
    name: str
    script: Script
    spec: JobSpec | None = None  # None: created outside the app (an earlier attempt, a test)
    output_model: str = ""  # the model name the job reports ("" until it completes)
    error: str = ""
    register_model: bool = True  # register the output model (a new version) when it completes
    model_registered: bool = False
    cancelled: bool = False

    @property
    def status(self) -> str:
        return self.script.current


@dataclass
class FakeEndpoint:
    name: str
    script: Script
    traffic: dict[str, int] = field(default_factory=dict)
    description: str = ""

    @property
    def scoring_uri(self) -> str:
        return f"https://{self.name}.westeurope.inference.ml.azure.com/score"


@dataclass
class FakeDeployment:
    spec: DeploymentSpec
    script: Script
    error: str = ""


@dataclass
class DeploymentPlan:
    states: tuple[str, ...]
    error: str = ""


class FakeAzureML:
    """A workspace in dicts. Jobs, endpoints and deployments move through scripted
    states, one step per look (``get_*``); a job that completes registers its output
    model (version 1, 2, ...) unless told not to.

    Defaults: a submitted job goes Queued, Running, Completed; an endpoint or a
    deployment is Creating once, then Succeeded; a traffic update is Updating once.
    A test changes them (``job_statuses``...), rewrites one job's or endpoint's
    ``script``, plans one deployment (``plan_deployment``), adds what exists
    already (``add_*``), and queues errors (``fail``).
    """

    def __init__(self) -> None:
        self.faults = Faults()
        self.data: dict[str, str] = {}  # data asset id -> url
        self.jobs: dict[str, FakeJob] = {}
        self.models: dict[str, list[ModelView]] = {}
        self.endpoints: dict[str, FakeEndpoint] = {}
        self.deployments: dict[tuple[str, str], FakeDeployment] = {}
        self.deleted_deployments: list[tuple[str, str]] = []
        self.taken_endpoint_names: set[str] = set()
        self.quota_exceeded: set[str] = set()  # deployment names refused at once
        self.job_statuses: tuple[str, ...] = ("Queued", "Running", "Completed")
        self.endpoint_states: tuple[str, ...] = ("Creating", "Succeeded")
        self.deployment_states: tuple[str, ...] = ("Creating", "Succeeded")
        self.traffic_states: tuple[str, ...] = ("Updating", "Succeeded")
        self.apply_traffic = True  # False: a traffic update is accepted but lost
        self._deployment_plans: dict[str, DeploymentPlan] = {}

    def fail(self, method: str, *errors: BaseException | None) -> None:
        self.faults.fail(method, *errors)

    # - test set-up -

    def add_job(self, name: str, *statuses: str, output_model: str | None = None) -> FakeJob:
        """A job that exists already, as if submitted by an earlier attempt."""
        job = FakeJob(name, Script(statuses or self.job_statuses), output_model=output_model or "")
        self.jobs[name] = job
        return job

    def plan_deployment(self, name: str, *states: str, error: str = "") -> None:
        """What deployment ``name`` will go through once created."""
        self._deployment_plans[name] = DeploymentPlan(states, error)

    def add_endpoint(
        self, name: str, state: str = "Succeeded", traffic: Mapping[str, int] | None = None
    ) -> FakeEndpoint:
        endpoint = FakeEndpoint(name, Script([state]), dict(traffic or {}))
        self.endpoints[name] = endpoint
        return endpoint

    def add_deployment(
        self, endpoint: str, name: str, model_id: str = "azureml:old:1", state: str = "Succeeded"
    ) -> FakeDeployment:
        deployment = FakeDeployment(_deployment_spec(endpoint, name, model_id), Script([state]))
        self.deployments[(endpoint, name)] = deployment
        return deployment

    def add_model(self, name: str) -> ModelView:
        versions = self.models.setdefault(name, [])
        version = str(len(versions) + 1)
        model = ModelView(f"{WORKSPACE_ID}/models/{name}/versions/{version}", name, version)
        versions.append(model)
        return model

    def submitted(self) -> list[FakeJob]:
        """The jobs the app submitted (not those a test added)."""
        return [job for job in self.jobs.values() if job.spec is not None]

    # - the port -

    def register_data(self, name: str, version: str, url: str, description: str) -> str:
        self.faults.check("register_data")
        asset = f"{WORKSPACE_ID}/data/{name}/versions/{version}"
        self.data.setdefault(asset, url)
        return asset

    def get_job(self, name: str) -> JobView | None:
        self.faults.check("get_job")
        job = self.jobs.get(name)
        if job is None:
            return None
        status = job.script.next()
        if status == "Completed":
            if not job.output_model:
                job.output_model = job.spec.output_model_prefix if job.spec else name
            if job.register_model and not job.model_registered:
                job.model_registered = True
                self.add_model(job.output_model)
        return JobView(job.name, status, job.output_model if status == "Completed" else "")

    def submit_job(self, spec: JobSpec) -> JobView:
        self.faults.check("submit_job")
        existing = self.jobs.get(spec.name)
        if existing is not None:  # Azure says it exists: adopted, as the adapter does
            return JobView(existing.name, existing.status)
        job = FakeJob(spec.name, Script(self.job_statuses), spec)
        self.jobs[spec.name] = job
        return JobView(job.name, job.status)

    def cancel_job(self, name: str) -> None:
        self.faults.check("cancel_job")
        job = self.jobs.get(name)
        if job is not None:
            job.cancelled = True
            job.script.replace("Canceled")

    def job_error(self, name: str) -> str:
        self.faults.check("job_error")
        job = self.jobs.get(name)
        return job.error if job else ""

    def latest_model(self, name: str) -> ModelView | None:
        self.faults.check("latest_model")
        versions = self.models.get(name)
        return versions[-1] if versions else None

    def get_endpoint(self, name: str) -> EndpointView | None:
        self.faults.check("get_endpoint")
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            return None
        state = endpoint.script.next()
        return EndpointView(endpoint.name, state, endpoint.scoring_uri, dict(endpoint.traffic))

    def begin_create_endpoint(self, name: str, description: str) -> None:
        self.faults.check("begin_create_endpoint")
        if name in self.taken_endpoint_names:
            raise PermanentError(f"endpoint name {name!r} is not available")
        if name not in self.endpoints:
            self.endpoints[name] = FakeEndpoint(
                name, Script(self.endpoint_states), description=description
            )

    def endpoint_key(self, name: str) -> str:
        self.faults.check("endpoint_key")
        if name not in self.endpoints:
            raise PermanentError(f"endpoint {name} not found")
        return f"key-of-{name}"

    def get_deployment(self, endpoint: str, name: str) -> DeploymentView | None:
        self.faults.check("get_deployment")
        deployment = self.deployments.get((endpoint, name))
        if deployment is None:
            return None
        state = deployment.script.next()
        return DeploymentView(name, endpoint, state, deployment.spec.model_id)

    def list_deployments(self, endpoint: str) -> list[DeploymentView]:
        self.faults.check("list_deployments")
        return [
            DeploymentView(name, ep, d.script.current, d.spec.model_id)
            for (ep, name), d in self.deployments.items()
            if ep == endpoint
        ]

    def begin_create_deployment(self, spec: DeploymentSpec) -> None:
        self.faults.check("begin_create_deployment")
        if spec.endpoint not in self.endpoints:
            raise PermanentError(f"endpoint {spec.endpoint} not found")
        if spec.name in self.quota_exceeded:
            raise PermanentError(
                f"creating deployment {spec.endpoint}/{spec.name}: (BadRequest) Not enough "
                f"quota available for {spec.instance_type} in SubscriptionId sub"
            )
        key = (spec.endpoint, spec.name)
        if key in self.deployments:
            return
        plan = self._deployment_plans.get(spec.name)
        self.deployments[key] = FakeDeployment(
            spec,
            Script(plan.states if plan and plan.states else self.deployment_states),
            plan.error if plan else "",
        )

    def deployment_error(self, endpoint: str, name: str) -> str:
        self.faults.check("deployment_error")
        deployment = self.deployments.get((endpoint, name))
        return deployment.error if deployment else ""

    def begin_set_traffic(self, endpoint: str, traffic: Mapping[str, int]) -> None:
        self.faults.check("begin_set_traffic")
        target = self.endpoints.get(endpoint)
        if target is None:
            raise PermanentError(f"endpoint {endpoint} not found")
        unknown = [n for n, w in traffic.items() if w and (endpoint, n) not in self.deployments]
        if unknown:
            raise PermanentError(f"traffic to unknown deployment(s) {unknown} of {endpoint}")
        target.script.replace(*self.traffic_states)
        if self.apply_traffic:
            target.traffic = dict(traffic)

    def begin_delete_deployment(self, endpoint: str, name: str) -> None:
        self.faults.check("begin_delete_deployment")
        target = self.endpoints.get(endpoint)
        if target is not None and target.traffic.get(name, 0) > 0:
            raise PermanentError(f"deployment {name} has traffic: it cannot be deleted")
        if self.deployments.pop((endpoint, name), None) is not None:
            self.deleted_deployments.append((endpoint, name))
            if target is not None:
                target.traffic.pop(name, None)


def _deployment_spec(endpoint: str, name: str, model_id: str) -> DeploymentSpec:
    return DeploymentSpec(endpoint, name, model_id, "Standard_NC24ads_A100_v4", 1, 600, 600, 90_000)


# -- the scorer and the publisher ------------------------------------------------------------


class FakeScorer:
    """Answers every prompt with its expected completion (or ``"ok"``), in 12 ms,
    unless ``answer`` is set to decide otherwise. Keeps what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[ScoringTarget, SmokePrompt]] = []
        self.answer: Callable[[ScoringTarget, SmokePrompt], Answer] | None = None

    def score(self, target: ScoringTarget, prompt: SmokePrompt) -> Answer:
        self.asked.append((target, prompt))
        if self.answer is not None:
            return self.answer(target, prompt)
        return Answer(200, prompt.expected or "ok", 12.0)


class RecordingPublisher:
    """Keeps every batch it delivered; queued errors fail a whole batch (all or none)."""

    def __init__(self) -> None:
        self.faults = Faults()
        self.batches: list[list[LifecycleEvent]] = []

    def fail(self, *errors: BaseException | None) -> None:
        self.faults.fail("publish", *errors)

    def publish(self, events: Sequence[LifecycleEvent]) -> None:
        self.faults.check("publish")
        self.batches.append(list(events))

    @property
    def events(self) -> list[LifecycleEvent]:
        return [event for batch in self.batches for event in batch]

    def types_for(self, run_id: str) -> list[str]:
        return [
            e.type.removeprefix("FinetuneAutopilot.Run.")
            for e in self.events
            if e.subject == run_id
        ]


# -- wiring ------------------------------------------------------------------------------------


def settings(**overrides: Any) -> Settings:
    """Settings for tests: small datasets, a fixed endpoint, no poll delays."""
    base = Settings(
        subscription_id="sub",
        resource_group="rg",
        workspace="ws",
        base_model="azureml://registries/azureml/models/mistralai-Mistral-7B-v01/versions/19",
        instance_types=("Standard_NC24ads_A100_v4",),
        min_examples=5,
        endpoint_name="ep-test",
        # Test datasets hold a few held-out examples, not the 20 a comparison needs.
        eval_min_examples=1,
    )
    return dataclasses.replace(base, **overrides)


@dataclass
class Harness:
    """``Services`` made of fakes, and the fakes themselves for set-up and assertions."""

    ledger: MemoryLedger = field(default_factory=MemoryLedger)
    store: MemoryStore = field(default_factory=MemoryStore)
    work: MemoryStore = field(default_factory=lambda: MemoryStore("autopilot-work"))
    azureml: FakeAzureML = field(default_factory=FakeAzureML)
    scorer: FakeScorer = field(default_factory=FakeScorer)
    publisher: RecordingPublisher = field(default_factory=RecordingPublisher)
    clock: Clock = field(default_factory=Clock)
    settings: Settings = field(default_factory=settings)

    @property
    def services(self) -> Services:
        return Services(
            settings=self.settings,
            ledger=self.ledger,
            store=self.store,
            work=self.work,
            azureml=self.azureml,
            scorer=self.scorer,
            publisher=self.publisher,
            now=self.clock,
        )

    def configure(self, **overrides: Any) -> Harness:
        self.settings = dataclasses.replace(self.settings, **overrides)
        return self


# -- driving runs ------------------------------------------------------------------------------


def accept(h: Harness, name: str = "data.jsonl", records: Iterable[Any] | None = None) -> str:
    """Upload ``records`` (20 text examples by default) as ``name`` and accept it;
    returns the run id (the test fails unless the upload was accepted)."""
    from shared.pipeline.intake import accept_upload

    h.store.upload(name, jsonl(text_examples(20) if records is None else records))
    result = accept_upload(h.services, name)
    assert result.outcome == "accepted" and result.run_id, result
    return result.run_id


def step(h: Harness, run_id: str, *, when_due: bool = True) -> Run:
    """One reconcile of ``run_id``; the run as it is afterwards. A run backing off
    after an error is left alone until its next check, so by default the clock
    first moves there (as the timer would wait)."""
    from shared.pipeline.reconciler import reconcile

    before = h.ledger.run(run_id)
    due = before.next_check_at
    if when_due and before.last_error and due is not None and due > h.clock():
        h.clock.advance((due - h.clock()).total_seconds())
    run = reconcile(h.services, run_id)
    assert run is not None, f"run {run_id} is gone"
    return run


def drive(h: Harness, run_id: str, until: RunState, max_steps: int = 25) -> Run:
    """Reconcile until the run is in ``until``; fail if it ends elsewhere or never gets there."""
    run = h.ledger.run(run_id)
    for _ in range(max_steps):
        if run.state is until:
            return run
        if run.state.terminal:
            break
        run = step(h, run_id)
    assert run.state is until, (
        f"run {run_id} is {run.state} (activity {run.activity!r}, error {run.last_error!r}), "
        f"not {until}; timeline: {[(e.state.value, e.detail) for e in run.timeline]}"
    )
    return run
