"""Streaming, constant-memory validation of JSONL fine-tuning datasets.

A dataset is JSON Lines: one record per line, UTF-8. Two formats are accepted:

- **text completion**: ``{"prompt": "...", "completion": "..."}`` (field names
  configurable in :class:`Limits`; ``{"text": ..., "ground_truth": ...}`` as in
  Azure's samples is recognised when the configured names are absent);
- **chat**: ``{"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}``
  with at least one user and one assistant message, the last from the assistant.

The validator reads an iterable of byte chunks (a blob download's ``chunks()``,
a local file read in blocks), so nothing here knows about Azure. It keeps
nothing that grows with the file: a partial line of at most
``max_example_bytes`` (longer lines are skipped, not buffered), fixed-size
statistics, a fixed-size Bloom filter for duplicates, and the first
``max_reported_errors`` errors. The file's SHA-256 is computed in the same pass.

Everything the validator finds is in a :class:`Report`; :func:`validate`
never raises for bad data (only for bad arguments). At most one error is
reported per line: the first problem found in it. The rules, beyond the formats:

- UTF-8 only; a BOM is accepted at the very start of the file (anywhere else it
  is an error), line ends are ``\\n`` or ``\\r\\n``; NUL bytes are errors.
- Each line one JSON object, standard JSON only: ``NaN``/``Infinity`` and
  objects with a repeated key (parsers disagree on which value wins) are errors.
- Text values must be non-empty and not only whitespace; lone UTF-16
  surrogates (``"\\ud83d"`` without its pair) are errors.
- Blank lines are errors, except at the end of the file.
- The format is the caller's ``task``, or else that of the first valid record;
  records of the other format are errors. Text records use the configured
  prompt/completion fields, or ``text``/``ground_truth`` if the first valid
  record has those instead; the file must stick to one pair.
- File level: empty, no records, fewer than ``min_examples`` valid examples,
  or over ``max_file_bytes`` (reading stops there).

The package: :mod:`~shared.datasets.lines` (numbered lines in constant memory,
the split rule), :mod:`~shared.datasets.records` (one line: JSON, format,
fields; every problem has a stable code), :mod:`~shared.datasets.blocks` (the
fast path: a block of lines found valid at once with msgspec, or left to
``records``), :mod:`~shared.datasets.validator` (the streaming pass and its
statistics), :mod:`~shared.datasets.report` (the report, ``ERROR_CODES``),
:mod:`~shared.datasets.cli`.
"""

from shared.datasets.cli import main
from shared.datasets.duplicates import METHOD as DUPLICATES_METHOD
from shared.datasets.lines import iter_lines, split_part
from shared.datasets.report import (
    CHARS_PER_TOKEN,
    ERROR_CODES,
    TOKEN_METHOD,
    LengthStats,
    Limits,
    LineError,
    Report,
    TaskType,
)
from shared.datasets.validator import Validator, validate

__all__ = [
    "CHARS_PER_TOKEN",
    "DUPLICATES_METHOD",
    "ERROR_CODES",
    "TOKEN_METHOD",
    "LengthStats",
    "Limits",
    "LineError",
    "Report",
    "TaskType",
    "Validator",
    "iter_lines",
    "main",
    "split_part",
    "validate",
]
