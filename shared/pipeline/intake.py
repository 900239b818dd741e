"""Intake: turn "a JSONL blob landed" into a run, exactly once per content.

``accept_upload(services, name)`` is what the blob trigger (and later the HTTP
API) calls. It may run many times, even concurrently, for the same blob
version; the outcome is the same each time:

1. Names outside the contract are skipped: not ``.jsonl``, the app's own
   ``_autopilot/`` prefix, and sibling ``*.validation.jsonl`` files (used by
   the upload they belong to, never runs of their own).
2. An upload seen before (same blob, same ETag) is only reconciled again.
3. The blob is read once, in one streaming pass (constant memory), which both
   validates it and splits it into training and validation parts (staged in
   the work container, committed only if the file is valid; not split when a
   sibling validation file is there); its hyperparameter overrides
   (``finetune_*`` metadata) are checked.
4. Invalid: a report (JSON and text) goes under ``_autopilot/reports/`` in the
   work container, the original stays untouched, and a REJECTED run records
   the summary.
5. Valid: the parts are committed, and the run id derives from the content
   hash and the training configuration. If that run exists for another
   upload, this upload is recorded as DUPLICATE pointing at it; otherwise the
   run is created, naming its parts, and reconciled at once (data assets,
   then the job).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shared.datasets import Limits, LineError, Report, TaskType, Validator, validate
from shared.domain import hyperparameters, plan
from shared.domain.errors import InvalidInput
from shared.domain.ports import Services
from shared.domain.runs import DatasetRef, Run, RunState, run_id_for
from shared.domain.settings import Settings
from shared.domain.storage import (
    REPORTS_PREFIX,
    VALIDATION_SUFFIX,
    BlobInfo,
    is_app_blob,
    sibling_validation_name,
)
from shared.domain.telemetry import measure
from shared.pipeline.reconciler import reconcile
from shared.pipeline.splits import Parts, PartSplitter, sibling_parts, validate_and_split

log = logging.getLogger(__name__)

Outcome = Literal["skipped", "rejected", "duplicate", "accepted", "seen"]


@dataclass(frozen=True)
class IntakeResult:
    outcome: Outcome
    run_id: str | None = None
    detail: str = ""


def skip_reason(name: str) -> str | None:
    """Why ``name`` is not a dataset upload, or None if it is one."""
    if is_app_blob(name):
        return "written by the app itself"
    if not name.lower().endswith(".jsonl"):
        return "not a .jsonl file"
    if name.lower().endswith(VALIDATION_SUFFIX):
        return "a validation file: used by the upload it belongs to"
    return None


def accept_upload(
    services: Services,
    name: str,
    overrides: Mapping[str, object] | None = None,
    force: bool = False,
) -> IntakeResult:
    """Handle blob ``name`` of the dataset container (see the module docstring).

    ``overrides`` (hyperparameters, same allow-list as blob metadata) and
    ``force`` (train again on content that was trained before) come from a
    request by hand; either makes it a new request rather than a repeat of the
    blob trigger for the same upload.
    """
    reason = skip_reason(name)
    if reason is not None:
        log.info("skipped blob %s: %s", name, reason)
        return IntakeResult("skipped", detail=reason)
    store = services.store
    info = store.info(name)
    if info is None:
        log.info("skipped blob %s: it no longer exists", name)
        return IntakeResult("skipped", detail="the blob no longer exists")
    dataset = DatasetRef(store.container, name, info.url, info.etag, info.size)
    by_hand = bool(overrides) or force
    seen = None if by_hand else services.ledger.upload_run(dataset.upload_id)
    if seen is not None:
        services.telemetry.annotate(run_id=seen)
        log.info("upload %s (%s) was handled before as run %s", name, info.etag, seen)
        reconcile(services, seen)
        return IntakeResult("seen", seen)

    settings = services.settings
    try:
        hyper = {
            **settings.hyperparameters,
            **hyperparameters.overrides_from_metadata(info.metadata),
            **hyperparameters.check_overrides(overrides or {}),
        }
    except InvalidInput as exc:
        return _reject(services, dataset, None, str(exc), "invalid_metadata")

    limits = _limits(settings, hyper)
    if info.size > limits.max_file_bytes:
        too_big = (
            f"{info.size:,} bytes is over the size limit of {limits.max_file_bytes:,} bytes "
            "(MAX_DATASET_BYTES); nothing was read"
        )
        return _reject(services, dataset, None, too_big, "file_too_large")
    read = _read(services, dataset, limits, reuse_parts=by_hand)
    if isinstance(read, IntakeResult):
        return read
    report, parts, sibling_config = read

    config = _config(settings, report, hyper, sibling_config)
    if force:
        config["forced"] = services.now().isoformat()  # a new run id: train again
    run_id = run_id_for(report.sha256, config)
    services.telemetry.annotate(run_id=run_id)  # on this invocation's span and logs from here
    now = services.now()
    summary = _summary(report, hyper)
    run = Run.new(
        run_id,
        dataset,
        now,
        f"uploaded as {name}",
        sha256=report.sha256,
        config=config,
        validation={**summary, "split": parts.describe()},
        plan=plan.estimate(summary, summary["epochs"], plan.Pricing.of(settings)),
    ).moved_to(RunState.REGISTERING_DATA, now, report.summary(max_errors=0).splitlines()[0])

    created = services.ledger.create(run)
    if created is not None:
        measure(services.telemetry, None, run)
    if created is None:
        existing = services.ledger.get(run_id)
        if existing is not None and existing.run.dataset.upload_id != dataset.upload_id:
            return _duplicate(services, dataset, existing.run, report)
        if existing is not None and by_hand:
            reconcile(services, run_id)
            return IntakeResult("seen", run_id, "this upload was already run with this config")
    if not by_hand:
        services.ledger.link_upload(dataset.upload_id, run_id)
    log.info("run %s accepted for %s (%d examples)", run_id, name, report.examples)
    reconcile(services, run_id)
    return IntakeResult("accepted", run_id, f"{report.examples} examples")


def _read(
    services: Services, dataset: DatasetRef, limits: Limits, reuse_parts: bool
) -> tuple[Report, Parts, dict[str, Any] | None] | IntakeResult:
    """Read the upload once: its report, its parts (committed only if valid; with
    ``reuse_parts``, those of an earlier run of this upload are kept) and its
    sibling validation file's config, or the REJECTED outcome."""
    store, settings = services.store, services.settings
    task = None if settings.task == "auto" else TaskType(settings.task)
    # Looked up before the read: with the user's own validation file, nothing is split.
    sibling = store.info(sibling_validation_name(dataset.name))
    splitter = (
        None
        if sibling is not None
        else PartSplitter(services.work, dataset.upload_id, settings.validation_fraction)
    )
    report = validate_and_split(
        store.chunks(dataset.name, dataset.etag),
        Validator(task, limits, expected_bytes=dataset.size or None),
        splitter,
        limits.max_example_bytes,
    )
    if not report.valid:
        return _reject(services, dataset, report, report.summary())
    if sibling is None:
        assert splitter is not None
        # Committed before the run is recorded, so a run never names parts that
        # are not there (a DUPLICATE upload leaves its parts behind, unused).
        return report, splitter.commit(reuse=reuse_parts), None
    sibling_report = validate(
        store.chunks(sibling.name, sibling.etag), report.task, limits, sibling.size
    )
    if not sibling_report.valid:
        summary = f"validation file {sibling.name}: {sibling_report.summary()}"
        return _reject(services, dataset, sibling_report, summary)
    sibling_config = _sibling(sibling, sibling_report)
    return report, sibling_parts(store, dataset.url, sibling_config), sibling_config


