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

Run ``python -m shared.datasets FILE`` to validate a local file (``--help``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import json.scanner
import math
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal, NoReturn, cast

__all__ = [
    "CHARS_PER_TOKEN",
    "DUPLICATES_METHOD",
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

_BOM: Final = b"\xef\xbb\xbf"
_ROLES: Final = frozenset({"system", "user", "assistant"})
_ALT_PAIR: Final = ("text", "ground_truth")

CHARS_PER_TOKEN: Final = 4
TOKEN_METHOD: Final = (
    "~4 characters per token: ceil(characters / 4) per example, summed over the "
    "prompt and completion (chat: every message's content); real tokenizers differ, "
    "non-English text and code usually need more tokens"
)

# Length histogram: bucket i holds lengths n with floor(8 * log2(n)) == i, so a
# bucket spans a factor of 2 ** (1/8) (about 9%) and a percentile read from it is
# within about 4.5% of the true value. 64 * 8 buckets cover any length.
_BUCKETS_PER_OCTAVE: Final = 8
_BUCKETS: Final = 64 * _BUCKETS_PER_OCTAVE

# Bloom filter for duplicates: _BLOOM_HASHES bit positions per example, taken as
# 32-bit words of one blake2b digest of the example's content.
_BLOOM_HASHES: Final = 4
_BLOOM_DIGEST: Final = struct.Struct(f"<{_BLOOM_HASHES}I")
DUPLICATES_METHOD: Final = (
    "approximate: examples whose content (field values; chat: roles and contents) was seen "
    "before, counted with a {size} Bloom filter ({k} bit positions per example from one "
    "blake2b digest); exact repeats are always counted, false positives can add a few "
    "(expected false-positive rate at the end of this file: {rate:.1e})"
)


class TaskType(StrEnum):
    """The dataset's format: what kind of fine-tuning it is for."""

    TEXT = "text"
    CHAT = "chat"


_TASK_LABEL: Final = {TaskType.TEXT: "text-completion", TaskType.CHAT: "chat"}


@dataclass(frozen=True)
class Limits:
    """What a dataset may be; the defaults suit Azure ML fine-tuning jobs."""

    max_file_bytes: int = 2 << 30
    """Files larger than this are rejected; reading stops once past it."""
    max_example_bytes: int = 64 * 1024
    """Per line, after stripping a leading BOM (line 1) and the line end."""
    min_examples: int = 10
    """Fewer valid examples than this make the file invalid."""
    max_reported_errors: int = 100
    """Errors listed in the report (the first ones); ``error_count`` counts all."""
    prompt_field: str = "prompt"
    completion_field: str = "completion"
    duplicate_filter_bytes: int = 16 << 20
    """Size of the Bloom filter that counts duplicates (a power of two)."""

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_example_bytes", "max_reported_errors"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1")
        if self.min_examples < 0:
            raise ValueError("Limits.min_examples must not be negative")
        if not self.prompt_field or not self.completion_field:
            raise ValueError("Limits.prompt_field and completion_field must not be empty")
        if self.prompt_field == self.completion_field:
            raise ValueError("Limits.prompt_field and completion_field must differ")
        size = self.duplicate_filter_bytes
        if size < 1024 or size > 1 << 29 or size & (size - 1):
            raise ValueError(
                "Limits.duplicate_filter_bytes must be a power of two between 1 KiB and 512 MiB"
            )


@dataclass(frozen=True)
class LineError:
    """One problem: ``line`` is 1-based, 0 for the file as a whole."""

    line: int
    message: str

    def __str__(self) -> str:
        where = "file" if self.line == 0 else f"line {self.line}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class LengthStats:
    """Characters per valid example (prompt + completion, or all message contents).

    ``min``, ``max`` and ``mean`` are exact; ``p50`` and ``p95`` are estimated from
    a fixed histogram with logarithmic buckets 9% wide (within about 5%).
    """

    min: int
    max: int
    mean: float
    p50: int
    p95: int


@dataclass(frozen=True)
class Report:
    """What validating one dataset found. ``to_dict()`` is JSON-serialisable."""

    valid: bool
    """No errors at all and at least ``Limits.min_examples`` valid examples."""
    task: TaskType | None
    """Given by the caller, or detected from the first valid record; None if neither."""
    fields: tuple[str, ...]
    """Text: the (prompt, completion) field names used; chat: ("messages",)."""
    examples: int
    """Valid examples."""
    lines: int
    """Lines read, blank ones included."""
    bytes: int
    """Bytes read (all of the file unless it is over ``max_file_bytes``)."""
    sha256: str
    """Hex SHA-256 of exactly the bytes read."""
    complete: bool
    """False when reading stopped early because the file is over the size limit."""
    error_count: int
    errors: tuple[LineError, ...]
    """The first ``Limits.max_reported_errors`` errors, in line order (file-level first)."""
    duplicates: int
    """Valid examples whose content repeats an earlier example's (approximate)."""
    duplicates_method: str
    lengths: LengthStats | None
    """None when there is no valid example."""
    estimated_tokens: int
    token_method: str = TOKEN_METHOD

    def training_tokens(self, epochs: int) -> int:
        """Estimated tokens a fine-tuning job trains on: every example once per epoch."""
        if epochs < 1:
            raise ValueError("epochs must be at least 1")
        return self.estimated_tokens * epochs

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "task": None if self.task is None else self.task.value,
            "fields": list(self.fields),
            "examples": self.examples,
            "lines": self.lines,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "complete": self.complete,
            "error_count": self.error_count,
            "errors": [{"line": e.line, "message": e.message} for e in self.errors],
            "duplicates": self.duplicates,
            "duplicates_method": self.duplicates_method,
            "lengths": None
            if self.lengths is None
            else {
                "min": self.lengths.min,
                "max": self.lengths.max,
                "mean": self.lengths.mean,
                "p50": self.lengths.p50,
                "p95": self.lengths.p95,
            },
            "estimated_tokens": self.estimated_tokens,
            "token_method": self.token_method,
        }

    def summary(self, max_errors: int = 10) -> str:
        """A few lines for people: verdict, counts, the first errors."""
        kind = "" if self.task is None else f"{_TASK_LABEL[self.task]} "
        if self.task is TaskType.TEXT and self.fields:
            kind += f"({'/'.join(self.fields)}) "
        counts = (
            f"{self.examples:,} valid {kind}example{_s(self.examples)} in "
            f"{self.lines:,} line{_s(self.lines)}, {_size(self.bytes)}"
        )
        if self.valid:
            head = f"VALID: {counts}"
        else:
            head = f"INVALID: {self.error_count:,} error{_s(self.error_count)}; {counts}"
        out = [head, f"sha256 {self.sha256}"]
        if self.lengths is not None:
            s = self.lengths
            out.append(
                f"characters per example: min {s.min:,}, p50 ~{s.p50:,}, p95 ~{s.p95:,}, "
                f"max {s.max:,}, mean {s.mean:,.1f}"
            )
            out.append(
                f"estimated tokens: {self.estimated_tokens:,} (~{CHARS_PER_TOKEN} characters "
                f"per token); duplicates: {self.duplicates:,} (approximate)"
            )
        shown = self.errors[:max_errors]
        out.extend(f"  {e}" for e in shown)
        if self.error_count > len(shown):
            more = self.error_count - len(shown)
            out.append(f"  ... and {more:,} more error{_s(more)}")
        return "\n".join(out)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} byte{_s(n)}"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit} ({n:,} bytes)"


