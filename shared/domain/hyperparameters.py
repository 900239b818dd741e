"""The hyperparameters a run may set, and how each value is checked.

Azure ML takes fine-tuning hyperparameters as strings. Defaults come from the
``FINETUNE_HYPERPARAMETERS`` setting; a dataset may override them through blob
metadata ``finetune_<name>`` (or an HTTP request body), but only for names on
this allow-list, each value checked here. Values are normalised to the string
Azure receives, so equal settings always hash to the same run id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.domain.errors import InvalidInput

METADATA_PREFIX = "finetune_"


@dataclass(frozen=True)
class Rule:
    describe: str
    check: Callable[[str], str]  # returns the normalised value or raises ValueError


def _int(low: int, high: int) -> Rule:
    def check(raw: str) -> str:
        value = int(raw.strip())
        if not low <= value <= high:
            raise ValueError
        return str(value)

    return Rule(f"an integer from {low} to {high}", check)


def _float(low: float, high: float, *, open_low: bool = False) -> Rule:
    def check(raw: str) -> str:
        value = float(raw.strip())
        if not (low < value if open_low else low <= value) or value > high:
            raise ValueError
        return repr(value)

    bracket = "(" if open_low else "["
    return Rule(f"a number in {bracket}{low}, {high}]", check)


def _choice(*options: str) -> Rule:
    def check(raw: str) -> str:
        value = raw.strip().lower()
        if value not in options:
            raise ValueError
        return value

    return Rule("one of " + ", ".join(options), check)


ALLOWED: dict[str, Rule] = {
    "num_train_epochs": _int(1, 100),
    "learning_rate": _float(0.0, 1.0, open_low=True),
    "per_device_train_batch_size": _int(1, 1024),
    "gradient_accumulation_steps": _int(1, 1024),
    "lr_scheduler_type": _choice(
        "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"
    ),
    "warmup_steps": _int(0, 1_000_000),
    "weight_decay": _float(0.0, 1.0),
    "max_seq_length": _int(16, 131_072),
    "lora_r": _int(1, 1024),
    "lora_alpha": _int(1, 4096),
    "lora_dropout": _float(0.0, 1.0),
}


def check_values(values: Mapping[str, object], source: str) -> tuple[dict[str, str], list[str]]:
    """Normalise ``values``; returns (good values, one problem per bad entry)."""
    good: dict[str, str] = {}
    problems: list[str] = []
    for name, raw in values.items():
        rule = ALLOWED.get(name)
        if rule is None:
            problems.append(
                f"{source}: '{name}' is not an allowed hyperparameter "
                f"(allowed: {', '.join(sorted(ALLOWED))})"
            )
            continue
        try:
            good[name] = rule.check(str(raw))
        except ValueError:
            problems.append(f"{source}: '{name}' must be {rule.describe}, got {raw!r}")
    return good, problems


def overrides_from_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Hyperparameter overrides in blob metadata (``finetune_<name>`` keys).

    Raises ``InvalidInput`` naming every bad key or value; other metadata is ignored.
    """
    wanted = {
        key.lower()[len(METADATA_PREFIX) :]: value
        for key, value in metadata.items()
        if key.lower().startswith(METADATA_PREFIX)
    }
    good, problems = check_values(wanted, "blob metadata")
    if problems:
        raise InvalidInput("; ".join(problems))
    return good


def epochs(hyperparameters: Mapping[str, str]) -> int:
    """Epochs the job will run (Azure's default is 1 when unset)."""
    return int(hyperparameters.get("num_train_epochs", "1"))


def check_overrides(values: Mapping[str, object]) -> dict[str, str]:
    """Overrides given by a caller (e.g. the HTTP API); ``InvalidInput`` names each bad one."""
    good, problems = check_values(values, "hyperparameters")
    if problems:
        raise InvalidInput("; ".join(problems))
    return good
