"""Generate the demo's dialog-summarization dataset (``dialogsum.jsonl``), and
training variants of it whose quality differs in known ways.

Written for this project: short everyday dialogs between two people and a
one-sentence summary, in the prompt format of the manual notebook flow this app
automates (``Summarize the dialog.\\n<dialog>: ...\\n<summary>: ``). The
generator is deterministic, so the committed file can be rebuilt exactly:

    .venv/bin/python -m local.demo.make_dataset

Variants, for the evaluation gate (the emulator's stand-in model answers with
the completion of the most similar training example, so less data, or data
with wrong completions, makes a measurably worse model). Each writes a
training file of the lines the app's own split keeps for training (324 of the
360), changed as asked, and next to it ``<name>.validation.jsonl``: the 36
held-out lines, the same for every variant, so runs are judged on the same
references (upload it first; the app then uses it as the validation set):

    .venv/bin/python -m local.demo.make_dataset --out small.jsonl --first 32
    .venv/bin/python -m local.demo.make_dataset --out noisy.jsonl --shuffle-completions 0.3 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shared.datasets import split_part

OUT = Path(__file__).resolve().parent / "dialogsum.jsonl"
VALIDATION_FRACTION = 0.1  # the app's default (VALIDATION_FRACTION)
NAMES = [
    "Edward",
    "Rachel",
    "Priya",
    "Tomas",
    "Ines",
    "Kofi",
    "Mei",
    "Lars",
    "Amara",
    "Jonah",
    "Sofia",
    "Hiro",
    "Nadia",
    "Mateo",
    "Grace",
    "Yusuf",
    "Elena",
    "Oskar",
    "Leila",
    "Dmitri",
]
PLACES = ["the cafe", "the library", "the station", "room 4", "the park", "the office lobby"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
FOODS = ["pizza", "sushi", "tacos", "soup", "curry", "salad"]
ITEMS = ["the report", "the slides", "the budget", "the contract", "the invoice", "the poster"]

Dialog = tuple[list[str], str]


def meeting(r: random.Random, a: str, b: str) -> Dialog:
    hour = r.randint(1, 11)
    return (
        [
            f"{a}: {b}, at what time is the meeting..",
            f"{b}: At {hour}pm..",
            f"{a}: Ok, see you then",
        ],
        f"{a} and {b} will meet at {hour}pm.",
    )


def lunch(r: random.Random, a: str, b: str) -> Dialog:
    food, place = r.choice(FOODS), r.choice(PLACES)
    return (
        [f"{a}: Lunch today?", f"{b}: Sure, {food} at {place}?", f"{a}: Perfect, see you there."],
        f"{a} and {b} will have {food} for lunch at {place}.",
    )


def deadline(r: random.Random, a: str, b: str) -> Dialog:
    item, day = r.choice(ITEMS), r.choice(DAYS)
    return (
        [f"{a}: When is {item} due?", f"{b}: {day} morning.", f"{a}: Thanks, I'll have it ready."],
        f"{a} will have {item} ready by {day} morning.",
    )


def late(r: random.Random, a: str, b: str) -> Dialog:
    minutes = r.choice([5, 10, 15, 20, 30])
    place = r.choice(PLACES)
    return (
        [
            f"{a}: I'm running {minutes} minutes late, sorry!",
            f"{b}: No problem, I'll wait at {place}.",
        ],
        f"{a} is {minutes} minutes late and {b} will wait at {place}.",
    )


def call(r: random.Random, a: str, b: str) -> Dialog:
    day, hour = r.choice(DAYS), r.randint(8, 11)
    return (
        [
            f"{a}: Can we talk about the project?",
            f"{b}: Call me {day} at {hour}am.",
            f"{a}: Will do.",
        ],
        f"{a} will call {b} on {day} at {hour}am about the project.",
    )


def borrow(r: random.Random, a: str, b: str) -> Dialog:
    item = r.choice(["charger", "umbrella", "bike", "notes", "ladder", "camera"])
    day = r.choice(DAYS)
    return (
        [
            f"{a}: Could I borrow your {item}?",
            f"{b}: Yes, I'll bring it on {day}.",
            f"{a}: Thank you!",
        ],
        f"{b} will lend {a} the {item} on {day}.",
    )


KINDS: list[Callable[[random.Random, str, str], Dialog]] = [
    meeting,
    lunch,
    deadline,
    late,
    call,
    borrow,
]


def prompt(lines: list[str]) -> str:
    return "Summarize the dialog.\n<dialog>: " + "\n".join(lines) + "\n<summary>: "


def records(count: int = 360) -> list[dict[str, str]]:
    """The dataset's examples, in file order."""
    r = random.Random(20261129)
    # The notebook's own example first, so the demo can ask it at the end.
    found = [
        {
            "prompt": prompt(
                [
                    "Edward: Rachel, at what time is the meeting..",
                    "Rachel: At 2pm..",
                    "Edward: Ok, see you then",
                ]
            ),
            "completion": "Edward and Rachel will meet at 2pm.",
        }
    ]
    seen = {found[0]["prompt"]}
    while len(found) < count:
        a, b = r.sample(NAMES, 2)
        lines, summary = r.choice(KINDS)(r, a, b)
        text = prompt(lines)
        if text in seen:
            continue
        seen.add(text)
        found.append({"prompt": text, "completion": summary})
    return found


