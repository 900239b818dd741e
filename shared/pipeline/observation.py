"""What the reconciler looks at for a run, state by state (``gather``).

A look only reads Azure, except in three states: DEPLOYING takes the endpoint's
rollout lock (a ledger write) before it looks, SMOKE_TESTING scores the new
deployment's prompts, and EVALUATING scores the eval set on the new and the
live deployment for at most ``EVAL_STEP_SECONDS`` (``shared/pipeline/evaluation.py``).
``READ_ONLY_LOOKS`` names the states whose look is a plain read (the job, or
the endpoint's traffic update): those the timer's sweep may look at before it
leases the run (``shared/pipeline/reconciler.py``).
"""

from __future__ import annotations

import dataclasses
import logging

from shared.domain.azureml import JOB_FAILED, SUCCEEDED
from shared.domain.decide import Observed, champion
from shared.domain.errors import PermanentError
from shared.domain.ports import Services
from shared.domain.runs import Run, RunState
from shared.domain.smoke import (
    SmokeCriteria,
    SmokeOutcome,
    SmokePrompt,
    conclude,
    judge,
    prompts_from_lines,
)
from shared.pipeline.evaluation import evaluate_step, scoring_target
from shared.pipeline.splits import validation_lines

log = logging.getLogger(__name__)

_OBSERVES_JOB = {RunState.REGISTERING_DATA, RunState.TRAINING}
READ_ONLY_LOOKS = frozenset({RunState.TRAINING, RunState.PROMOTING})


def gather(services: Services, run: Run) -> Observed:
    """What Azure (and the endpoint's rollout lock) shows for ``run`` in its state."""
    azureml = services.azureml
    if run.state in _OBSERVES_JOB:
        job = azureml.get_job(run.job_name or run.run_id)
        if job is not None and job.status in JOB_FAILED:
            job = dataclasses.replace(job, error=azureml.job_error(job.name))
        endpoint = None
        if run.state is RunState.REGISTERING_DATA and job is None:
            # About to submit: is the endpoint name ours already (else it is claimed)?
            endpoint = azureml.get_endpoint(run.endpoint or services.settings.endpoint_name)
        return Observed(job=job, endpoint=endpoint)
    if run.state is RunState.DEPLOYING:
        holder = services.ledger.acquire_endpoint(run.endpoint, run.run_id)
        if holder != run.run_id:
            return Observed(holder=holder)
        model = None if run.model_id else azureml.latest_model(run.model_name or run.run_id)
        endpoint = azureml.get_endpoint(run.endpoint)
        deployment = None
        if endpoint is not None and endpoint.provisioning_state == SUCCEEDED:
            deployment = azureml.get_deployment(run.endpoint, run.deployment)
        error = ""
        if deployment is not None and deployment.provisioning_state == "Failed":
            error = azureml.deployment_error(run.endpoint, run.deployment)
        return Observed(
            holder=holder,
            model=model,
            endpoint=endpoint,
            deployment=deployment,
            deployment_error=error,
        )
    if run.state is RunState.SMOKE_TESTING:
        endpoint = azureml.get_endpoint(run.endpoint)
        deployment = azureml.get_deployment(run.endpoint, run.deployment)
        smoke = None
        up = endpoint is not None and deployment and deployment.provisioning_state == SUCCEEDED
        if up and endpoint is not None and not run.cancel_requested:
            smoke = _smoke_test(services, run, endpoint.scoring_uri)
        return Observed(endpoint=endpoint, deployment=deployment, smoke=smoke)
    if run.state is RunState.EVALUATING:
        endpoint = azureml.get_endpoint(run.endpoint)
        deployment = azureml.get_deployment(run.endpoint, run.deployment)
        evaluation = None
        up = endpoint is not None and deployment and deployment.provisioning_state == SUCCEEDED
        if up and endpoint is not None and not run.cancel_requested:
            evaluation = evaluate_step(services, run, endpoint.scoring_uri)
        return Observed(endpoint=endpoint, deployment=deployment, evaluation=evaluation)
    if run.state is RunState.PROMOTING:
        endpoint = azureml.get_endpoint(run.endpoint)
        replaced = None
        name = champion(run)
        if (
            name
            and endpoint is not None
            and endpoint.provisioning_state == SUCCEEDED
            and endpoint.traffic.get(run.deployment, 0) == 100
        ):
            # Going LIVE now: what it replaces is recorded (a rollback's target),
            # looked up before the previous deployment is retired.
            replaced = azureml.get_deployment(run.endpoint, name)
        return Observed(endpoint=endpoint, champion=replaced)
    return Observed()


def _smoke_test(services: Services, run: Run, scoring_uri: str) -> SmokeOutcome:
    settings = services.settings
    target = scoring_target(services, run, scoring_uri, run.deployment, settings.smoke_max_tokens)
    criteria = SmokeCriteria(
        max_latency_ms=settings.smoke_max_latency_ms,
        min_similarity=settings.smoke_min_similarity,
    )
    results = [
        judge(prompt, services.scorer.score(target, prompt), criteria)
        for prompt in _smoke_prompts(services, run)
    ]
    outcome = conclude(results)
    log.info("run %s: smoke test %s", run.run_id, "passed" if outcome.passed else outcome.reason)
    return outcome


def _smoke_prompts(services: Services, run: Run) -> list[SmokePrompt]:
    settings = services.settings
    if settings.smoke_prompts:
        return [SmokePrompt(prompt=p) for p in settings.smoke_prompts]
    lines = validation_lines(services.store, services.work, run)
    name = str(run.validation.get("split", {}).get("validation_name", "")) or "(none)"
    if lines is None:
        raise PermanentError(f"the validation split {name} is gone: no smoke prompts")
    prompts = prompts_from_lines(
        lines, settings.smoke_prompt_count, settings.prompt_field, settings.completion_field
    )
    if not prompts:
        raise PermanentError(f"the validation split {name} holds no usable smoke prompt")
    return prompts
