"""Training and validation parts of a run's dataset.

Without a user-supplied validation file, the upload is split once per content
and fraction into ``_autopilot/splits/<sha256>/<fraction>/{training,validation}.jsonl``
of the work container (``Services.work``):
each example goes to one part by a hash of its bytes (``datasets.split_part``),
so the split is the same on every machine and every retry, and runs on the
same bytes share the parts. Streams in, streams out, memory stays flat.

A tiny dataset can leave a part empty by chance; then the file's first example
is also put in the empty part, and the run's split notes say so.

With a sibling validation file (``name.validation.jsonl`` next to
``name.jsonl``), both files are used in place and nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.datasets import iter_lines, split_part
from shared.domain.runs import Run
from shared.domain.storage import SPLITS_PREFIX, DatasetStore


@dataclass(frozen=True)
class Parts:
    training_url: str
    validation_url: str
    validation_name: str  # blob name of the validation part (smoke prompts come from it)
    validation_container: str  # ... and its container
    method: str
    training_examples: int | None = None
    validation_examples: int | None = None
    note: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "training_examples": self.training_examples,
            "validation_examples": self.validation_examples,
            "note": self.note,
            "training_url": self.training_url,
            "validation_url": self.validation_url,
            "validation_name": self.validation_name,
            "validation_container": self.validation_container,
        }


def part_names(sha256: str, fraction: float) -> tuple[str, str]:
    base = f"{SPLITS_PREFIX}{sha256}/{fraction:g}"
    return f"{base}/training.jsonl", f"{base}/validation.jsonl"


def prepare_parts(store: DatasetStore, work: DatasetStore, run: Run) -> Parts:
    """The run's parts: the sibling validation file, parts already in ``work``, or a
    split of the upload (read from ``store``) written to ``work``."""
    config = run.config
    sibling = config.get("sibling_validation")
    if sibling:
        return Parts(
            run.dataset.url,
            str(sibling["url"]),
            str(sibling["name"]),
            store.container,
            "sibling validation file",
        )
    fraction = float(config["validation_fraction"])
    training_name, validation_name = part_names(run.sha256, fraction)
    training, validation = work.info(training_name), work.info(validation_name)
    if training is not None and validation is not None:
        return Parts(
            training.url,
            validation.url,
            validation_name,
            work.container,
            f"hash split at {fraction:g} (reused)",
            _count(training.metadata),
            _count(validation.metadata),
            training.metadata.get("note", ""),
        )
    return _split(store, work, run, fraction, training_name, validation_name)


def _split(
    store: DatasetStore,
    work: DatasetStore,
    run: Run,
    fraction: float,
    training_name: str,
    validation_name: str,
) -> Parts:
    writers = {"training": work.writer(training_name), "validation": work.writer(validation_name)}
    counts = {"training": 0, "validation": 0}
    first: bytes | None = None
    max_line = int(run.config.get("max_example_bytes", 1 << 20))
    for _, line in iter_lines(store.chunks(run.dataset.name, run.dataset.etag), max_line):
        if line is None or not line.strip():
            continue  # the file was validated; only trailing blank lines get here
        if first is None:
            first = line
        part = split_part(line, fraction)
        writers[part].write(line + b"\n")
        counts[part] += 1
    note = ""
    for part in ("validation", "training"):
        if counts[part] == 0 and first is not None:
            writers[part].write(first + b"\n")
            counts[part] = 1
            note = f"the {part} part would have been empty: it holds the first example too"
    metadata = {"note": note}
    validation_url = writers["validation"].commit(
        {**metadata, "examples": str(counts["validation"])}
    )
    training_url = writers["training"].commit({**metadata, "examples": str(counts["training"])})
    return Parts(
        training_url,
        validation_url,
        validation_name,
        work.container,
        f"hash split at {fraction:g}",
        counts["training"],
        counts["validation"],
        note,
    )


def _count(metadata: Any) -> int | None:
    raw = metadata.get("examples")
    return int(raw) if raw and str(raw).isdigit() else None
