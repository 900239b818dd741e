"""shared.datasets fast path: whole blocks checked at once report what line by line does.

Every test validates the same bytes twice, ``Validator(fast=False)`` (every
line through the line-by-line path, the reference) and ``fast=True``, at
several chunk sizes, and asserts the reports are equal; most also assert that
the fast path did take the lines it should, so a test cannot pass by always
falling back.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from shared.datasets import Limits, LineError, Report, TaskType, Validator
from shared.datasets.blocks import BlockChecker, Examples

DATA = Path(__file__).resolve().parents[1] / "data"
FILES = sorted((DATA / "valid").glob("*.jsonl")) + sorted((DATA / "malformed").glob("*.jsonl"))
SMALL = Limits(duplicate_filter_bytes=1 << 16)
CHUNK_SIZES = (1, 7, 4096, 1 << 20)


def run(data: bytes, task: str | None, limits: Limits, fast: bool, size: int) -> Report:
    validator = Validator(task, limits, fast=fast)
    for start in range(0, len(data), size):
        if not validator.feed(data[start : start + size]):
            break
    return validator.finish()


def same(
    data: bytes,
    task: str | None = None,
    limits: Limits = SMALL,
    sizes: tuple[int, ...] = CHUNK_SIZES,
) -> Report:
    """The report, after checking the fast path gives the reference's at every chunk size."""
    for size in sizes:
        reference = run(data, task, limits, False, size)
        assert run(data, task, limits, True, size) == reference, f"chunks of {size}"
    return reference


class Spy:
    """Counts the lines the block checker vouched for, whole blocks and single lines."""

    def __init__(self) -> None:
        self.blocks = 0
        self.whole = 0
        self.single = 0


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    counts = Spy()
    original = BlockChecker.examples

    def examples(self: BlockChecker, block: bytes) -> Examples | None:
        found = original(self, block)
        if found is not None:
            lines = len(found[0])
            if lines > 1:
                counts.blocks += 1
                counts.whole += lines
            else:
                counts.single += 1
        return found

    monkeypatch.setattr(BlockChecker, "examples", examples)
    return counts


