"""The streaming validator: chunks in, a :class:`Report` out, in constant memory."""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable
from itertools import repeat
from operator import floordiv, mul, neg
from typing import Any, Final

from shared.datasets.blocks import BlockChecker, Examples
from shared.datasets.duplicates import HASHES as DUPLICATE_BITS
from shared.datasets.duplicates import METHOD as DUPLICATES_METHOD
from shared.datasets.duplicates import DuplicateFilter, digest, digests
from shared.datasets.lines import LineSplitter
from shared.datasets.records import (
    ALT_PAIR,
    Problem,
    check_chat,
    check_text,
    json_type,
    parse_line,
    surrogate_field,
)
from shared.datasets.report import (
    CHARS_PER_TOKEN,
    LengthStats,
    Limits,
    LineError,
    Report,
    TaskType,
    plural,
    size_text,
)
from shared.datasets.tokens import Strings, TokenTally, chat_strings, text_strings

# Length histogram: bucket i holds lengths n with floor(8 * log2(n)) == i, so a
# bucket spans a factor of 2 ** (1/8) (about 9%) and a percentile read from it is
# within about 4.5% of the true value. 64 * 8 buckets cover any length.
_BUCKETS_PER_OCTAVE: Final = 8
_BUCKETS: Final = 64 * _BUCKETS_PER_OCTAVE

# Blocks checked whole are at most about this long (plus a partial line).
_BLOCK_BYTES: Final = 1 << 20


