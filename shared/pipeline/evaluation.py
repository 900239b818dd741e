"""Scoring the eval set on the challenger and the champion: bounded and resumable.

``evaluate_step(services, run, scoring_uri)`` is the EVALUATING state's look
(``shared/pipeline/observation.py``): it continues the run's progress record
(``shared/domain/evaluation.py``) or starts one, sends every example still
unanswered to the run's deployment (the challenger, at 0% traffic) and to the
deployment that held the most traffic before the rollout (the champion,
``run.previous_deployments``), both through the ``azureml-model-deployment``
header, and returns the record with what came back. ``decide`` records it on
the run and judges it once every answer is in.

Bounds, so one reconcile stays well inside the lease heartbeat and the
function timeout:

- at most ``EVAL_CONCURRENCY`` requests at a time, each with the smoke test's
  ``SMOKE_TIMEOUT_SECONDS``;
- no request starts after ``EVAL_STEP_SECONDS``; what is left is asked on the
  next tick (level-triggered: the answers so far are on the run);
- a 429 or 503 is not an answer: no request goes to the endpoint until its
  ``Retry-After`` (1 s without one) has passed, and the example is asked again,
  in this step if the wait fits, else on a later tick (the record's
  ``retry_after`` tells ``decide`` how long to wait), at most ``EVAL_MAX_TRIES``
  times; throttled once more, it counts as an error (``EVAL_MAX_ERROR_FRACTION``).

Any other failure (HTTP error, timeout, an unusable body) is that example's
answer: an error, scored 0. A champion that fails does not block the
challenger's judgement: it is judged against the floor instead.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from shared.domain import evaluation
from shared.domain.errors import PermanentError
from shared.domain.ports import Services
from shared.domain.runs import Run
from shared.domain.smoke import Answer, ScoringTarget, is_chat_route, is_mlflow_route
from shared.pipeline.splits import validation_lines

log = logging.getLogger(__name__)

THROTTLED = (429, 503)
DEFAULT_RETRY_AFTER = 1.0  # seconds, for a 429/503 without Retry-After


def scoring_target(
    services: Services, run: Run, scoring_uri: str, deployment: str, max_tokens: int
) -> ScoringTarget:
    """Where and how to score ``deployment`` of the run's endpoint (``SMOKE_ROUTE``;
    a chat model has no text-completion route, so it gets ``/v1/chat/completions``)."""
    settings = services.settings
    route = settings.smoke_route
    chat = run.config.get("task") == "chat"
    if chat and not is_chat_route(route) and not is_mlflow_route(route):
        route = "/v1/chat/completions"
    return ScoringTarget(
        scoring_uri=scoring_uri,
        key=services.azureml.endpoint_key(run.endpoint),
        deployment=deployment,
        route=route,
        chat=chat,
        timeout_seconds=settings.smoke_timeout_seconds,
        max_tokens=max_tokens,
    )


def eval_examples(services: Services, run: Run) -> list[evaluation.Example]:
    """The run's eval set: the ``EVAL_EXAMPLES`` lowest-hash examples of its validation part."""
    settings = services.settings
    lines = validation_lines(services.store, services.work, run)
    if lines is None:
        name = run.validation.get("split", {}).get("validation_name") or "(none)"
        raise PermanentError(f"the validation split {name} is gone: nothing to evaluate on")
    return evaluation.eval_set(
        lines, settings.eval_examples, settings.prompt_field, settings.completion_field
    )


def evaluate_step(services: Services, run: Run, scoring_uri: str) -> dict[str, Any]:
    """The run's progress record after one bounded round of scoring."""
    settings = services.settings
    examples = eval_examples(services, run)
    progress = dict(run.evaluation)
    if not _resumable(progress, run, examples):
        progress = _start(services, run, examples)
    results = [dict(r) for r in progress["results"]]
    sides = [s for s in evaluation.SIDES if s == "challenger" or progress.get("champion")]
    targets = {
        side: scoring_target(
            services, run, scoring_uri, progress[side]["deployment"], settings.eval_max_tokens
        )
        for side in sides
    }
    todo = [
        (i, s) for i, r in enumerate(results) for s in sides if not evaluation.is_final(r.get(s))
    ]
    gate = _Gate(time.monotonic() + settings.eval_step_seconds)
    tokenizer = str(progress["rouge_tokenizer"])
    with ThreadPoolExecutor(max_workers=settings.eval_concurrency) as pool:
        futures = {
            pool.submit(
                _answer,
                services,
                targets[side],
                examples[i],
                results[i].get(side),
                tokenizer,
                gate,
                settings.eval_max_tries,
            ): (i, side)
            for i, side in todo
        }
        for future in as_completed(futures):
            i, side = futures[future]
            entry = future.result()
            if entry is not None:
                results[i][side] = entry
    waits = [
        float(entry["retry_after"])
        for r in results
        for side in sides
        if (entry := r.get(side)) and not evaluation.is_final(entry) and "retry_after" in entry
    ]
    updated = {**progress, "results": results, "retry_after": max(waits, default=0.0)}
    done, wanted = evaluation.answered(updated)
    log.info("run %s: evaluation scored %d of %d answers", run.run_id, done, wanted)
    return updated


