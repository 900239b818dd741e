"""The preflight plan's arithmetic, its unknowns, and the fail-safe budget rule;
the settings it reads; naming an approver without keeping the key."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from typing import Any

import pytest

from shared.domain.approval import Approver, key_fingerprint
from shared.domain.errors import SettingsError
from shared.domain.plan import (
    TOKENS_ESTIMATED,
    TOKENS_EXACT,
    Pricing,
    describe,
    estimate,
    over_budget,
)
from shared.domain.settings import load_settings
from tests.unit.test_settings import GOOD

A100 = "Standard_NC24ads_A100_v4"
SMALL = "Standard_NC6s_v3"
PRICING = Pricing(
    tokens_per_second=10.0,
    overhead_minutes=30.0,
    instance_prices={A100: 4.0, SMALL: 1.0},
    currency="EUR",
    rollout_minutes=45.0,
    max_run_cost=None,
    training_instance_types=(SMALL, A100),
    deployment_instance_type=A100,
    deployment_instance_count=2,
)
REPORT = {"estimated_tokens": 10_000, "examples": 20}


def test_the_plan_from_the_estimated_tokens() -> None:
    plan = estimate(REPORT, 3, PRICING)
    # 10,000 x 3 epochs at 10 tokens/s = 3,000 s = 0.8333 h, + 30 min overhead
    assert plan["training_tokens"] == 30_000
    assert plan["tokens_source"] == TOKENS_ESTIMATED
    assert plan["gpu_hours"] == 1.333
    # the priciest of the serverless instance types: 4.00 an hour
    assert plan["training_instance_type"] == A100 and plan["training_price_per_hour"] == 4.0
    assert plan["training_cost"] == 5.33
    # two A100 instances per deployment; two deployments side by side for 45 minutes
    assert plan["deployment_cost_per_hour"] == 8.0
    assert plan["rollout_cost"] == 12.0
    assert plan["total"] == 17.33
    assert plan["currency"] == "EUR"
    assert plan["missing"] == [] and plan["over_budget"] is False
    assert json.loads(json.dumps(plan)) == plan  # stored on the run, sent in events


def test_the_tokenizers_training_tokens_win_over_the_estimate() -> None:
    report = {**REPORT, "tokens": {"total": 24_000, "epochs": 3, "training_tokens": 72_000}}
    plan = estimate(report, 3, PRICING)
    assert plan["training_tokens"] == 72_000 and plan["tokens_source"] == TOKENS_EXACT
    assert plan["gpu_hours"] == 2.5  # 72,000 / 10 / 3600 = 2 h, + 0.5 h
    assert plan["training_cost"] == 10.0 and plan["total"] == 22.0


def test_the_limit_decides_over_budget() -> None:
    assert estimate(REPORT, 3, PRICING)["over_budget"] is False  # no limit: never held
    at_limit = dataclasses.replace(PRICING, max_run_cost=17.33)
    assert estimate(REPORT, 3, at_limit)["over_budget"] is False
    under = dataclasses.replace(PRICING, max_run_cost=17.32)
    plan = estimate(REPORT, 3, under)
    assert plan["over_budget"] is True and plan["max_run_cost"] == 17.32
    assert over_budget(plan, 100.0) is False  # judged against the limit of the moment


@pytest.mark.parametrize(
    ("change", "report", "missing", "unknown"),
    [
        (
            {"tokens_per_second": None},
            REPORT,
            ["TRAINING_TOKENS_PER_SECOND"],
            ("gpu_hours", "training_cost", "total"),
        ),
        (
            {"instance_prices": {A100: 4.0}},
            REPORT,
            [f"INSTANCE_PRICES[{SMALL}]"],
            ("training_cost", "total"),
        ),
        (
            {"instance_prices": {SMALL: 1.0}},
            REPORT,
            [f"INSTANCE_PRICES[{A100}]"],
            ("training_cost", "deployment_cost_per_hour", "rollout_cost", "total"),
        ),
        (
            {"compute": "gpu-cluster"},
            REPORT,
            ["FINETUNE_COMPUTE_INSTANCE_TYPE"],
            ("training_cost", "total"),
        ),
        (
            {},
            {"examples": 20},
            ["training tokens (the validation report has no token count)"],
            ("gpu_hours", "training_cost", "total"),
        ),
    ],
)
def test_unknown_inputs_are_named_and_what_depends_on_them_is_null(
    change: dict[str, Any], report: dict[str, Any], missing: list[str], unknown: tuple[str]
) -> None:
    pricing = dataclasses.replace(PRICING, **change)
    plan = estimate(report, 3, pricing)
    assert plan["missing"] == missing
    assert all(plan[name] is None for name in unknown), plan
    assert plan["over_budget"] is False  # no limit: an unknown cost holds nothing
    limited = dataclasses.replace(pricing, max_run_cost=1_000_000.0)
    assert estimate(report, 3, limited)["over_budget"] is True  # fail safe
    assert "cost unknown (missing: " in describe(plan, 5.0)


def test_a_cluster_is_priced_at_its_instance_type() -> None:
    pricing = dataclasses.replace(PRICING, compute="gpu-cluster", compute_instance_type=SMALL)
    plan = estimate(REPORT, 3, pricing)
    assert plan["training_instance_type"] == SMALL and plan["training_cost"] == 1.33
    assert plan["total"] == 13.33 and plan["missing"] == []


def test_a_run_without_a_plan_counts_as_over_any_limit() -> None:
    assert over_budget({}, None) is False
    assert over_budget({}, 0.0) is True
    assert describe({}, 5.0) == "cost unknown (missing: no plan recorded), MAX_RUN_COST 5.00"


def test_the_description_shows_the_total_and_the_limit() -> None:
    plan = estimate(REPORT, 3, PRICING)
    assert describe(plan, 10.0) == (
        "estimated 17.33 EUR (1.333 GPU-hours to train), MAX_RUN_COST 10.00"
    )
    assert describe(plan, None).endswith("no MAX_RUN_COST")


# -- settings ----------------------------------------------------------------------------------


def test_plan_settings_default_to_no_limit_and_no_prices() -> None:
    settings = load_settings(GOOD)
    assert settings.max_run_cost is None and settings.training_tokens_per_second is None
    assert settings.instance_prices == {} and settings.approver_keys == {}
    assert (settings.training_overhead_minutes, settings.rollout_minutes) == (30.0, 45.0)
    assert settings.price_currency == "USD" and settings.approval_deadline_hours == 168.0
    pricing = Pricing.of(settings)
    assert pricing.max_run_cost is None and pricing.deployment_instance_type == A100


def test_plan_settings_are_read() -> None:
    settings = load_settings(
        {
            **GOOD,
            "MAX_RUN_COST": "250",
            "TRAINING_TOKENS_PER_SECOND": "1500.5",
            "TRAINING_OVERHEAD_MINUTES": "10",
            "ROLLOUT_MINUTES": "20",
            "INSTANCE_PRICES": json.dumps({A100: 3.67, SMALL: 0}),
            "PRICE_CURRENCY": "EUR",
            "APPROVAL_DEADLINE_HOURS": "24",
            "APPROVER_KEYS": json.dumps({"0123456789ab": " alice "}),
            "FINETUNE_COMPUTE_INSTANCE_TYPE": SMALL,
        }
    )
    assert settings.max_run_cost == 250.0 and settings.training_tokens_per_second == 1500.5
    assert settings.instance_prices == {A100: 3.67, SMALL: 0.0}
    assert settings.approver_keys == {"0123456789ab": "alice"}
    assert settings.compute_instance_type == SMALL and settings.approval_deadline_hours == 24.0


def test_bad_plan_settings_are_each_named() -> None:
    bad = {
        **GOOD,
        "MAX_RUN_COST": "lots",
        "TRAINING_TOKENS_PER_SECOND": "0",
        "INSTANCE_PRICES": json.dumps({A100: "4.5", SMALL: -1}),
        "APPROVER_KEYS": json.dumps({"alice": "0123456789ab"}),
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(bad)
    text = str(caught.value)
    for name in (
        "MAX_RUN_COST",
        "TRAINING_TOKENS_PER_SECOND",
        f"INSTANCE_PRICES['{A100}']",
        f"INSTANCE_PRICES['{SMALL}']",
        "APPROVER_KEYS entry 'alice'",
    ):
        assert name in text, (name, text)
    with pytest.raises(SettingsError, match="INSTANCE_PRICES is invalid"):
        load_settings({**GOOD, "INSTANCE_PRICES": "[4.5]"})


# -- approvers ---------------------------------------------------------------------------------


def test_a_key_is_known_by_its_fingerprint_only() -> None:
    assert key_fingerprint("abc") == hashlib.sha256(b"abc").hexdigest()[:12] == "ba7816bf8f01"
    assert key_fingerprint("") == ""


def test_an_approver_is_named_by_key_then_principal_then_unknown() -> None:
    names = {key_fingerprint("key-of-alice"): "alice"}
    assert Approver.identify("key-of-alice", "bob@corp", names).by == "alice"
    assert Approver.identify("other-key", "bob@corp", names).by == "bob@corp"
    assert Approver.identify("other-key", "", names).by == "unknown"
    assert Approver.identify("", "", names) == Approver("unknown", "", "")


def test_the_approval_record_keeps_the_fingerprint_and_the_claim_never_the_key() -> None:
    at = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
    approver = Approver.identify("secret-key-value", "", {}, claimed_by="carol")
    record = approver.record(at)
    assert record == {
        "by": "unknown",
        "at": "2026-11-29T09:00:00+00:00",
        "key": key_fingerprint("secret-key-value"),
        "claimed_by": "carol",
    }
    assert "secret-key-value" not in json.dumps(record)
