"""What validating a dataset finds: the report, its errors with stable codes, limits.

Pure data and formatting; :mod:`shared.datasets.validator` fills it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from shared.datasets.tokens import TokenStats

CHARS_PER_TOKEN: Final = 4
TOKEN_METHOD: Final = (
    "~4 characters per token: ceil(characters / 4) per example, summed over the "
    "prompt and completion (chat: every message's content); real tokenizers differ, "
    "non-English text and code usually need more tokens"
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
    count_tokens: bool = True
    """Count tokens with the base model's tokenizer (:mod:`~shared.datasets.tokens`)."""
    max_seq_length: int = 4096
    """Examples over this many tokens are reported (MAX_SEQ_LENGTH; 4096 is Mistral 7B
    v0.1's attention window, its config's ``sliding_window``)."""
    max_seq_error: bool = False
    """Report them as errors (the file is invalid) rather than warnings (MAX_SEQ_POLICY)."""
    tokens_exact_bytes: int = 1 << 20
    """Files up to this size have every example's tokens counted; larger ones a sample."""

    def __post_init__(self) -> None:
        for name in (
            "max_file_bytes",
            "max_example_bytes",
            "max_reported_errors",
            "max_seq_length",
        ):
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
    """One problem: ``line`` is 1-based, 0 for the file as a whole.

    ``code`` is stable (see :data:`ERROR_CODES`): match on it, not on the
    message, which is for people and may be reworded.
    """

    line: int
    code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "code": self.code, "message": self.message}

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
    tokens: TokenStats | None = None
    """Tokens by the base model's tokenizer; None when not counted or no valid example."""
    warning_count: int = 0
    warnings: tuple[LineError, ...] = ()
    """The first ``Limits.max_reported_errors`` warnings (examples over MAX_SEQ_LENGTH)."""

    def training_tokens(self, epochs: int) -> int:
        """Tokens a fine-tuning job trains on: every example once per epoch (the
        tokenizer's count when there is one, else the estimate)."""
        if epochs < 1:
            raise ValueError("epochs must be at least 1")
        total = self.tokens.total if self.tokens is not None else self.estimated_tokens
        return total * epochs

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
            "errors": [e.to_dict() for e in self.errors],
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
            "tokens": None if self.tokens is None else self.tokens.to_dict(),
            "warning_count": self.warning_count,
            "warnings": [w.to_dict() for w in self.warnings],
        }

    def summary(self, max_errors: int = 10) -> str:
        """A few lines for people: verdict, counts, the first errors."""
        kind = "" if self.task is None else f"{_TASK_LABEL[self.task]} "
        if self.task is TaskType.TEXT and self.fields:
            kind += f"({'/'.join(self.fields)}) "
        counts = (
            f"{self.examples:,} valid {kind}example{plural(self.examples)} in "
            f"{self.lines:,} line{plural(self.lines)}, {size_text(self.bytes)}"
        )
        if self.valid:
            head = f"VALID: {counts}"
        else:
            head = f"INVALID: {self.error_count:,} error{plural(self.error_count)}; {counts}"
        out = [head, f"sha256 {self.sha256}"]
        if self.lengths is not None:
            s = self.lengths
            out.append(
                f"characters per example: min {s.min:,}, p50 ~{s.p50:,}, p95 ~{s.p95:,}, "
                f"max {s.max:,}, mean {s.mean:,.1f}"
            )
            out.append(self._tokens_line())
            out.append(f"duplicates: {self.duplicates:,} (approximate)")
        for kind, listed, count in (
            ("error", self.errors, self.error_count),
            ("warning", self.warnings, self.warning_count),
        ):
            shown = listed[:max_errors]
            out.extend(f"  {kind}: {e}" if kind == "warning" else f"  {e}" for e in shown)
            if count > len(shown):
                more = count - len(shown)
                out.append(f"  ... and {more:,} more {kind}{plural(more)}")
        return "\n".join(out)

    def _tokens_line(self) -> str:
        t = self.tokens
        if t is None:
            return (
                f"estimated tokens: {self.estimated_tokens:,} (~{CHARS_PER_TOKEN} characters "
                "per token)"
            )
        how = "exact" if t.exact else f"estimated from a sample of {t.counted:,} ({t.sample})"
        return (
            f"tokens: {t.total:,} ({how}); per example min {t.min:,}, p50 {t.p50:,}, "
            f"p95 {t.p95:,}, max {t.max:,}; over {t.max_seq_length:,}: "
            f"{t.over_max_seq_length:,}"
        )


def plural(n: int) -> str:
    return "" if n == 1 else "s"


def size_text(n: int) -> str:
    if n < 1024:
        return f"{n} byte{plural(n)}"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit} ({n:,} bytes)"


# Every code a LineError can carry, with what it means. Stable: tests, reports and
# API clients match on these.
ERROR_CODES: Final = {
    # the file as a whole (line 0)
    "file_too_large": "the file is over the size limit (MAX_DATASET_BYTES)",
    "file_empty": "the file has no bytes",
    "no_records": "the file has only blank lines",
    "too_few_examples": "fewer valid examples than MIN_EXAMPLES",
    "invalid_metadata": "a finetune_* metadata value of the blob is not allowed",
    "invalid_validation_file": "the sibling *.validation.jsonl file is invalid",
    # bytes and lines
    "blank_line": "a blank line between records",
    "line_too_long": "a line over MAX_EXAMPLE_BYTES",
    "utf16": "the file is UTF-16, not UTF-8",
    "misplaced_bom": "a byte order mark not at the start of the file",
    "nul_byte": "a NUL byte",
    "invalid_utf8": "bytes that are not UTF-8",
    # JSON
    "invalid_json": "not one standard JSON value (syntax, NaN/Infinity, nesting, huge numbers)",
    "duplicate_key": "an object with a repeated key",
    "not_an_object": "a JSON value other than an object",
    "lone_surrogate": "a string holding an unpaired UTF-16 surrogate",
    # the record's format
    "unknown_format": "neither chat ('messages') nor text-completion fields",
    "format_mismatch": "a record of the other format than the file's",
    "field_pair_mismatch": "text fields other than the pair the file uses",
    "missing_field": "a required field is absent",
    "wrong_type": "a field or message part of the wrong JSON type",
    "empty_text": "an empty or whitespace-only text",
    "empty_messages": "an empty 'messages' list",
    "invalid_role": "a message role other than system, user, assistant",
    "no_user_message": "a conversation without a user message",
    "no_assistant_message": "a conversation without an assistant message",
    "last_not_assistant": "a conversation not ending with the assistant's answer",
    # the model
    "too_many_tokens": "an example over MAX_SEQ_LENGTH tokens (an error or a warning: "
    "MAX_SEQ_POLICY)",
}