def _json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__  # pragma: no cover - json produces nothing else


def _show(value: str, limit: int = 40) -> str:
    """A short, ASCII-only, quoted rendering of a string found in the data."""
    text = json.dumps(value[:limit])
    return text if len(value) <= limit else text[:-1] + '..."'


# --- Lines ---


class _LineSplitter:
    """Splits byte chunks into numbered lines without ever holding an over-long one.

    The partial line kept between chunks is at most ``max_line_bytes`` plus 4
    bytes (room for a BOM and a CR); once it is longer, the rest of that line is
    skipped up to the next newline and the line comes out as None.
    """

    __slots__ = (
        "_max",
        "_pending",
        "_skip_bom",
        "_skip_cr",
        "_skipped",
        "_skipping",
        "_slack",
        "line",
        "skipped_bytes",
    )

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1")
        self._max = max_line_bytes
        self._slack = max_line_bytes + 4
        self._pending = bytearray()
        self._skipping = False
        self._skipped = 0
        self._skip_cr = False
        self._skip_bom = False
        self.line = 0
        """Number of the last line produced."""
        self.skipped_bytes = 0
        """Length (without line end) of the last line produced as None."""

    def _complete(self, line: bytes) -> tuple[int, bytes | None]:
        self.line += 1
        if line[-1:] == b"\r":
            line = line[:-1]
        if self.line == 1 and line[:3] == _BOM:
            line = line[3:]
        if len(line) > self._max:
            self.skipped_bytes = len(line)
            return self.line, None
        return self.line, line

    def _skip(self, piece: bytes) -> None:
        if piece:
            self._skipped += len(piece)
            self._skip_cr = piece[-1:] == b"\r"

    def _end_skip(self) -> tuple[int, None]:
        self.line += 1
        size = self._skipped - self._skip_cr
        if self.line == 1 and self._skip_bom:
            size -= 3
        self.skipped_bytes = size
        self._skipping = False
        self._skipped = 0
        self._skip_cr = self._skip_bom = False
        return self.line, None

    def feed(self, chunk: bytes) -> Iterator[tuple[int, bytes | None]]:
        """The lines this chunk completes; consume them all before the next feed."""
        if not chunk:
            return
        parts = chunk.split(b"\n")
        rest = parts.pop()
        if parts:
            first = parts[0]
            if self._skipping:
                self._skip(first)
                yield self._end_skip()
            elif self._pending:
                self._pending += first
                line = bytes(self._pending)
                self._pending = bytearray()
                yield self._complete(line)
            else:
                yield self._complete(first)
            for index in range(1, len(parts)):
                yield self._complete(parts[index])
        if self._skipping:
            self._skip(rest)
        elif rest:
            self._pending += rest
            if len(self._pending) > self._slack:
                self._skipping = True
                self._skip_bom = self.line == 0 and self._pending[:3] == _BOM
                self._skip(bytes(self._pending[-1:]))
                self._skipped = len(self._pending)
                self._pending = bytearray()

    def finish(self) -> Iterator[tuple[int, bytes | None]]:
        """The last line if the input does not end with a newline."""
        if self._skipping:
            yield self._end_skip()
        elif self._pending:
            line = bytes(self._pending)
            self._pending = bytearray()
            yield self._complete(line)


