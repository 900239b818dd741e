"""The preflight plan: what a run is expected to cost, worked out before any GPU is spent.

Pure: no I/O. Intake computes it once from the dataset's validation summary and
the settings and stores it on the run (``Run.plan``); ``decide`` holds a run
over ``MAX_RUN_COST`` in AWAITING_APPROVAL until someone approves it.

The arithmetic, every figure an estimate::

    training_tokens     report["tokens"]["training_tokens"] (the tokenizer's count x epochs)
                        when the report has it, else estimated_tokens x epochs
    gpu_hours           training_tokens / TRAINING_TOKENS_PER_SECOND / 3600
                        + TRAINING_OVERHEAD_MINUTES / 60      (one training instance)
    training_cost       gpu_hours x INSTANCE_PRICES[training SKU]
                        (the priciest of FINETUNE_INSTANCE_TYPES: serverless may pick any;
                        FINETUNE_COMPUTE_INSTANCE_TYPE for a cluster)
    deployment_cost_per_hour
                        INSTANCE_PRICES[DEPLOYMENT_INSTANCE_TYPE] x DEPLOYMENT_INSTANCE_COUNT
    rollout_cost        two deployments (the new one beside the one serving) for
                        ROLLOUT_MINUTES: 2 x deployment_cost_per_hour x ROLLOUT_MINUTES / 60
    total               training_cost + rollout_cost   (what the run itself spends;
                        the LIVE deployment's hourly cost comes after, shown on its own)

An input that is not known (no throughput figure, no price for a SKU, no token
count) is named in ``missing`` and every figure that depends on it is None.
There are no built-in prices: they vary by region, agreement and date.

Fail safe: with ``MAX_RUN_COST`` set, a plan whose total is unknown counts as
over budget (``over_budget``), so a missing price holds the run instead of
letting an unpriced job through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from shared.domain.settings import Settings

TOKENS_EXACT = "tokens.training_tokens"
TOKENS_ESTIMATED = "estimated_tokens x epochs"


@dataclass(frozen=True)
class Pricing:
    """What the plan needs from the settings (``Pricing.of(settings)``)."""

    tokens_per_second: float | None = None  # per training instance; None: not known
    overhead_minutes: float = 30.0
    instance_prices: Mapping[str, float] = field(default_factory=dict)
    currency: str = "USD"
    rollout_minutes: float = 45.0
    max_run_cost: float | None = None  # None: never hold a run
    training_instance_types: tuple[str, ...] = ()  # serverless: any of these
    compute_instance_type: str | None = None  # the cluster's SKU, when training on one
    compute: str | None = None
    deployment_instance_type: str = ""
    deployment_instance_count: int = 1

    @classmethod
    def of(cls, settings: Settings) -> Pricing:
        return cls(
            tokens_per_second=settings.training_tokens_per_second,
            overhead_minutes=settings.training_overhead_minutes,
            instance_prices=settings.instance_prices,
            currency=settings.price_currency,
            rollout_minutes=settings.rollout_minutes,
            max_run_cost=settings.max_run_cost,
            training_instance_types=settings.instance_types,
            compute_instance_type=settings.compute_instance_type,
            compute=settings.compute,
            deployment_instance_type=settings.deployment_instance_type,
            deployment_instance_count=settings.deployment_instance_count,
        )


def training_tokens(validation: Mapping[str, Any], epochs: int) -> tuple[int | None, str]:
    """Tokens the job trains on and where the figure came from (``tokens_source``):
    the report's exact ``tokens.training_tokens`` when it has one, else its
    ``estimated_tokens`` x ``epochs``; (None, "") when it has neither."""
    tokens = validation.get("tokens")
    if isinstance(tokens, Mapping):
        exact = tokens.get("training_tokens")
        if _is_number(exact) and exact >= 0:
            return int(exact), TOKENS_EXACT
    estimated = validation.get("estimated_tokens")
    if _is_number(estimated) and estimated >= 0:
        return int(estimated) * epochs, TOKENS_ESTIMATED
    return None, ""


def estimate(validation: Mapping[str, Any], epochs: int, pricing: Pricing) -> dict[str, Any]:
    """The plan of a run whose dataset's validation summary is ``validation``, trained
    for ``epochs``: every input, every figure (None when unknown), ``missing`` and
    ``over_budget``. JSON-ready: it is stored on the run and sent in events."""
    missing: list[str] = []
    tokens, source = training_tokens(validation, epochs)
    if tokens is None:
        missing.append("training tokens (the validation report has no token count)")
    tps = pricing.tokens_per_second
    if tps is None:
        missing.append("TRAINING_TOKENS_PER_SECOND")
    sku, sku_price = _training_sku(pricing, missing)

    gpu_hours = None
    if tokens is not None and tps is not None:
        gpu_hours = tokens / tps / 3600.0 + pricing.overhead_minutes / 60.0
    training_cost = None
    if gpu_hours is not None and sku_price is not None:
        training_cost = gpu_hours * sku_price

    deploy_sku = pricing.deployment_instance_type
    deploy_price = pricing.instance_prices.get(deploy_sku)
    if deploy_price is None:
        missing.append(f"INSTANCE_PRICES[{deploy_sku}]")
    per_hour = None if deploy_price is None else deploy_price * pricing.deployment_instance_count
    rollout_cost = None if per_hour is None else 2 * per_hour * pricing.rollout_minutes / 60.0
    total = None
    if training_cost is not None and rollout_cost is not None:
        total = round(training_cost, 2) + round(rollout_cost, 2)  # the sum of what is shown

    plan: dict[str, Any] = {
        "currency": pricing.currency,
        "training_tokens": tokens,
        "tokens_source": source,
        "epochs": epochs,
        "tokens_per_second": tps,
        "overhead_minutes": pricing.overhead_minutes,
        "training_instance_type": sku,
        "training_price_per_hour": sku_price,
        "gpu_hours": None if gpu_hours is None else round(gpu_hours, 3),
        "training_cost": _money(training_cost),
        "deployment_instance_type": deploy_sku,
        "deployment_instance_count": pricing.deployment_instance_count,
        "deployment_cost_per_hour": _money(per_hour),
        "rollout_minutes": pricing.rollout_minutes,
        "rollout_cost": _money(rollout_cost),
        "total": _money(total),
        "max_run_cost": pricing.max_run_cost,
        "missing": list(dict.fromkeys(missing)),  # a SKU priced for both: named once
    }
    plan["over_budget"] = over_budget(plan, pricing.max_run_cost)
    return plan


def over_budget(plan: Mapping[str, Any], max_run_cost: float | None) -> bool:
    """Whether a run with ``plan`` must wait for approval under ``max_run_cost``:
    never without a limit; always when the total is unknown (fail safe: a plan
    with a missing input, or a run recorded before plans existed)."""
    if max_run_cost is None:
        return False
    total = plan.get("total")
    if not _is_number(total):
        return True
    return bool(total > max_run_cost)


def describe(plan: Mapping[str, Any], max_run_cost: float | None) -> str:
    """One line for people: the estimated total against ``max_run_cost``, or what
    is unknown."""
    currency = plan.get("currency", "")
    limit = "no MAX_RUN_COST" if max_run_cost is None else f"MAX_RUN_COST {max_run_cost:.2f}"
    total = plan.get("total")
    if _is_number(total):
        hours = plan.get("gpu_hours")
        return f"estimated {total:.2f} {currency} ({hours} GPU-hours to train), {limit}"
    missing = "; ".join(str(m) for m in plan.get("missing") or ()) or "no plan recorded"
    return f"cost unknown (missing: {missing}), {limit}"


def _training_sku(pricing: Pricing, missing: list[str]) -> tuple[str | None, float | None]:
    """The SKU the job is priced at, and its price per hour (None: unknown, named in
    ``missing``). Serverless jobs may run on any of their instance types: the
    priciest is taken, and every one must have a price."""
    if pricing.compute:
        sku = pricing.compute_instance_type
        if not sku:
            missing.append("FINETUNE_COMPUTE_INSTANCE_TYPE")
            return None, None
        skus: tuple[str, ...] = (sku,)
    else:
        skus = pricing.training_instance_types
    unpriced = [s for s in skus if s not in pricing.instance_prices]
    missing.extend(f"INSTANCE_PRICES[{s}]" for s in unpriced)
    if unpriced or not skus:
        return (skus[0] if len(skus) == 1 else None), None
    priciest = max(skus, key=lambda s: pricing.instance_prices[s])
    return priciest, pricing.instance_prices[priciest]


def _money(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
