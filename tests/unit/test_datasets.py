"""shared.datasets: the streaming JSONL validator, its corpus of bad files, and its CLI."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.datasets import (
    ERROR_CODES,
    Limits,
    LineError,
    Report,
    TaskType,
    Validator,
    iter_lines,
    split_part,
    validate,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
MALFORMED = DATA / "malformed"
VALID = DATA / "valid"
EXPECTED: dict[str, dict[str, object]] = json.loads(
    (MALFORMED / "EXPECTED.json").read_text(encoding="utf-8")
)
CORPUS = sorted(path.name for path in MALFORMED.glob("*.jsonl"))
VALID_SAMPLES = {
    # name: (task, fields, examples, lines)
    "text_prompt_completion.jsonl": (TaskType.TEXT, ("prompt", "completion"), 12, 12),
    "text_ground_truth.jsonl": (TaskType.TEXT, ("text", "ground_truth"), 11, 11),
    "chat.jsonl": (TaskType.CHAT, ("messages",), 12, 12),
    "bom_crlf_unicode.jsonl": (TaskType.CHAT, ("messages",), 11, 11),
}
# Small filters keep the many validations in these tests cheap; results are the same.
SMALL = Limits(duplicate_filter_bytes=1 << 16)


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def text_line(i: int, **extra: object) -> bytes:
    record = {
        "prompt": f"Summarise the dialogue:\n#Person1#: Is meeting {i} still on?\n#Person2#: Yes.",
        "completion": f"Meeting {i} is still on.",
        **extra,
    }
    return json.dumps(record).encode()


def chat_line(i: int) -> bytes:
    messages = [
        {"role": "user", "content": f"Summarise: #Person1#: Call me at {i}. #Person2#: Sure."},
        {"role": "assistant", "content": f"#Person2# will call at {i}."},
    ]
    return json.dumps({"messages": messages}).encode()


def text_file(n: int, start: int = 0, end: bytes = b"\n") -> bytes:
    return b"".join(text_line(i) + end for i in range(start, start + n))


def check(data: bytes, task: TaskType | str | None = None, limits: Limits = SMALL) -> Report:
    return validate(chunked(data, 4096), task, limits)


# --- The malformed corpus ---


def test_corpus_and_expectations_match() -> None:
    assert len(CORPUS) >= 28
    assert set(CORPUS) == set(EXPECTED)


@pytest.mark.parametrize("name", CORPUS)
def test_malformed_file_is_invalid_with_the_expected_first_error(name: str) -> None:
    """Each file is invalid, and its first error has the expected line and code.

    File-level errors (line 0) are listed first; for a file whose problem is on
    a line, the expectation is about the first line-level error (a file whose
    every line is bad, such as the UTF-16 one, also has too few examples).
    """
    expected = EXPECTED[name]
    report = check((MALFORMED / name).read_bytes(), limits=Limits())

    assert not report.valid
    assert report.error_count >= 1
    if expected["line"] == 0:
        first = report.errors[0]
    else:
        first = next(error for error in report.errors if error.line > 0)
    assert first.line == expected["line"], report.errors
    assert first.code == expected["code"], first
    assert first.code in ERROR_CODES


# Files whose problem is the file as a whole, or every line of it.
WHOLE_FILE = {"utf16.jsonl", "cr_line_ends.jsonl"}


@pytest.mark.parametrize(
    "name", [n for n in CORPUS if EXPECTED[n]["line"] != 0 and n not in WHOLE_FILE]
)
def test_malformed_file_has_one_error_on_the_bad_line(name: str) -> None:
    """The other lines of each file are good: the bad line is the only problem."""
    report = check((MALFORMED / name).read_bytes())

    assert report.error_count == 1, report.errors
    assert report.examples >= 10


# --- Valid samples ---


@pytest.mark.parametrize("name", sorted(VALID_SAMPLES))
def test_valid_sample_is_valid_with_correct_counts(name: str) -> None:
    task, fields, examples, lines = VALID_SAMPLES[name]
    data = (VALID / name).read_bytes()

    report = check(data, limits=Limits())

    assert report.errors == ()
    assert report.valid
    assert report.task is task
    assert report.fields == fields
    assert report.examples == examples
    assert report.lines == lines
    assert report.bytes == len(data)
    assert report.sha256 == hashlib.sha256(data).hexdigest()
    assert report.complete
    assert report.duplicates == 0
    assert report.lengths is not None
    assert 0 < report.lengths.min <= report.lengths.p50 <= report.lengths.p95
    assert report.lengths.p95 <= report.lengths.max
    assert report.estimated_tokens > 0


def test_valid_samples_pass_with_the_task_given() -> None:
    for name, (task, *_) in VALID_SAMPLES.items():
        assert check((VALID / name).read_bytes(), task).valid, name


@pytest.mark.parametrize("name", [*sorted(VALID_SAMPLES), *CORPUS])
def test_reports_do_not_depend_on_chunk_boundaries(name: str) -> None:
    folder = VALID if name in VALID_SAMPLES else MALFORMED
    data = (folder / name).read_bytes()

    reports = [validate(chunked(data, size), None, SMALL) for size in (1, 7, 65536)]

    assert reports[0] == reports[1] == reports[2]
    assert validate([data], None, SMALL) == reports[0]


def test_never_raises_on_truncated_or_random_input() -> None:
    data = (VALID / "bom_crlf_unicode.jsonl").read_bytes()
    for cut in range(0, len(data), 13):
        report = validate([data[:cut]], None, SMALL)
        assert report.bytes == cut
    rng = random.Random(1234)
    for _ in range(200):
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        mixed = data[: rng.randrange(len(data))] + noise + data[rng.randrange(len(data)) :]
        report = validate(chunked(mixed, 97), None, SMALL)
        assert report.bytes == len(mixed)
        assert report.valid == (report.error_count == 0 and report.examples >= 10)


# --- Line handling: BOM, CRLF, blank lines, long lines ---


def test_bom_and_crlf_are_accepted() -> None:
    plain = text_file(10)
    crlf = b"\xef\xbb\xbf" + text_file(10, end=b"\r\n")

    a, b = check(plain), check(crlf)

    assert a.valid and b.valid
    assert (a.examples, a.lines, a.lengths, a.estimated_tokens) == (
        b.examples,
        b.lines,
        b.lengths,
        b.estimated_tokens,
    )
    assert b.duplicates == 0


def test_crlf_inside_strings_counts_as_content() -> None:
    line = json.dumps({"prompt": "a\r\nb", "completion": "c"}).encode()
    report = check(line + b"\r\n" + text_file(9, end=b"\r\n"))

    assert report.valid
    assert report.lengths is not None and report.lengths.min == len("a\r\nbc")


def test_final_line_without_newline_counts() -> None:
    report = check(text_file(10).rstrip(b"\n"))

    assert report.valid
    assert (report.examples, report.lines) == (10, 10)


def test_trailing_blank_lines_are_ignored_but_inner_ones_are_errors() -> None:
    trailing = check(text_file(10) + b"\n  \r\n\t\n")
    inner = check(text_file(5) + b"\n \n" + text_file(5, start=5))

    assert trailing.valid and trailing.lines == 13 and trailing.error_count == 0
    assert not inner.valid
    assert inner.errors == (
        LineError(6, "blank_line", "blank line between records"),
        LineError(7, "blank_line", "blank line between records"),
    )


def test_iter_lines_numbers_and_strips_line_ends() -> None:
    chunks = [b"\xef\xbb", b"\xbffirst\r", b"\nsecond\n\nthird\r\n", b"last"]

    assert list(iter_lines(chunks, 100)) == [
        (1, b"first"),
        (2, b"second"),
        (3, b""),
        (4, b"third"),
        (5, b"last"),
    ]
    assert list(iter_lines([b"a\n"], 100)) == [(1, b"a")]
    assert list(iter_lines([b"", b""], 100)) == []


def test_iter_lines_limit_applies_after_stripping() -> None:
    lines = list(iter_lines([b"\xef\xbb\xbf12345\r\n123456\r\n12345"], 5))

    assert lines == [(1, b"12345"), (2, None), (3, b"12345")]


def test_iter_lines_skips_a_long_line_in_constant_memory() -> None:
    """A 32 MiB line fed in 64 KiB chunks is skipped without being buffered."""

    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        block = b"x" * (64 * 1024)
        for _ in range(512):
            yield block
        yield b'"}\nok\n'

    tracemalloc.start()
    try:
        lines = list(iter_lines(chunks(), 64 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert lines == [(1, None), (2, b"ok")]
    assert peak < 1 << 20


def test_long_line_error_gives_its_size() -> None:
    long_line = text_line(0, note="y" * 300)
    limits = Limits(max_example_bytes=200, duplicate_filter_bytes=1 << 16)

    report = validate(chunked(text_file(10) + long_line + b"\r\n", 5), None, limits)

    assert report.errors == (
        LineError(
            11,
            "line_too_long",
            f"line is {len(long_line):,} bytes, over the limit of 200 bytes per example",
        ),
    )


# --- Limits on the file ---


def test_oversized_file_stops_reading_at_the_limit() -> None:
    data = text_file(40)
    consumed: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        for chunk in chunked(data, 256):
            consumed.append(chunk)
            yield chunk

    report = validate(chunks(), None, Limits(max_file_bytes=1000, duplicate_filter_bytes=1 << 16))

    assert len(consumed) == 4  # the fourth chunk crosses the limit; no fifth is read
    assert report.bytes == 1024
    assert report.sha256 == hashlib.sha256(data[:1024]).hexdigest()
    assert not report.complete
    assert not report.valid
    assert report.errors[0].line == 0
    assert "larger than the limit of 1000 bytes" in report.errors[0].message
    assert "stopped reading after 1,024 bytes" in report.errors[0].message


def test_file_exactly_at_the_size_limit_is_fine() -> None:
    data = text_file(10)
    report = validate([data], None, Limits(max_file_bytes=len(data)))

    assert report.valid and report.complete


def test_too_few_examples_counts_only_valid_ones() -> None:
    report = check(text_file(9) + b"[]\n")

    assert report.examples == 9
    assert report.errors[0] == LineError(
        0, "too_few_examples", "too few examples: only 9 valid examples, at least 10 needed"
    )
    assert report.errors[1].line == 10
    assert check(text_file(3), limits=Limits(min_examples=3)).valid


def test_error_count_is_complete_and_the_list_capped() -> None:
    data = b"".join(b"[%d]\n" % i for i in range(200)) + text_file(10)

    report = check(data)

    assert report.error_count == 200
    assert len(report.errors) == 100
    assert [error.line for error in report.errors] == list(range(1, 101))
    assert "... and 190 more errors" in report.summary()


def test_error_cap_keeps_file_level_errors() -> None:
    data = b"".join(b"%d\n" % i for i in range(50))

    report = check(data, limits=Limits(max_reported_errors=5))

    assert report.error_count == 51
    assert len(report.errors) == 5
    assert report.errors[0].line == 0 and "too few examples" in report.errors[0].message


# --- Formats ---


def test_task_is_detected_from_the_first_valid_record() -> None:
    broken_chat = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    text = check(broken_chat + b"\n" + text_file(10))
    chat = check(b"\n".join(chat_line(i) for i in range(10)))

    assert (text.task, text.fields, text.examples) == (TaskType.TEXT, ("prompt", "completion"), 10)
    assert text.errors == (
        LineError(
            1,
            "no_assistant_message",
            "no message with role 'assistant' "
            "(a chat example needs a user and an assistant message)",
        ),
    )
    assert (chat.task, chat.fields, chat.valid) == (TaskType.CHAT, ("messages",), True)


def test_records_of_the_other_format_are_errors() -> None:
    data = text_file(10) + chat_line(0) + b"\n"

    report = check(data)

    assert report.task is TaskType.TEXT
    assert report.errors == (
        LineError(
            11,
            "format_mismatch",
            "chat record in a text-completion file "
            "(it has 'messages'; the format was set by line 1)",
        ),
    )


def test_a_given_task_is_enforced() -> None:
    report = check(text_file(10), TaskType.CHAT)

    assert report.task is TaskType.CHAT
    assert report.examples == 0
    assert report.error_count == 11
    assert "text-completion record in a chat file" in report.errors[1].message
    assert "the task was given as 'chat'" in report.errors[1].message
    assert check(text_file(10), "text").valid


def test_no_task_without_a_valid_record() -> None:
    report = check(b"[]\n{}\n")

    assert report.task is None
    assert report.fields == ()
    assert report.lengths is None
    assert report.errors[2] == LineError(
        2,
        "unknown_format",
        "record has neither 'messages' (chat) nor 'prompt'/'completion' (text completion) fields",
    )


def test_configured_field_names() -> None:
    data = b"".join(
        json.dumps({"question": f"Summarise {i}", "answer": f"Summary {i}"}).encode() + b"\n"
        for i in range(10)
    )
    limits = Limits(prompt_field="question", completion_field="answer")

    report = check(data, limits=limits)
    default = check(data)

    assert report.valid and report.fields == ("question", "answer")
    assert not default.valid
    assert default.errors[1].message.startswith("record has neither 'messages' (chat) nor")


def test_configured_names_win_over_text_ground_truth() -> None:
    line = text_line(0, text="also here", ground_truth="and here")
    report = check(line + b"\n" + text_file(9, start=1))

    assert report.valid and report.fields == ("prompt", "completion")


def test_surrogate_pairs_are_fine_and_lone_surrogates_are_not() -> None:
    emoji = json.dumps({"prompt": "Summarise 🎉", "completion": "Party 🍰"}).encode()
    assert b"\\ud83c" in emoji  # written as a surrogate pair escape
    assert check(emoji + b"\n" + text_file(9)).valid

    lone = b'{"prompt": "a", "completion": "b \\udc00"}'
    report = check(lone + b"\n" + text_file(10))
    assert report.errors == (
        LineError(
            1,
            "lone_surrogate",
            "field 'completion' contains an unpaired UTF-16 surrogate \\udc00 (not valid Unicode)",
        ),
    )


# --- Statistics ---


def test_duplicates_are_counted() -> None:
    repeat = text_line(3)
    reordered = json.dumps(dict(reversed(json.loads(repeat).items())), indent=None).encode()
    data = text_file(10) + repeat + b"\n" + repeat + b"\r\n" + b"  " + reordered + b"\n"

    report = check(data)

    assert report.valid
    assert report.examples == 13
    assert report.duplicates == 3
    assert "Bloom filter" in report.duplicates_method
    assert "approximate" in report.duplicates_method


def test_duplicates_with_the_default_filter() -> None:
    data = text_file(100) + text_file(50)

    assert validate([data]).duplicates == 50


def test_length_statistics() -> None:
    records = [
        json.dumps({"prompt": "p" * 10, "completion": "c" * n}).encode() for n in range(90, 1090)
    ]
    rng = random.Random(5)
    rng.shuffle(records)

    report = check(b"\n".join(records))

    lengths = report.lengths
    assert lengths is not None
    assert (lengths.min, lengths.max) == (100, 1099)
    assert lengths.mean == 599.5
    assert abs(lengths.p50 - 599.5) <= 0.05 * 599.5
    assert abs(lengths.p95 - 1049.5) <= 0.05 * 1049.5
    assert report.estimated_tokens == sum(-(-n // 4) for n in range(100, 1100))
    assert "4 characters per token" in report.token_method
    # Training tokens come from the tokenizer's count when there is one.
    assert report.tokens is not None
    assert report.training_tokens(3) == 3 * report.tokens.total
    without = check(b"\n".join(records), limits=Limits(count_tokens=False))
    assert without.tokens is None
    assert without.training_tokens(3) == 3 * without.estimated_tokens


def test_training_tokens_needs_an_epoch() -> None:
    report = check(text_file(10))
    with pytest.raises(ValueError, match="epochs"):
        report.training_tokens(0)


# --- Report ---


def test_report_to_dict_is_json() -> None:
    report = check((MALFORMED / "bad_role.jsonl").read_bytes())

    loaded = json.loads(json.dumps(report.to_dict()))

    assert loaded["valid"] is False
    assert loaded["task"] == "chat"
    assert loaded["fields"] == ["messages"]
    assert loaded["errors"][0]["line"] == 4
    assert loaded["error_count"] == report.error_count
    assert loaded["sha256"] == report.sha256
    assert set(loaded["lengths"]) == {"min", "max", "mean", "p50", "p95"}
    assert loaded["estimated_tokens"] == report.estimated_tokens


def test_summary_says_the_verdict_and_the_first_errors() -> None:
    good = check((VALID / "chat.jsonl").read_bytes()).summary()
    bad = check((MALFORMED / "broken_json.jsonl").read_bytes()).summary()

    assert good.startswith("VALID: 12 valid chat examples in 12 lines")
    assert "tokens: 1,381 (exact)" in good  # the tokenizer's count, every example
    assert bad.startswith("INVALID: 1 error; 10 valid text-completion (prompt/completion)")
    assert "  line 4: invalid JSON" in bad
    assert len(bad.splitlines()) <= 6


# --- Incremental form ---


def test_validator_feed_matches_validate() -> None:
    data = (VALID / "chat.jsonl").read_bytes()
    validator = Validator(limits=SMALL)
    for chunk in chunked(data, 100):
        assert validator.feed(chunk)

    assert validator.finish() == validate([data], None, SMALL)
    with pytest.raises(RuntimeError):
        validator.feed(b"more")
    with pytest.raises(RuntimeError):
        validator.finish()


def test_validator_feed_says_when_to_stop() -> None:
    validator = Validator(limits=Limits(max_file_bytes=10))
    assert validator.feed(b"0123456789")
    assert not validator.feed(b"x")
    assert not validator.feed(b"ignored")
    assert validator.finish().bytes == 11


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_example_bytes": 0},
        {"min_examples": -1},
        {"max_reported_errors": 0},
        {"prompt_field": ""},
        {"prompt_field": "x", "completion_field": "x"},
        {"duplicate_filter_bytes": 3000},
    ],
)
def test_limits_are_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Limits(**kwargs)  # type: ignore[arg-type]


# --- Split ---


def test_split_is_deterministic() -> None:
    # Pinned: the split must not change between versions, runs or machines.
    assert [split_part(b"line %d" % i, 0.5) for i in range(4)] == [
        "training",
        "validation",
        "validation",
        "validation",
    ]
    line = text_line(7)
    assert split_part(line, 0.3) == split_part(line + b"\n", 0.3)
    assert split_part(line, 0.3) == split_part(line + b"\r\n", 0.3)


def test_split_fraction_is_roughly_respected() -> None:
    lines = [text_line(i) for i in range(10_000)]

    parts = [split_part(line, 0.1) for line in lines]

    assert 800 <= parts.count("validation") <= 1200
    assert parts == [split_part(line, 0.1) for line in lines]
    assert {split_part(line, 0.0) for line in lines} == {"training"}
    assert {split_part(line, 1.0) for line in lines} == {"validation"}
    with pytest.raises(ValueError):
        split_part(b"x", 1.5)


# --- Command line ---


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.datasets", *args],
        cwd=REPO,
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_valid_file() -> None:
    result = run_cli(str(VALID / "text_prompt_completion.jsonl"))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("VALID: 12 valid text-completion")


def test_cli_invalid_file() -> None:
    result = run_cli(str(MALFORMED / "broken_json.jsonl"))

    assert result.returncode == 1
    assert result.stdout.startswith("INVALID")
    assert "line 4: invalid JSON" in result.stdout


def test_cli_json_and_options() -> None:
    path = MALFORMED / "utf16.jsonl"
    result = run_cli(str(path), "--json", "--max-errors", "2", "--task", "text")

    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report["task"] == "text"
    assert len(report["errors"]) == 2
    assert report["error_count"] > 2


def test_cli_min_examples_and_field_names() -> None:
    path = VALID / "text_ground_truth.jsonl"

    assert run_cli(str(path), "--min-examples", "12").returncode == 1
    assert run_cli(str(path), "--min-examples", "11").returncode == 0
    renamed = run_cli(
        str(path), "--prompt-field", "text", "--completion-field", "ground_truth", "--json"
    )
    assert renamed.returncode == 0
    assert json.loads(renamed.stdout)["fields"] == ["text", "ground_truth"]


def test_cli_reads_standard_input() -> None:
    result = run_cli("-", "--task", "chat", stdin=(VALID / "chat.jsonl").read_bytes())

    assert result.returncode == 0, result.stderr


def test_cli_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"

    result = run_cli(str(missing))

    assert result.returncode == 2
    assert result.stdout == ""
    assert f"cannot read {missing}: No such file or directory" in result.stderr


def test_cli_directory_and_bad_options_are_usage_errors(tmp_path: Path) -> None:
    assert run_cli(str(tmp_path)).returncode == 2
    bad_task = run_cli(str(VALID / "chat.jsonl"), "--task", "vision")
    assert bad_task.returncode == 2
    assert "invalid choice" in bad_task.stderr
    bad_limit = run_cli(str(VALID / "chat.jsonl"), "--max-errors", "0")
    assert bad_limit.returncode == 2
    assert "--max-errors" in bad_limit.stderr
    assert run_cli().returncode == 2