def iter_lines(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """Numbered lines (1-based) of a byte stream, in constant memory.

    Each line comes without its line end (``\\n`` or ``\\r\\n``) and, on line 1,
    without a leading UTF-8 BOM. A line longer than ``max_line_bytes`` comes out
    as None: it is skipped up to the next newline, never buffered whole. A final
    line without a newline counts; a newline at the very end does not start one.
    """
    splitter = _LineSplitter(max_line_bytes)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.finish()


def split_part(line: bytes, validation_fraction: float) -> Literal["training", "validation"]:
    """Which part of a train/validation split a line belongs to.

    Decided by a hash of the line's bytes alone, so the same line goes to the
    same part on every run and machine, identical lines always share a part
    (duplicates cannot leak across the split), and about
    ``validation_fraction`` of distinct lines go to validation. Exactly:
    trailing ``\\r`` and ``\\n`` bytes are ignored (LF and CRLF copies of a file
    split alike), the 8-byte blake2b digest of the rest is read as a big-endian
    integer ``h``, and the line is for validation when
    ``h / 2**64 < validation_fraction``.
    """
    if not 0.0 <= validation_fraction <= 1.0:
        raise ValueError("validation_fraction must be between 0 and 1")
    digest = hashlib.blake2b(line.rstrip(b"\r\n"), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2.0**64
    return "validation" if point < validation_fraction else "training"


# --- Records ---


class _Rejected(ValueError):
    """A JSON document the json module accepts but a dataset must not contain."""


def _reject_constant(name: str) -> NoReturn:
    raise _Rejected(f"invalid JSON: {name} is not a JSON value (only finite numbers are)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that rejects an object with a repeated key.

    Python's json keeps the last of repeated keys while other parsers keep the
    first, so the trainer could see a different example than this check did.
    """
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:  # pragma: no branch - a repeat is there
            if key in seen:
                raise _Rejected(
                    f"duplicate key {_show(key)} in one object "
                    "(JSON parsers disagree about which value counts)"
                )
            seen.add(key)
    return result


_DECODER: Final = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_constant=_reject_constant)
# typeshed wants a scanner as the context; any object with the decoder's attributes works.
_scan_json: Final = json.scanner.make_scanner(cast(Any, _DECODER))


def _loads(text: str) -> Any:
    """``json.loads`` with the hooks above, minus two Python-level calls per line.

    The scanner parses one value starting at the first character; a line with
    whitespace around its value, or with an error, goes through the decoder
    itself for the standard behaviour and error messages.
    """
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        end = -1
    if end == len(text):
        return value
    return _DECODER.decode(text)


def _json_problem(error: json.JSONDecodeError, text: str) -> str:
    """A precise message for a JSON syntax error."""
    column = error.colno
    if error.msg == "Extra data":
        before = text[: error.pos]
        hint = ""
        if "\r" in before[len(before.rstrip()) :]:
            hint = "; records separated by bare CR (\\r) line ends? use LF or CRLF"
        return (
            "invalid JSON: unexpected text after the end of the JSON value "
            f"at column {column}{hint}"
        )
    if error.msg == "Invalid control character at":
        char = text[error.pos] if error.pos < len(text) else "?"
        return (
            f"invalid JSON: unescaped control character U+{ord(char):04X} inside a string "
            f"at column {column} (write it as an escape, e.g. \\t or \\n)"
        )
    if error.msg == "Unterminated string starting at":
        return f"invalid JSON: unterminated string starting at column {column}"
    if error.msg == "Expecting value" and error.pos == 0:
        return "invalid JSON: expecting a JSON value at column 1"
    return f"invalid JSON: {error.msg[0].lower()}{error.msg[1:]} at column {column}"


def _check_text(record: dict[str, Any], pair: tuple[str, str]) -> str | tuple[int, str]:
    """An error message, or (characters, duplicate key) for a valid text record."""
    prompt_name, completion_name = pair
    if prompt_name not in record or completion_name not in record:
        missing = [name for name in pair if name not in record]
        if len(missing) == 2:
            return f"missing fields '{prompt_name}' and '{completion_name}'"
        return f"missing field '{missing[0]}'"
    prompt = record[prompt_name]
    completion = record[completion_name]
    for name, value in ((prompt_name, prompt), (completion_name, completion)):
        if type(value) is not str:
            return f"field '{name}' must be a string, found {_json_type(value)}"
        if not value:
            return f"field '{name}' is an empty string"
        if value.isspace():
            return f"field '{name}' is blank (only whitespace)"
    return len(prompt) + len(completion), f"{prompt}\x1f{completion}"


def _check_chat(record: dict[str, Any]) -> str | tuple[int, str]:
    """An error message, or (characters, duplicate key) for a valid chat record."""
    messages = record["messages"]
    if type(messages) is not list:
        return f"field 'messages' must be a list of message objects, found {_json_type(messages)}"
    if not messages:
        return "field 'messages' is an empty list"
    chars = 0
    parts: list[str] = []  # role, content, role, content, ...
    for message in messages:
        # The fast path for a good message; _message_problem says what is wrong otherwise.
        if type(message) is dict:
            role = message.get("role")
            content = message.get("content")
            if (
                type(role) is str
                and role in _ROLES
                and type(content) is str
                and content
                and not content.isspace()
            ):
                chars += len(content)
                parts.append(role)
                parts.append(content)
                continue
        return _message_problem(len(parts) // 2, message)
    roles = parts[::2]
    if "user" not in roles:
        return "no message with role 'user' (a chat example needs a user and an assistant message)"
    if "assistant" not in roles:
        return (
            "no message with role 'assistant' "
            "(a chat example needs a user and an assistant message)"
        )
    if roles[-1] != "assistant":
        return (
            f"the last message, messages[{len(roles) - 1}], is from '{roles[-1]}': "
            "it must be the assistant's answer"
        )
    return chars, "\x1f".join(parts)


def _message_problem(index: int, message: object) -> str:
    """What is wrong with a chat message that failed the fast check."""
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        return f"{where} must be an object, found {_json_type(message)}"
    if "role" not in message:
        return f"{where} has no 'role' field"
    role = message["role"]
    if type(role) is not str:
        return f"{where}.role must be a string, found {_json_type(role)}"
    if role not in _ROLES:
        return f"{where}.role is {_show(role)}, not one of 'system', 'user', 'assistant'"
    if "content" not in message:
        return f"{where} has no 'content' field"
    content = message["content"]
    if type(content) is not str:
        found = _json_type(content)
        if found == "array":
            found += " (content parts are not supported: use one string)"
        return f"{where}.content must be a string, found {found}"
    if not content:
        return f"{where}.content is an empty string"
    return f"{where}.content is blank (only whitespace)"


def _surrogate_field(record: dict[str, Any], pair: tuple[str, str] | None) -> str:
    """Which string of a valid-looking record holds an unpaired surrogate (None: chat)."""
    if pair is not None:
        candidates = [(f"field '{name}'", record[name]) for name in pair]
    else:
        candidates = [
            (f"messages[{i}].content", m["content"]) for i, m in enumerate(record["messages"])
        ]
    for where, value in candidates:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            code = ord(value[error.start])
            return (
                f"{where} contains an unpaired UTF-16 surrogate \\u{code:04x} (not valid Unicode)"
            )
    return "a string contains an unpaired UTF-16 surrogate (not valid Unicode)"  # pragma: no cover


# --- The validator ---


class Validator:
    """Incremental validation: ``feed()`` chunks in order, then ``finish()``.

    ``feed`` returns False once the input is over ``Limits.max_file_bytes``:
    stop reading then (further chunks are ignored) and call ``finish``.

    Duplicates are counted in constant memory with a Bloom filter (a set of
    hashes would grow with the file: ~100 bytes per example in Python). Each
    valid example's content (text: both field values; chat: every role and
    content, other keys ignored, so re-formatted or re-ordered JSON still
    matches) is hashed once with blake2b, and the digest gives
    ``_BLOOM_HASHES`` bit positions in a ``Limits.duplicate_filter_bytes`` bit
    array. An example whose bits are all set already counts as a duplicate.
    A real repeat is never missed; a new example is miscounted only when other
    examples happen to have set all its bits, which with the default 16 MiB
    and 4 positions happens about once in 100,000 new examples when the file
    holds 2 million (about 1 GB of data), and far less often in smaller
    files. The report names the method and that file's expected rate.
    """

    def __init__(self, task: TaskType | str | None = None, limits: Limits | None = None) -> None:
        self._limits = limits = limits if limits is not None else Limits()
        self._task: TaskType | None = None if task is None else TaskType(task)
        self._task_given = self._task is not None
        self._task_line = 0
        self._pair: tuple[str, str] | None = None
        self._pair_line = 0
        self._main_pair = (limits.prompt_field, limits.completion_field)
        self._splitter = _LineSplitter(limits.max_example_bytes)
        self._sha = hashlib.sha256()
        self._bytes = 0
        self._over = False
        self._finished = False
        self._lines = 0
        self._records = 0
        self._blank_start = 0
        self._blank_run = 0
        self._error_count = 0
        self._errors: list[LineError] = []
        self._examples = 0
        self._duplicates = 0
        self._bloom = bytearray(limits.duplicate_filter_bytes)
        # 32 - shift bits of a word index the filter's bytes (it is 2 ** (32 - shift) long).
        self._bloom_shift = 33 - limits.duplicate_filter_bytes.bit_length()
        self._chars = 0
        self._tokens = 0
        self._min = 0
        self._max = 0
        self._histogram = [0] * _BUCKETS

    # Feeding

    def feed(self, chunk: bytes) -> bool:
        """Validate the next chunk; False means over the size limit: stop reading."""
        if self._finished:
            raise RuntimeError("feed() after finish()")
        if self._over:
            return False
        self._sha.update(chunk)
        self._bytes += len(chunk)
        excess = self._bytes - self._limits.max_file_bytes
        if excess > 0:
            self._over = True
            chunk = chunk[: len(chunk) - excess]
        on_line = self._on_line
        for number, line in self._splitter.feed(chunk):
            on_line(number, line, False)
        return not self._over

    def finish(self) -> Report:
        """Check what is left and build the report."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        if not self._over:
            for number, line in self._splitter.finish():
                self._on_line(number, line, True)
        return self._report()

    # Lines

    def _error(self, line: int, message: str) -> None:
        self._error_count += 1
        if len(self._errors) < self._limits.max_reported_errors:
            self._errors.append(LineError(line, message))

    def _on_line(self, number: int, line: bytes | None, at_eof: bool) -> None:
        self._lines = number
        if line is not None and (not line or line.isspace()):
            # Blank: an error unless only blank lines follow, known at the next record.
            if not self._blank_run:
                self._blank_start = number
            self._blank_run += 1
            return
        if self._blank_run:
            for blank in range(self._blank_start, self._blank_start + self._blank_run):
                self._error(blank, "blank line between records")
            self._blank_run = 0
        self._records += 1
        if line is None:
            self._error(
                number,
                f"line is {self._splitter.skipped_bytes:,} bytes, over the limit of "
                f"{self._limits.max_example_bytes:,} bytes per example",
            )
            return
        problem = self._check(number, line, at_eof)
        if problem is not None:
            self._error(number, problem)

    def _check(self, number: int, line: bytes, at_eof: bool) -> str | None:
        """None for a valid example (counted), else what is wrong with the line."""
        record, problem = self._parse(number, line, at_eof)
        if problem is not None:
            return problem
        if type(record) is not dict:
            return f"expected a JSON object, found {_json_type(record)}"
        form = self._format_of(record)
        if isinstance(form, str):
            return form
        is_chat, pair = form
        checked = _check_chat(record) if pair is None else _check_text(record, pair)
        if isinstance(checked, str):
            return checked
        chars, key = checked
        try:
            key_bytes = key.encode("utf-8")
        except UnicodeEncodeError:
            return _surrogate_field(record, pair)

        # A valid example: it sets the format if nothing did yet.
        if self._task is None:
            self._task = TaskType.CHAT if is_chat else TaskType.TEXT
            self._task_line = number
        if pair is not None and self._pair is None:
            self._pair = pair
            self._pair_line = number
        self._count(chars, key_bytes)
        return None

    @staticmethod
    def _parse(number: int, line: bytes, at_eof: bool) -> tuple[Any, str | None]:
        """(the line's JSON value, None), or (None, what stops it from being JSON)."""
        if number == 1 and line[:2] in (b"\xff\xfe", b"\xfe\xff"):
            return None, (
                "the file is UTF-16 encoded (it starts with a UTF-16 byte order mark): use UTF-8"
            )
        if number > 1 and line[:3] == _BOM:
            return None, (
                "UTF-8 byte order mark (BOM) at the start of the line: "
                "only allowed at the start of the file"
            )
        if b"\x00" in line:
            return None, f"NUL byte (0x00) at byte {line.index(0) + 1} of the line"
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            return None, (
                f"invalid UTF-8: byte 0x{line[error.start]:02x} at byte {error.start + 1} "
                f"of the line ({error.reason})"
            )
        try:
            return _loads(text), None
        except json.JSONDecodeError as error:
            problem = _json_problem(error, text)
            if at_eof and error.msg != "Extra data":
                problem += " (the last line has no line end: is the file truncated?)"
            return None, problem
        except _Rejected as error:
            return None, str(error)
        except RecursionError:
            return None, "invalid JSON: nested too deeply"
        except ValueError as error:  # e.g. an integer with too many digits
            return None, f"invalid JSON: {error}"

    def _format_of(self, record: dict[str, Any]) -> str | tuple[bool, tuple[str, str] | None]:
        """Which format to check a record against: (is chat, text field pair or None).

        Or an error: the record is of the other format than the file's, or of none.
        """
        is_chat = "messages" in record
        pair = self._pair if self._pair is not None else self._pair_of(record)
        task = self._task
        if task is TaskType.CHAT:
            if is_chat:
                return True, None
            if pair is not None:
                return (
                    f"text-completion record in a chat file (it has '{pair[0]}'/'{pair[1]}', "
                    f"not 'messages'; {self._origin()})"
                )
            return "missing field 'messages'"
        if task is TaskType.TEXT:
            if pair is not None and (pair[0] in record or pair[1] in record):
                return False, pair
            other = self._pair_of(record)
            if pair is not None and other is not None:
                return (
                    f"record uses fields '{other[0]}'/'{other[1]}' but this file uses "
                    f"'{pair[0]}'/'{pair[1]}' (from line {self._pair_line})"
                )
            if is_chat:
                return (
                    f"chat record in a text-completion file (it has 'messages'; {self._origin()})"
                )
            main = pair or self._main_pair
            return f"missing fields '{main[0]}' and '{main[1]}'"
        if is_chat:
            return True, None
        if pair is not None:
            return False, pair
        main = self._main_pair
        return (
            f"record has neither 'messages' (chat) nor '{main[0]}'/'{main[1]}' "
            "(text completion) fields"
        )

    def _pair_of(self, record: dict[str, Any]) -> tuple[str, str] | None:
        """The text field pair a record uses: the configured one first."""
        main = self._main_pair
        if main[0] in record or main[1] in record:
            return main
        if _ALT_PAIR[0] in record or _ALT_PAIR[1] in record:
            return _ALT_PAIR
        return None

    def _origin(self) -> str:
        if self._task_given:
            return f"the task was given as '{self._task}'"
        return f"the format was set by line {self._task_line}"

    def _count(self, chars: int, key: bytes) -> None:
        self._examples += 1
        self._chars += chars
        self._tokens += -(-chars // CHARS_PER_TOKEN)
        if self._examples == 1 or chars < self._min:
            self._min = chars
        self._max = max(self._max, chars)
        self._histogram[int(math.log2(chars) * _BUCKETS_PER_OCTAVE)] += 1
        # Each 32-bit word of the digest: its top bits index a byte, its low 3 bits a bit.
        digest = hashlib.blake2b(key, digest_size=4 * _BLOOM_HASHES).digest()
        bloom = self._bloom
        shift = self._bloom_shift
        seen = True
        for word in _BLOOM_DIGEST.unpack(digest):
            index = word >> shift
            bit = 1 << (word & 7)
            byte = bloom[index]
            if not byte & bit:
                bloom[index] = byte | bit
                seen = False
        self._duplicates += seen

    # The report

    def _percentile(self, fraction: float) -> int:
        rank = max(1, math.ceil(fraction * self._examples))
        total = 0
        for index, count in enumerate(self._histogram):
            total += count
            if total >= rank:
                low = 2 ** (index / _BUCKETS_PER_OCTAVE)
                high = 2 ** ((index + 1) / _BUCKETS_PER_OCTAVE)
                estimate = round(math.sqrt(low * high))
                return min(max(estimate, self._min), self._max)
        return self._max  # pragma: no cover - the histogram holds every example

    def _report(self) -> Report:
        limits = self._limits
        file_errors: list[LineError] = []
        if self._over:
            file_errors.append(
                LineError(
                    0,
                    f"the file is larger than the limit of {_size(limits.max_file_bytes)}: "
                    f"stopped reading after {self._bytes:,} bytes",
                )
            )
        elif self._bytes == 0:
            file_errors.append(LineError(0, "the file is empty (0 bytes)"))
        elif self._records == 0:
            file_errors.append(
                LineError(
                    0, f"the file has no records, only {self._lines:,} blank line{_s(self._lines)}"
                )
            )
        elif self._examples < limits.min_examples:
            if self._examples == 0:
                found = "no valid examples"
            else:
                found = f"only {self._examples:,} valid example{_s(self._examples)}"
            file_errors.append(
                LineError(0, f"too few examples: {found}, at least {limits.min_examples:,} needed")
            )
        errors = tuple((file_errors + self._errors)[: limits.max_reported_errors])
        error_count = self._error_count + len(file_errors)

        lengths = None
        if self._examples:
            lengths = LengthStats(
                min=self._min,
                max=self._max,
                mean=round(self._chars / self._examples, 1),
                p50=self._percentile(0.50),
                p95=self._percentile(0.95),
            )
        if self._task is TaskType.CHAT:
            fields: tuple[str, ...] = ("messages",)
        elif self._task is TaskType.TEXT:
            fields = self._pair or self._main_pair
        else:
            fields = ()
        bits = limits.duplicate_filter_bytes * 8
        distinct = self._examples - self._duplicates
        rate = (1 - math.exp(-_BLOOM_HASHES * distinct / bits)) ** _BLOOM_HASHES
        method = DUPLICATES_METHOD.format(
            size=_size(limits.duplicate_filter_bytes).split(" (")[0], k=_BLOOM_HASHES, rate=rate
        )
        return Report(
            valid=error_count == 0 and self._examples >= limits.min_examples,
            task=self._task,
            fields=fields,
            examples=self._examples,
            lines=self._lines,
            bytes=self._bytes,
            sha256=self._sha.hexdigest(),
            complete=not self._over,
            error_count=error_count,
            errors=errors,
            duplicates=self._duplicates,
            duplicates_method=method,
            lengths=lengths,
            estimated_tokens=self._tokens,
        )


def validate(
    chunks: Iterable[bytes], task: TaskType | str | None = None, limits: Limits | None = None
) -> Report:
    """Validate a JSONL dataset read as byte chunks (see the module docstring).

    ``task`` forces the format; by default it is detected from the first valid
    record, and records of the other format are errors. Stops reading once the
    input is over ``limits.max_file_bytes``. Never raises for bad data.
    """
    validator = Validator(task, limits)
    for chunk in chunks:
        if not validator.feed(chunk):
            break
    return validator.finish()


# --- Command line ---

_READ_SIZE: Final = 1 << 20
_OPTIONS: Final = {
    "max_file_bytes": "--max-file-bytes",
    "max_example_bytes": "--max-example-bytes",
    "min_examples": "--min-examples",
    "max_reported_errors": "--max-errors",
    "prompt_field and completion_field": "--prompt-field and --completion-field",
}


def _read_chunks(stream: Any) -> Iterator[bytes]:
    while chunk := stream.read(_READ_SIZE):
        yield chunk


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.datasets",
        description="Validate a JSONL fine-tuning dataset (text completion or chat), streaming.",
        epilog="Exit status: 0 valid, 1 invalid, 2 usage or I/O error.",
    )
    parser.add_argument("file", metavar="FILE", help="the JSONL file ('-' for standard input)")
    parser.add_argument("--task", choices=[t.value for t in TaskType], help="default: detect")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    defaults = Limits()
    parser.add_argument(
        "--max-errors",
        type=int,
        metavar="N",
        default=defaults.max_reported_errors,
        help=f"errors to list (all are counted; default {defaults.max_reported_errors})",
    )
    parser.add_argument(
        "--min-examples",
        type=int,
        metavar="N",
        default=defaults.min_examples,
        help=f"valid examples required (default {defaults.min_examples})",
    )
    parser.add_argument(
        "--prompt-field",
        metavar="F",
        default=defaults.prompt_field,
        help=f"text completion: the prompt's field (default {defaults.prompt_field!r})",
    )
    parser.add_argument(
        "--completion-field",
        metavar="F",
        default=defaults.completion_field,
        help=f"text completion: the completion's field (default {defaults.completion_field!r})",
    )
    parser.add_argument(
        "--max-example-bytes",
        type=int,
        metavar="N",
        default=defaults.max_example_bytes,
        help=f"longest line allowed (default {defaults.max_example_bytes:,})",
    )
    parser.add_argument(
        "--max-file-bytes",
        type=int,
        metavar="N",
        default=defaults.max_file_bytes,
        help=f"largest file allowed (default {defaults.max_file_bytes:,})",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line: exit status 0 valid, 1 invalid, 2 usage or I/O error."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        limits = Limits(
            max_file_bytes=args.max_file_bytes,
            max_example_bytes=args.max_example_bytes,
            min_examples=args.min_examples,
            max_reported_errors=args.max_errors,
            prompt_field=args.prompt_field,
            completion_field=args.completion_field,
        )
    except ValueError as error:
        message = str(error)
        for name, option in _OPTIONS.items():
            message = message.replace(f"Limits.{name}", option)
        parser.error(message)
    try:
        if args.file == "-":
            report = validate(_read_chunks(sys.stdin.buffer), args.task, limits)
        else:
            with open(args.file, "rb") as stream:
                report = validate(_read_chunks(stream), args.task, limits)
    except OSError as error:
        reason = error.strerror or str(error)
        print(f"error: cannot read {args.file}: {reason}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
    return 0 if report.valid else 1


if __name__ == "__main__":
    sys.exit(main())
