"""Generate the demo's dialog-summarization dataset (``dialogsum.jsonl``).

Written for this project: short everyday dialogs between two people and a
one-sentence summary, in the prompt format of the manual notebook flow this app
automates (``Summarize the dialog.\\n<dialog>: ...\\n<summary>: ``). The
generator is deterministic, so the committed file can be rebuilt exactly:

    .venv/bin/python -m local.demo.make_dataset
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "dialogsum.jsonl"
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


def main(count: int = 360) -> int:
    r = random.Random(20261129)
    # The notebook's own example first, so the demo can ask it at the end.
    records = [
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
    seen = {records[0]["prompt"]}
    while len(records) < count:
        a, b = r.sample(NAMES, 2)
        lines, summary = r.choice(KINDS)(r, a, b)
        text = prompt(lines)
        if text in seen:
            continue
        seen.add(text)
        records.append({"prompt": text, "completion": summary})
    OUT.write_text("".join(json.dumps(rec) + "\n" for rec in records), encoding="utf-8")
    print(f"wrote {len(records)} examples to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