def _resumable(progress: dict[str, Any], run: Run, examples: list[evaluation.Example]) -> bool:
    """The record is this deployment's unfinished scoring of this very eval set."""
    return (
        progress.get("status") == "scoring"
        and progress.get("challenger", {}).get("deployment") == run.deployment
        and [r.get("key") for r in progress.get("results", ())] == [e.key for e in examples]
    )


def _start(services: Services, run: Run, examples: list[evaluation.Example]) -> dict[str, Any]:
    """A fresh record: the eval set, the tokenizer its references need, the champion."""
    champion: dict[str, Any] = {}
    if run.previous_deployments:
        name = max(run.previous_deployments.items(), key=lambda item: item[1])[0]
        view = services.azureml.get_deployment(run.endpoint, name)
        champion = {"deployment": name, "model": view.model if view else ""}
    references = [e.prompt.expected or "" for e in examples]
    return {
        "status": "scoring",
        "metric": evaluation.METRIC,
        "rouge_tokenizer": evaluation.choose_tokenizer(references),
        "examples": len(examples),
        "seed": evaluation.seed_for(run.run_id),
        "challenger": {"deployment": run.deployment},
        "champion": champion,
        "results": [
            {
                "key": e.key,
                "prompt": evaluation.clip(e.prompt.prompt),
                "expected": evaluation.clip(e.prompt.expected or ""),
            }
            for e in examples
        ],
    }


class _Gate:
    """The step's deadline, and the endpoint's ``Retry-After``: no request is sent
    before the time the service last asked for, by any worker."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._not_before = 0.0
        self._lock = threading.Lock()

    def wait_turn(self) -> bool:
        """Wait until a request may go; False if it would start after the deadline."""
        while True:
            with self._lock:
                not_before = self._not_before
            now = time.monotonic()
            if max(now, not_before) >= self.deadline:
                return False
            if now >= not_before:
                return True
            time.sleep(not_before - now)

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, time.monotonic() + seconds)


def _answer(
    services: Services,
    target: ScoringTarget,
    example: evaluation.Example,
    previous: dict[str, Any] | None,
    tokenizer: str,
    gate: _Gate,
    max_retries: int,
) -> dict[str, Any] | None:
    """One side's answer to one example: a final entry, a throttled one to ask again
    later, or ``previous`` (None if never asked) when the step has no time left."""
    entry = previous
    tries = int(previous.get("tries", 0)) if previous else 0
    while gate.wait_turn():
        answer = services.scorer.score(target, example.prompt)
        tries += 1
        if answer.status in THROTTLED:
            wait = DEFAULT_RETRY_AFTER if answer.retry_after is None else answer.retry_after
            gate.hold(wait)
            if tries <= max_retries:
                entry = {
                    "tries": tries,
                    "status": answer.status,
                    "error": _error(answer),
                    "retry_after": wait,
                }
                continue
        scored = evaluation.score(
            answer.text, example.prompt.expected or "", tokenizer, error=_error(answer)
        )
        return {
            **scored,
            "status": answer.status,
            "latency_ms": round(answer.latency_ms, 1),
            "tries": tries,
        }
    return entry


def _error(answer: Answer) -> str:
    """Why an answer is unusable, or "" if it is an answer (even an empty one)."""
    detail = " ".join(answer.error.split())[:200]
    if answer.status == 0:
        return f"no response: {detail or 'unknown error'}"
    if answer.status != 200:
        return f"HTTP {answer.status}" + (f": {detail}" if detail else "")
    return f"unusable answer: {detail}" if detail else ""
