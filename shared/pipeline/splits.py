"""Training and validation parts of a run's dataset, split in the read that validates it.

Without a user-supplied validation file, the upload is split into
``_autopilot/splits/<upload id>/<fraction>/{training,validation}.jsonl`` of the
work container (``Services.work``): each example goes to one part by a hash of
its bytes (``datasets.split_part``), so the split is the same on every machine
and every retry.

The split happens during intake, in the one read of the upload that also
validates it (``validate_and_split``: each chunk goes to the validator, its
lines to a ``PartSplitter``), so a dataset is downloaded once. The parts stream
out as staged blocks while the file is read, one block per part in memory, and
their block lists are committed only once the file is known to be valid: an
invalid upload leaves no blob (nothing listed, no event; the storage service
drops uncommitted blocks on its own). Spooling the parts to a local file
instead would need disk the size of the dataset (up to ``MAX_DATASET_BYTES``,
on a Functions instance) and a second upload pass after the read.

The parts are named after the upload (container, name, version), not after the
content hash, because the name must be known before the read that computes
the hash. Two invocations splitting the same upload write the same bytes to the
same names; the store's writers converge on them.

With a sibling validation file (``name.validation.jsonl`` next to
``name.jsonl``), both files are used in place and nothing is written.

A tiny dataset can leave a part empty by chance; then the file's first example
is also put in the empty part, and the run's split notes say so.

``prepare_parts`` is what the reconciler falls back on for a run that recorded
no parts (created before intake split uploads): it finds or writes them, with
a read of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.datasets import Report, Validator, iter_lines, split_part
from shared.domain.runs import Run
from shared.domain.storage import SPLITS_PREFIX, DatasetStore, PartWriter


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


def part_names(upload_id: str, fraction: float) -> tuple[str, str]:
    base = f"{SPLITS_PREFIX}{upload_id}/{fraction:g}"
    return f"{base}/training.jsonl", f"{base}/validation.jsonl"


def sibling_parts(store: DatasetStore, upload_url: str, sibling: Any) -> Parts:
    """The upload and its sibling validation file, both used in place."""
    return Parts(
        upload_url,
        str(sibling["url"]),
        str(sibling["name"]),
        store.container,
        "sibling validation file",
    )


class PartSplitter:
    """Sends each line to its part as it streams by; ``commit`` makes both parts visible."""

    def __init__(self, work: DatasetStore, upload_id: str, fraction: float) -> None:
        self._work = work
        self._fraction = fraction
        self._names = dict(
            zip(("training", "validation"), part_names(upload_id, fraction), strict=True)
        )
        self._writers: dict[str, PartWriter] = {
            part: work.writer(name) for part, name in self._names.items()
        }
        self._counts = {"training": 0, "validation": 0}
        self._first: bytes | None = None

    def add(self, line: bytes | None) -> None:
        """One line of the upload (None: over the length limit, so the file is invalid)."""
        if line is None or not line.strip():
            return  # blank lines of a valid file are only trailing ones
        if self._first is None:
            self._first = line
        part = split_part(line, self._fraction)
        self._writers[part].write(line + b"\n")
        self._counts[part] += 1

    def commit(self, reuse: bool = False) -> Parts:
        """Finish both parts (only for a valid upload: until then nothing is visible).

        With ``reuse``, parts this upload already has are kept as they are, not
        written again: a request by hand to train the same upload again must not
        rewrite the blobs an earlier job may still be reading.
        """
        if reuse:
            found = _existing(self._work, self._names, self._fraction)
            if found is not None:
                return found
        counts, note = self._counts, ""
        for part in ("validation", "training"):
            if counts[part] == 0 and self._first is not None:
                self._writers[part].write(self._first + b"\n")
                counts[part] = 1
                note = f"the {part} part would have been empty: it holds the first example too"
        urls = {
            part: self._writers[part].commit({"note": note, "examples": str(counts[part])})
            for part in ("validation", "training")
        }
        return Parts(
            urls["training"],
            urls["validation"],
            self._names["validation"],
            self._work.container,
            f"hash split at {self._fraction:g}",
            counts["training"],
            counts["validation"],
            note,
        )


def validate_and_split(
    chunks: Iterable[bytes],
    validator: Validator,
    splitter: PartSplitter | None,
    max_line_bytes: int,
) -> Report:
    """One pass over an upload: every chunk feeds ``validator`` and, teed, its lines
    feed ``splitter`` (if any). Stops reading where the validator stops (size limit)."""

    def teed() -> Iterator[bytes]:
        for chunk in chunks:
            more = validator.feed(chunk)
            yield chunk
            if not more:
                return

    if splitter is None:
        for _ in teed():
            pass
    else:
        for _, line in iter_lines(teed(), max_line_bytes):
            splitter.add(line)
    return validator.finish()


def prepare_parts(store: DatasetStore, work: DatasetStore, run: Run) -> Parts:
    """The parts of a run that recorded none: the sibling validation file, parts
    already in ``work``, or a split of the upload (read from ``store`` again)."""
    config = run.config
    sibling = config.get("sibling_validation")
    if sibling:
        return sibling_parts(store, run.dataset.url, sibling)
    fraction = float(config["validation_fraction"])
    names = dict(
        zip(("training", "validation"), part_names(run.dataset.upload_id, fraction), strict=True)
    )
    found = _existing(work, names, fraction)
    if found is not None:
        return found
    splitter = PartSplitter(work, run.dataset.upload_id, fraction)
    max_line = int(config.get("max_example_bytes", 1 << 20))
    for _, line in iter_lines(store.chunks(run.dataset.name, run.dataset.etag), max_line):
        splitter.add(line)
    return splitter.commit()


def _existing(work: DatasetStore, names: dict[str, str], fraction: float) -> Parts | None:
    """The parts already written under ``names``, if both are there."""
    training, validation = work.info(names["training"]), work.info(names["validation"])
    if training is None or validation is None:
        return None
    return Parts(
        training.url,
        validation.url,
        validation.name,
        work.container,
        f"hash split at {fraction:g} (reused)",
        _count(training.metadata),
        _count(validation.metadata),
        training.metadata.get("note", ""),
    )


def _count(metadata: Any) -> int | None:
    raw = metadata.get("examples")
    return int(raw) if raw and str(raw).isdigit() else None


def validation_lines(store: DatasetStore, work: DatasetStore, run: Run) -> Iterator[bytes] | None:
    """The lines of the run's validation part, streamed (smoke prompts and the eval set
    come from it); None if the run recorded none or it is gone. Runs split before the
    work container existed kept their parts in the dataset container."""
    split = run.validation.get("split", {})
    name = str(split.get("validation_name", ""))
    in_work = split.get("validation_container", run.dataset.container) == work.container
    source = work if in_work else store
    info = source.info(name) if name else None
    if info is None:
        return None
    return (
        line for _, line in iter_lines(source.chunks(name, info.etag), 1 << 24) if line is not None
    )