def short_id(value: object) -> str:
    """A test id that stays readable for long parameters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def text(i: int, **fields: object) -> dict[str, object]:
    prompt = f'Summarise dialogue {i}:\n#A#: hi\t"there"'
    return {"prompt": prompt, "completion": f"Hi {i}.", **fields}


def chat(i: int) -> dict[str, object]:
    return {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": f"Summarise {i}: «café» 日本 🙂"},
            {"role": "assistant", "content": f"Summary {i}."},
        ]
    }


def lines(
    records: Sequence[Mapping[str, object]], end: bytes = b"\n", ascii_only: bool = False
) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=ascii_only).encode() + end for r in records)


def texts(n: int, start: int = 0) -> list[dict[str, object]]:
    return [text(i) for i in range(start, start + n)]


def chats(n: int, start: int = 0) -> list[dict[str, object]]:
    return [chat(i) for i in range(start, start + n)]


# --- The fast path is taken, and agrees ---


@pytest.mark.parametrize("task", [None, "text"])
def test_clean_text_file_goes_whole(spy: Spy, task: str | None) -> None:
    report = same(lines(texts(300)), task, sizes=(1 << 20,))

    assert report.valid and report.examples == 300
    # Line 1 sets the format (the text field pair): the rest of its block goes whole.
    assert (spy.whole, spy.single) == (299, 0)


def test_clean_chat_file_goes_whole(spy: Spy) -> None:
    report = same(lines(chats(300)), "chat", sizes=(1 << 20,))

    assert report.valid and report.examples == 300 and spy.whole == 300


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("task", [None, "chat", "text"])
def test_corpus_agrees(path: Path, task: str | None) -> None:
    same(path.read_bytes(), task)


# --- Repeated keys: msgspec keeps the last silently; the count of '":' catches them ---


@pytest.mark.parametrize(
    "bad",
    ids=short_id,
    argvalues=[
        b'{"prompt": "a", "prompt": "b", "completion": "c"}',
        b'{"prompt":"a","completion":"c","completion":"d"}',
        # Whitespace before the colon hides keys from the count; a string holding '":'
        # would make up for them: the block must not be trusted.
        b'{"prompt" :"a", "prompt" :"b", "completion":"\\":"}',
        b'{"prompt"\t:"a", "prompt"\t:"b", "completion":"\\":"}',
        b'{"prompt":"a", "completion":"b", "completion" :"\\":"}',
        # A colon written as an escape would make up for the repeated key's colon.
        b'{"prompt":"a","prompt":"b","completion":"\\u003a"}',
        b'{"prompt":"a","prompt":"b","completion":"\\u003A"}',
    ],
)
def test_repeated_keys_in_text(spy: Spy, bad: bytes) -> None:
    data = lines(texts(50)) + bad + b"\n" + lines(texts(50, 50))

    report = same(data, "text")

    assert [(e.line, e.code) for e in report.errors] == [(51, "duplicate_key")]
    assert spy.single + spy.whole >= 99


@pytest.mark.parametrize(
    "bad",
    ids=short_id,
    argvalues=[
        {"messages": [{"role": "user", "content": "a"}], "messages2": []},
        '{"messages": [{"role": "user", "content": "a"}], '
        '"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',
        '{"messages": [{"role": "user", "role": "user", "content": "q"}, '
        '{"role": "assistant", "content": "a"}]}',
        '{"messages": [{"role": "user", "content": "q", "content": "r"}, '
        '{"role": "assistant", "content": "a"}]}',
    ],
)
def test_repeated_keys_in_chat(bad: object) -> None:
    line = bad.encode() if isinstance(bad, str) else json.dumps(bad).encode()
    data = lines(chats(20)) + line + b"\n" + lines(chats(20, 20))

    report = same(data, "chat")

    assert report.error_count == 1 and report.errors[0].line == 21


def test_colon_after_whitespace_and_quote_colon_in_content_are_fine(spy: Spy) -> None:
    odd = [
        {"prompt": 'He said "no": fine', "completion": "Note : à voir"},
        {"prompt": "a", "completion": 'x":y'},
    ]
    spaced = b'{"prompt" : "spaced", "completion" : "keys"}\n'
    data = lines(texts(40)) + lines(odd) + spaced + lines(texts(40, 40))

    report = same(data, "text")

    assert report.valid and report.examples == 83
    assert spy.single >= 80  # the block fell back; the plain lines went through one by one


# --- Escapes and non-ASCII ---


def test_escapes_and_non_ascii_agree_and_count_as_duplicates(spy: Spy) -> None:
    tricky = [
        {"prompt": 'quote " backslash \\ slash / tab \t nl \n cr \r', "completion": "b"},
        {"prompt": "nul \x00 del \x7f unit \x1f", "completion": "ctrl"},
        {"prompt": "émoji 🙂 日本語 \u2028 \ufeff", "completion": "\U0001f600"},
        {"prompt": "  padded  ", "completion": "\u3000x"},
    ]
    raw = lines(tricky)
    escaped = lines(tricky, ascii_only=True)
    compact = b"".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in tricky
    )
    data = lines(texts(10)) + raw + escaped + compact

    report = same(data, "text")

    assert report.valid and report.examples == 22
    assert report.duplicates == 8  # the same content however it is written
    assert spy.whole + spy.single >= 21


@pytest.mark.parametrize(
    ("bad", "code"),
    ids=short_id,
    argvalues=[
        (b'{"prompt": "a\\ud83d", "completion": "b"}', "lone_surrogate"),
        (b'{"prompt": "a\\udc00b", "completion": "b"}', "lone_surrogate"),
        (b'{"prompt": "a\xff", "completion": "b"}', "invalid_utf8"),
        (b'{"prompt": "a\xc0\xaf", "completion": "b"}', "invalid_utf8"),
        (b'{"prompt": "a\xed\xa0\x80", "completion": "b"}', "invalid_utf8"),
        (b'{"prompt": "a\tb", "completion": "b"}', "invalid_json"),
        (b'{"prompt": "a\x00", "completion": "b"}', "nul_byte"),
        (b'{"prompt": "a\\x", "completion": "b"}', "invalid_json"),
        (b'{"prompt": "   ", "completion": "b"}', "empty_text"),
        (b'{"prompt": "\\u3000", "completion": "b"}', "empty_text"),
        (b'{"prompt": "", "completion": "b"}', "empty_text"),
        (b'{"prompt": 1, "completion": "b"}', "wrong_type"),
        (b'{"prompt": "a", "completion": NaN}', "invalid_json"),
        (b'{"prompt": "a"}', "missing_field"),
        (b'{"prompt": ' + b"[" * 5000 + b"]" * 5000 + b', "completion": "b"}', "invalid_json"),
        (
            b'{"prompt": ' + b'{"a":' * 3000 + b"1" + b"}" * 3000 + b', "completion": "b"}',
            "invalid_json",
        ),
        (b'{"prompt": ' + b"9" * 5000 + b', "completion": "b"}', "invalid_json"),
        (b'{"prompt": "a", "completion": "b"}{"prompt": "a", "completion": "b"}', "invalid_json"),
        (b'{"prompt": "a", "completion": "b"} {"prompt": "c", "completion": "d"}', "invalid_json"),
        (b'{"prompt": "a", "completion": "b"}\x0b', "invalid_json"),
        (b'\xef\xbb\xbf{"prompt": "a", "completion": "b"}', "misplaced_bom"),
        (b'{"messages": [{"role": "user", "content": "a"}]}', "format_mismatch"),
        (b'{"text": "a", "ground_truth": "b"}', "field_pair_mismatch"),
    ],
)
def test_a_bad_line_inside_a_good_block_keeps_its_line_number(
    spy: Spy, bad: bytes, code: str
) -> None:
    data = lines(texts(600)) + bad + b"\n" + lines(texts(600, 600))

    report = same(data, "text")

    assert [(e.line, e.code) for e in report.errors] == [(601, code)], report.errors
    assert report.examples == 1200
    assert spy.whole + spy.single >= 1199


@pytest.mark.parametrize(
    ("bad", "code"),
    ids=short_id,
    argvalues=[
        ({"messages": []}, "empty_messages"),
        ({"messages": [{"role": "assistant", "content": "a"}]}, "no_user_message"),
        ({"messages": [{"role": "user", "content": "q"}]}, "no_assistant_message"),
        (
            {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]},
            "last_not_assistant",
        ),
        (
            {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}]},
            "empty_text",
        ),
        ({"messages": [{"role": "bot", "content": "q"}]}, "invalid_role"),
        ({"messages": [{"role": "user", "content": ["q"]}]}, "wrong_type"),
        ({"messages": "hi"}, "wrong_type"),
        ({"messages": [{"role": "user", "content": [[[[[[]]]]]]}]}, "wrong_type"),
        ({"prompt": "a", "completion": "b"}, "format_mismatch"),
    ],
)
def test_a_bad_chat_line_inside_a_good_block(bad: dict[str, object], code: str) -> None:
    data = lines(chats(300)) + lines([bad]) + lines(chats(300, 300))

    report = same(data, "chat")

    assert [(e.line, e.code) for e in report.errors] == [(301, code)], report.errors


@pytest.mark.parametrize("field", ["role", "content"])
def test_deep_nesting_inside_a_chat_field(field: str) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    message = {"role": b'"user"', "content": b'"q"', field: deep}
    bad = b'{"messages": [{"role": %s, "content": %s}, {"role": "assistant", "content": "a"}]}' % (
        message["role"],
        message["content"],
    )
    data = lines(chats(300)) + bad + b"\n" + lines(chats(300, 300))

    report = same(data, "chat")

    assert [(e.line, e.code) for e in report.errors] == [(301, "invalid_json")], report.errors


def test_extra_fields_are_valid_through_the_slow_path() -> None:
    extra_text = [text(i, id=i) for i in range(20)]
    extra_chat = [
        {
            "messages": [
                {"role": "user", "content": "q", "name": "x"},
                {"role": "assistant", "content": f"{i}"},
            ]
        }
        for i in range(20)
    ]

    assert same(lines(extra_text), "text").valid
    assert same(lines(extra_chat), "chat").valid


# --- Line structure: BOM, CRLF, blank lines, long lines, chunk boundaries ---


def test_bom_at_the_start_with_the_task_given(spy: Spy) -> None:
    data = b"\xef\xbb\xbf" + lines(texts(100))

    report = same(data, "text")

    assert report.valid and report.examples == 100 and spy.whole + spy.single >= 99


@pytest.mark.parametrize("end", [b"\r\n", b"\n"])
def test_crlf_and_mixed_line_ends(spy: Spy, end: bytes) -> None:
    records = texts(200)
    data = b"".join(
        json.dumps(r).encode() + (end if i % 3 else b"\r\n") for i, r in enumerate(records)
    )

    report = same(data, "text")

    assert report.valid and spy.whole + spy.single >= 199


def test_bare_and_doubled_carriage_returns() -> None:
    # One CR is the line end; another is JSON whitespace, around a value or inside it.
    doubled = lines(texts(20)) + b'{"prompt": "a", "completion": "b"}\r\r\n' + lines(texts(20))
    bare = lines(texts(20)) + b'{"prompt": "a",\r"completion": "b"}\n' + lines(texts(20, 20))
    split = lines(texts(20)) + b'{"prompt": "a"}\r{"completion": "b"}\n' + lines(texts(20, 20))

    assert same(doubled, "text").valid
    assert same(bare, "text").valid
    assert [(e.line, e.code) for e in same(split, "text").errors] == [(21, "invalid_json")]


def test_blank_lines_inside_and_at_the_end() -> None:
    data = lines(texts(50)) + b"\n  \n\t\r\n" + lines(texts(50, 50)) + b"\n\n \n"

    report = same(data, "text")

    assert report.errors == tuple(
        LineError(n, "blank_line", "blank line between records") for n in (51, 52, 53)
    )
    assert report.lines == 106


def test_blank_lines_before_a_whole_block() -> None:
    # The blank lines end one chunk; the next chunk is a clean block.
    first = lines(texts(20)) + b"\n\n"
    data = first + lines(texts(200, 20))

    def chunks() -> Iterator[bytes]:
        yield first
        yield data[len(first) :]

    reference = run(data, "text", SMALL, False, 1 << 20)
    validator = Validator("text", SMALL)
    for chunk in chunks():
        validator.feed(chunk)

    assert validator.finish() == reference
    assert [e.line for e in reference.errors] == [21, 22]


def test_long_lines_inside_a_block() -> None:
    limits = Limits(max_example_bytes=300, duplicate_filter_bytes=1 << 16)
    long_line = json.dumps(text(0, note="y" * 400)).encode() + b"\n"
    pad = 300 - len(json.dumps({"prompt": "", "completion": "c"}))
    at_limit = json.dumps({"prompt": "p" * pad, "completion": "c"}).encode()
    assert len(at_limit) == 300
    data = lines(texts(100)) + long_line + at_limit + b"\n" + lines(texts(100, 100))

    report = same(data, "text", limits)

    assert [(e.line, e.code) for e in report.errors] == [(101, "line_too_long")]
    assert report.examples == 201


def test_a_multibyte_character_split_by_every_chunk_boundary() -> None:
    data = lines(chats(5)) + lines([chat(9)], ascii_only=True)

    for size in range(1, 40):
        assert run(data, "chat", SMALL, True, size) == run(data, "chat", SMALL, False, size)


def test_a_line_split_across_chunks_at_every_offset() -> None:
    data = lines(texts(30))
    reference = run(data, "text", SMALL, False, 1 << 20)

    for cut in range(1, len(data), 7):
        validator = Validator("text", SMALL)
        validator.feed(data[:cut])
        validator.feed(data[cut:])
        assert validator.finish() == reference, cut


def test_last_line_without_newline_and_a_truncated_one() -> None:
    data = lines(texts(30)).rstrip(b"\n")

    assert same(data, "text").valid
    report = same(data[:-5], "text")
    assert [(e.line, e.code) for e in report.errors] == [(30, "invalid_json")]


def test_file_size_limit_cuts_a_block() -> None:
    data = lines(texts(100))
    limits = Limits(max_file_bytes=len(data) // 2, duplicate_filter_bytes=1 << 16)

    report = same(data, "text", limits)

    assert not report.complete and report.examples < 100


# --- Statistics and duplicates ---


def test_statistics_and_duplicates_agree(spy: Spy) -> None:
    rng = random.Random(7)
    records = [
        {"prompt": "p" * rng.randrange(1, 3000), "completion": f"c{rng.randrange(60)}"}
        for _ in range(2000)
    ]
    data = lines(records)

    report = same(data, "text", sizes=(4096, 1 << 20))

    assert report.duplicates > 0 and report.lengths is not None
    assert spy.whole > 1500


def test_duplicates_inside_one_block_and_across_blocks() -> None:
    block = lines(texts(100))
    data = block + block[: len(block) // 2] + b"\n" + block

    report = same(data, "text", Limits(duplicate_filter_bytes=1024))

    assert report.duplicates >= 150


def test_text_field_pair_from_limits() -> None:
    limits = Limits(prompt_field="question", completion_field="answer")
    records = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(50)]

    report = same(lines(records), None, limits)

    assert report.valid and report.fields == ("question", "answer")
    other = same(lines(texts(50)), "text", limits)
    assert {e.code for e in other.errors} == {"too_few_examples", "missing_field"}


def test_random_mixtures_agree() -> None:
    """Seeded mixtures of good lines and every kind of damage, at random chunk sizes."""
    rng = random.Random(10)
    damage: list[Callable[[bytes], bytes]] = [
        lambda line: line[:-1] + b', "prompt": "x"}',
        lambda line: b" " + line,
        lambda line: line + line,
        lambda line: b"",
        lambda line: line.replace(b'": ', b'" : ', 1),
        lambda line: line[: len(line) // 2],
        lambda line: line.replace(b"a", b"\xff", 1),
        lambda line: b"\xef\xbb\xbf" + line,
        lambda line: line.replace(b'"Hi', b'"\\ud800', 1),
        lambda line: b'{"prompt": "a", "completion": ""}',
    ]
    for _ in range(60):
        good = [json.dumps(text(rng.randrange(40))).encode() for _ in range(rng.randrange(1, 200))]
        rate = rng.choice((0.0, 0.01, 0.1, 0.5))
        body = [rng.choice(damage)(line) if rng.random() < rate else line for line in good]
        end = rng.choice((b"\n", b"\r\n"))
        data = end.join(body) + rng.choice((b"", end))
        task = rng.choice((None, "text"))
        size = rng.choice((3, 100, 4096, 1 << 20))
        assert run(data, task, SMALL, True, size) == run(data, task, SMALL, False, size)


def test_validator_reports_the_task() -> None:
    assert same(lines(chats(12))).task is TaskType.CHAT


def test_duplicates_across_batches_with_the_default_filter(spy: Spy) -> None:
    """The default filter takes whole batches at once: repeats seen in earlier batches."""
    first = lines(texts(700))
    data = first + lines(texts(300, 700)) + first + lines(texts(50))

    report = same(data, "text", Limits(), sizes=(len(data), 1 << 16))

    assert report.duplicates == 750 and spy.whole > 1500


def test_large_chunks_are_checked_in_pieces(spy: Spy) -> None:
    data = lines(texts(40_000))
    assert len(data) > 3 << 20

    validator = Validator("text", SMALL)
    validator.feed(data)

    assert validator.finish() == run(data, "text", SMALL, False, 1 << 20)
    assert spy.blocks >= 3  # about 1 MiB each