def _limits(settings: Settings, hyper: Mapping[str, str]) -> Limits:
    return Limits(
        max_file_bytes=settings.max_dataset_bytes,
        max_example_bytes=settings.max_example_bytes,
        min_examples=settings.min_examples,
        prompt_field=settings.prompt_field,
        completion_field=settings.completion_field,
        # The job's own max_seq_length (a hyperparameter) is what it will cut at.
        max_seq_length=int(hyper.get("max_seq_length", settings.max_seq_length)),
        max_seq_error=settings.max_seq_error,
    )


def _config(
    settings: Settings,
    report: Report,
    hyper: Mapping[str, str],
    sibling: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The training configuration: everything that makes two jobs differ."""
    return {
        "base_model": settings.base_model,
        "task": report.task.value if report.task else "text",
        "hyperparameters": dict(sorted(hyper.items())),
        "compute": settings.compute,
        "instance_types": list(settings.instance_types),
        "experiment_name": settings.experiment_name,
        "validation_fraction": settings.validation_fraction,
        "max_example_bytes": settings.max_example_bytes,
        "sibling_validation": dict(sibling) if sibling else None,
    }


def _sibling(info: BlobInfo, report: Report) -> dict[str, Any]:
    return {
        "name": info.name,
        "url": info.url,
        "sha256": report.sha256,
        "examples": report.examples,
    }


def _summary(report: Report, hyper: Mapping[str, str]) -> dict[str, Any]:
    summary = report.to_dict()
    epochs = hyperparameters.epochs(hyper)
    summary["training_tokens"] = report.training_tokens(epochs)
    summary["epochs"] = epochs
    if summary["tokens"] is not None:
        summary["tokens"]["epochs"] = epochs
        summary["tokens"]["training_tokens"] = report.training_tokens(epochs)
    return summary


def _reject(
    services: Services,
    dataset: DatasetRef,
    report: Report | None,
    summary: str,
    code: str = "",
) -> IntakeResult:
    """Record a REJECTED run and its report. Without a validation ``report`` (the file
    was not read), the one file-level error has ``code``, in the report's shape."""
    run_id = f"rej-{dataset.upload_id}"
    services.telemetry.annotate(run_id=run_id)
    base = f"{REPORTS_PREFIX}{dataset.name}.{dataset.upload_id}"
    if report is None:
        error = LineError(0, code, summary)
        summary = str(error)
        details: dict[str, Any] = {"valid": False, "error_count": 1, "errors": [error.to_dict()]}
    else:
        details = report.to_dict()
    document = {"dataset": dataset.url, "etag": dataset.etag, "summary": summary, **details}
    report_url = services.work.put_text(
        base + ".report.json", json.dumps(document, indent=2), "application/json"
    )
    services.work.put_text(base + ".report.txt", summary + "\n", "text/plain; charset=utf-8")
    now = services.now()
    run = Run.new(
        run_id,
        dataset,
        now,
        f"uploaded as {dataset.name}",
        report_url=report_url,
        sha256=report.sha256 if report else "",
        validation=details,
    ).moved_to(RunState.REJECTED, now, summary, last_error=summary.splitlines()[0])
    if services.ledger.create(run) is not None:
        measure(services.telemetry, None, run)
    services.ledger.link_upload(dataset.upload_id, run_id)
    log.info("run %s rejected %s: %s", run_id, dataset.name, summary.splitlines()[0])
    return IntakeResult("rejected", run_id, summary)


def _duplicate(
    services: Services, dataset: DatasetRef, original: Run, report: Report
) -> IntakeResult:
    run_id = f"dup-{dataset.upload_id}"
    services.telemetry.annotate(run_id=run_id)
    now = services.now()
    detail = (
        f"same content and training configuration as run {original.run_id} "
        f"({original.dataset.name}); no new job"
    )
    run = Run.new(
        run_id,
        dataset,
        now,
        f"uploaded as {dataset.name}",
        sha256=report.sha256,
        duplicate_of=original.run_id,
        validation=report.to_dict(),
    ).moved_to(RunState.DUPLICATE, now, detail)
    if services.ledger.create(run) is not None:
        measure(services.telemetry, None, run)
    services.ledger.link_upload(dataset.upload_id, run_id)
    log.info("run %s: %s is a duplicate of run %s", run_id, dataset.name, original.run_id)
    return IntakeResult("duplicate", run_id, detail)