def line(record: dict[str, Any]) -> str:
    return json.dumps(record) + "\n"


def held_out(
    examples: Sequence[dict[str, str]], fraction: float = VALIDATION_FRACTION
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(training, validation) as the app splits an upload: by each line's hash."""
    training: list[dict[str, str]] = []
    validation: list[dict[str, str]] = []
    for record in examples:
        part = split_part(line(record).encode(), fraction)
        (validation if part == "validation" else training).append(record)
    return training, validation


def variant(
    training: Sequence[dict[str, str]],
    first: int | None = None,
    shuffle_completions: float = 0.0,
    seed: int = 0,
) -> list[dict[str, str]]:
    """The first ``first`` examples, then a ``shuffle_completions`` share of them given
    one another's completions (chosen and permuted with ``random.Random(seed)``)."""
    chosen = [dict(r) for r in training[: len(training) if first is None else first]]
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(chosen)), round(shuffle_completions * len(chosen))))
    completions = [chosen[i]["completion"] for i in picked]
    rng.shuffle(completions)
    for i, completion in zip(picked, completions, strict=True):
        chosen[i]["completion"] = completion
    return chosen


def write_variant(
    out: Path, first: int | None = None, shuffle_completions: float = 0.0, seed: int = 0
) -> tuple[Path, Path]:
    """Write a training variant to ``out`` and the held-out lines next to it as
    ``<name>.validation.jsonl``; returns both paths."""
    training, validation = held_out(records())
    sibling = out.with_name(out.name.removesuffix(".jsonl") + ".validation.jsonl")
    chosen = variant(training, first, shuffle_completions, seed)
    out.write_text("".join(map(line, chosen)), encoding="utf-8")
    sibling.write_text("".join(map(line, validation)), encoding="utf-8")
    return out, sibling


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.demo.make_dataset", description=__doc__)
    parser.add_argument("--out", type=Path, help="write a training variant here (and its sibling)")
    parser.add_argument("--first", type=int, help="keep the first N training examples")
    parser.add_argument("--shuffle-completions", type=float, default=0.0, metavar="F")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out is None:
        if args.first is not None or args.shuffle_completions:
            parser.error("--first and --shuffle-completions make a variant: give --out")
        found = records()
        OUT.write_text("".join(map(line, found)), encoding="utf-8")
        print(f"wrote {len(found)} examples to {OUT}")
        return 0
    if not 0.0 <= args.shuffle_completions <= 1.0:
        parser.error("--shuffle-completions is a share, 0 to 1")
    out, sibling = write_variant(args.out, args.first, args.shuffle_completions, args.seed)
    print(f"wrote {out} and {sibling}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