class Validator:
    """Incremental validation: ``feed()`` chunks in order, then ``finish()``.

    ``feed`` returns False once the input is over ``Limits.max_file_bytes``:
    stop reading then (further chunks are ignored) and call ``finish``.

    Duplicates are counted in constant memory with a Bloom filter
    (:mod:`~shared.datasets.duplicates`) over each valid example's content
    (text: both field values; chat: every role and content, other keys
    ignored, so re-formatted or re-ordered JSON still matches). A real repeat
    is never missed; the report names the method and the file's expected
    false-positive rate.

    Speed: once the file's format is known, each block of complete lines a
    chunk brings is first offered whole to a
    :class:`~shared.datasets.blocks.BlockChecker`; only the blocks it cannot
    vouch for are checked line by line, and in those, each line is offered
    to it alone before the line-by-line path. Either way the report is the
    same; ``fast=False`` checks every line line by line (the reference).
    """

    def __init__(
        self,
        task: TaskType | str | None = None,
        limits: Limits | None = None,
        *,
        fast: bool = True,
        expected_bytes: int | None = None,
    ) -> None:
        """``expected_bytes``: the file's size when known (it chooses exact or sampled
        token statistics from the start, see :mod:`~shared.datasets.tokens`)."""
        self._limits = limits = limits if limits is not None else Limits()
        self._task: TaskType | None = None if task is None else TaskType(task)
        self._task_given = self._task is not None
        self._task_line = 0
        self._pair: tuple[str, str] | None = None
        self._pair_line = 0
        self._main_pair = (limits.prompt_field, limits.completion_field)
        self._splitter = LineSplitter(limits.max_example_bytes)
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
        self._seen = DuplicateFilter(limits.duplicate_filter_bytes)
        self._tally = (
            TokenTally(
                limits.max_seq_length,
                self._over_length,
                exact_bytes=limits.tokens_exact_bytes,
                expected_bytes=expected_bytes,
            )
            if limits.count_tokens
            else None
        )
        self._warning_count = 0
        self._warnings: list[LineError] = []
        self._chars = 0
        self._tokens = 0
        self._min = 0
        self._max = 0
        self._histogram = [0] * _BUCKETS
        self._fast = fast
        self._blocks: BlockChecker | None = None
        self._use_blocks()

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
        if self._fast and len(chunk) > 2 * _BLOCK_BYTES:
            # In pieces: what a block decodes into stays small whatever the chunk size.
            for start in range(0, len(chunk), _BLOCK_BYTES):
                self._feed_lines(chunk[start : start + _BLOCK_BYTES])
        else:
            self._feed_lines(chunk)
        return not self._over

    def _feed_lines(self, chunk: bytes) -> None:
        if self._fast:
            block, chunk = self._splitter.take_block(chunk)
            if block:
                self._on_block(block)
        on_line = self._on_line
        for number, line in self._splitter.feed(chunk):
            on_line(number, line, False)

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

    def _error(self, line: int, problem: Problem) -> None:
        self._error_count += 1
        if len(self._errors) < self._limits.max_reported_errors:
            self._errors.append(LineError(line, problem.code, problem.message))

    def _over_length(self, line: int, tokens: int) -> None:
        """An example over the model's maximum sequence length: an error or a warning."""
        limit = self._limits.max_seq_length
        problem = Problem(
            "too_many_tokens",
            f"example is {tokens:,} tokens, over the maximum sequence length of {limit:,} "
            f"(MAX_SEQ_LENGTH; the Mistral 7B v0.1 tokenizer)",
        )
        if self._limits.max_seq_error:
            self._error(line, problem)
            return
        self._warning_count += 1
        if len(self._warnings) < self._limits.max_reported_errors:
            self._warnings.append(LineError(line, problem.code, problem.message))

    def _on_block(self, block: bytes) -> None:
        """A block from ``LineSplitter.take_block``: whole if possible, else line by line."""
        splitter = self._splitter
        if self._blocks is None:
            # Line by line until a valid record sets the format, then the rest as a block.
            start = 1
            while self._blocks is None and start < len(block):
                number, line, start = splitter.block_line(block, start)
                self._on_line(number, line, False)
            if start == len(block):
                return
            block = block[start - 1 :]  # from the LF before the next line
        checker = self._blocks
        assert checker is not None  # the loop above ran until a record set the format
        if self._whole(checker, block):
            return
        for number, line in splitter.block_lines(block):
            if line is not None:
                found = checker.examples(b"".join((b"\n", line, b"\n")))
                if found is not None:
                    self._accept(number, found)
                    continue
            self._on_line(number, line, False)

    def _whole(self, checker: BlockChecker, block: bytes) -> bool:
        """True if the block checker found every line of the block valid (counted then)."""
        if b"\r" in block:
            block = block.replace(b"\r\n", b"\n")  # as the splitter strips a line's CR
        found = checker.examples(block)
        if found is None:
            return False
        self._splitter.count_lines(len(found[0]))
        self._accept(self._splitter.line, found)
        return True

    def _accept(self, last: int, examples: Examples) -> None:
        """Lines up to ``last`` that the block checker found valid: what _on_line would do."""
        self._lines = last
        self._end_blank_run()
        chars, keys, strings = examples
        self._records += len(chars)
        self._count_many(last - len(chars) + 1, chars, keys, strings)

    def _end_blank_run(self) -> None:
        """A record follows blank lines: they were errors."""
        if self._blank_run:
            for blank in range(self._blank_start, self._blank_start + self._blank_run):
                self._error(blank, Problem("blank_line", "blank line between records"))
            self._blank_run = 0

    def _on_line(self, number: int, line: bytes | None, at_eof: bool) -> None:
        self._lines = number
        if line is not None and (not line or line.isspace()):
            # Blank: an error unless only blank lines follow, known at the next record.
            if not self._blank_run:
                self._blank_start = number
            self._blank_run += 1
            return
        self._end_blank_run()
        self._records += 1
        if line is None:
            self._error(
                number,
                Problem(
                    "line_too_long",
                    f"line is {self._splitter.skipped_bytes:,} bytes, over the limit of "
                    f"{self._limits.max_example_bytes:,} bytes per example",
                ),
            )
            return
        problem = self._check(number, line, at_eof)
        if problem is not None:
            self._error(number, problem)

    def _check(self, number: int, line: bytes, at_eof: bool) -> Problem | None:
        """None for a valid example (counted), else what is wrong with the line."""
        record, problem = parse_line(number, line, at_eof)
        if problem is not None:
            return problem
        if type(record) is not dict:
            return Problem("not_an_object", f"expected a JSON object, found {json_type(record)}")
        form = self._format_of(record)
        if isinstance(form, Problem):
            return form
        is_chat, pair = form
        checked = check_chat(record) if pair is None else check_text(record, pair)
        if isinstance(checked, Problem):
            return checked
        chars, key = checked
        try:
            key_bytes = key.encode("utf-8")
        except UnicodeEncodeError:
            return surrogate_field(record, pair)
        if pair is None:
            messages = record["messages"]
            strings = chat_strings([m["role"] for m in messages], [m["content"] for m in messages])
        else:
            strings = text_strings(record[pair[0]], record[pair[1]])

        # A valid example: it sets the format if nothing did yet.
        if self._task is None:
            self._task = TaskType.CHAT if is_chat else TaskType.TEXT
            self._task_line = number
        if pair is not None and self._pair is None:
            self._pair = pair
            self._pair_line = number
        if self._blocks is None:
            self._use_blocks()
        self._count(number, chars, key_bytes, strings)
        return None

    def _use_blocks(self) -> None:
        """Check blocks whole from now on if the format is known (chat, or the text pair)."""
        if not self._fast:
            return
        if self._task is TaskType.CHAT:
            self._blocks = BlockChecker(None, self._limits.max_example_bytes)
        elif self._pair is not None:
            self._blocks = BlockChecker(self._pair, self._limits.max_example_bytes)

    def _format_of(self, record: dict[str, Any]) -> Problem | tuple[bool, tuple[str, str] | None]:
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
                return Problem(
                    "format_mismatch",
                    f"text-completion record in a chat file (it has '{pair[0]}'/'{pair[1]}', "
                    f"not 'messages'; {self._origin()})",
                )
            return Problem("missing_field", "missing field 'messages'")
        if task is TaskType.TEXT:
            if pair is not None and (pair[0] in record or pair[1] in record):
                return False, pair
            other = self._pair_of(record)
            if pair is not None and other is not None:
                return Problem(
                    "field_pair_mismatch",
                    f"record uses fields '{other[0]}'/'{other[1]}' but this file uses "
                    f"'{pair[0]}'/'{pair[1]}' (from line {self._pair_line})",
                )
            if is_chat:
                return Problem(
                    "format_mismatch",
                    f"chat record in a text-completion file (it has 'messages'; {self._origin()})",
                )
            main = pair or self._main_pair
            return Problem("missing_field", f"missing fields '{main[0]}' and '{main[1]}'")
        if is_chat:
            return True, None
        if pair is not None:
            return False, pair
        main = self._main_pair
        return Problem(
            "unknown_format",
            f"record has neither 'messages' (chat) nor '{main[0]}'/'{main[1]}' "
            "(text completion) fields",
        )

    def _pair_of(self, record: dict[str, Any]) -> tuple[str, str] | None:
        """The text field pair a record uses: the configured one first."""
        main = self._main_pair
        if main[0] in record or main[1] in record:
            return main
        if ALT_PAIR[0] in record or ALT_PAIR[1] in record:
            return ALT_PAIR
        return None

    def _origin(self) -> str:
        if self._task_given:
            return f"the task was given as '{self._task}'"
        return f"the format was set by line {self._task_line}"

    def _count(self, line: int, chars: int, key: bytes, strings: Strings) -> None:
        value = digest(key)
        if self._tally is not None:
            self._tally.add_many(line, self._bytes, (chars,), (key,), (value,), lambda _: strings)
        self._examples += 1
        self._chars += chars
        self._tokens += -(-chars // CHARS_PER_TOKEN)
        if self._examples == 1 or chars < self._min:
            self._min = chars
        self._max = max(self._max, chars)
        self._histogram[int(math.log2(chars) * _BUCKETS_PER_OCTAVE)] += 1
        self._duplicates += self._seen.add(value)

    def _count_many(
        self, line: int, chars: list[int], keys: list[bytes], strings: Callable[[int], Strings]
    ) -> None:
        """``_count`` for lines ``line``, ``line + 1``, ..., with C-level passes per statistic."""
        values = digests(keys)
        if self._tally is not None:
            self._tally.add_many(line, self._bytes, chars, keys, values, strings)
        first = self._examples == 0
        self._examples += len(chars)
        self._chars += sum(chars)
        self._tokens -= sum(map(floordiv, map(neg, chars), repeat(CHARS_PER_TOKEN)))
        low = min(chars)
        if first or low < self._min:
            self._min = low
        self._max = max(self._max, *chars)
        histogram = self._histogram
        buckets = map(int, map(mul, map(math.log2, chars), repeat(_BUCKETS_PER_OCTAVE)))
        for bucket, count in Counter(buckets).items():
            histogram[bucket] += count
        self._duplicates += self._seen.add_many(values)

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
                    "file_too_large",
                    f"the file is larger than the limit of {size_text(limits.max_file_bytes)}: "
                    f"stopped reading after {self._bytes:,} bytes",
                )
            )
        elif self._bytes == 0:
            file_errors.append(LineError(0, "file_empty", "the file is empty (0 bytes)"))
        elif self._records == 0:
            lines = f"{self._lines:,} blank line{plural(self._lines)}"
            file_errors.append(LineError(0, "no_records", f"the file has no records, only {lines}"))
        elif self._examples < limits.min_examples:
            if self._examples == 0:
                found = "no valid examples"
            else:
                found = f"only {self._examples:,} valid example{plural(self._examples)}"
            needed = f"at least {limits.min_examples:,} needed"
            file_errors.append(
                LineError(0, "too_few_examples", f"too few examples: {found}, {needed}")
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
        method = DUPLICATES_METHOD.format(
            size=size_text(limits.duplicate_filter_bytes).split(" (")[0],
            k=DUPLICATE_BITS,
            rate=self._seen.expected_rate(self._examples - self._duplicates),
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
            tokens=None if self._tally is None else self._tally.finish(self._examples, self._chars),
            warning_count=self._warning_count,
            warnings=tuple(self._warnings),
        )


def validate(
    chunks: Iterable[bytes],
    task: TaskType | str | None = None,
    limits: Limits | None = None,
    expected_bytes: int | None = None,
) -> Report:
    """Validate a JSONL dataset read as byte chunks (see the module docstring).

    ``task`` forces the format; by default it is detected from the first valid
    record, and records of the other format are errors. Stops reading once the
    input is over ``limits.max_file_bytes``. Never raises for bad data.
    """
    validator = Validator(task, limits, expected_bytes=expected_bytes)
    for chunk in chunks:
        if not validator.feed(chunk):
            break
    return validator.finish()
