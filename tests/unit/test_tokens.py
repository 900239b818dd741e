"""Exact tokens: the pinned tokenizer's own ids, the counting rules, sampling, over-length.

The literal ids come from outside this project: the Mistral-7B-v0.1
``tokenizer.model`` cases of dotnet/machinelearning
(test/Microsoft.ML.Tokenizers.Tests/LlamaTests.cs) and ml-rust/splintr
(tests/mistral.rs, ids made by the ``sentencepiece`` package on Mistral 7B's
file); the chat and sample-dataset counts were made with mistral-common 1.13.1
(``MistralTokenizer.v1()``), not by this code (docs/design/issue-11-research.md).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.datasets import Limits, Validator, validate
from shared.datasets.tokens import (
    TOKENIZER_FILE,
    TOKENIZER_SHA256,
    Tokenizer,
    TokenizerError,
    chat_strings,
    count,
    pinned_tokenizer,
    text_strings,
    token_bound,
)

DIALOGSUM = Path(__file__).parents[2] / "local" / "demo" / "dialogsum.jsonl"


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("Hello, world!", [22557, 28725, 1526, 28808]),
        ("\nHello\n\rWorld!\n", [28705, 13, 16230, 13, 28801, 11978, 28808, 13]),
        ("This is 👍, an emoji.", [851, 349, 28705, 30195, 28725, 396, 877, 27813, 28723]),
        (" Hello world", [28705, 22557, 1526]),
        ("hello world", [6312, 28709, 1526]),
        ("tokenizer", [6029, 4024]),
        ("perplexity", [660, 8899, 472]),
        ("你好世界", [28705, 29383, 29530, 30050, 29822]),
        ("", []),
        ("Summarize the dialog.", [6927, 3479, 653, 272, 10436, 28723]),
    ],
)
def test_ids_are_the_mistral_v01_tokenizers(text: str, ids: list[int]) -> None:
    assert pinned_tokenizer().encode(text) == ids


def test_the_vendored_file_is_the_pinned_one() -> None:
    tokenizer = pinned_tokenizer()
    assert (tokenizer.bos, tokenizer.eos) == (1, 2)
    assert TOKENIZER_SHA256 == "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"
    assert TOKENIZER_FILE.stat().st_size == 493_443


def test_another_tokenizer_file_is_refused(tmp_path: Path) -> None:
    tampered = tmp_path / "tokenizer.model"
    data = bytearray(TOKENIZER_FILE.read_bytes())
    data[-1] ^= 1
    tampered.write_bytes(bytes(data))
    with pytest.raises(TokenizerError, match="not the pinned"):
        Tokenizer(tampered)
    with pytest.raises(TokenizerError, match="cannot be read"):
        Tokenizer(tmp_path / "missing.model")


def test_chat_counts_follow_the_mistral_v1_template() -> None:
    tokenizer = pinned_tokenizer()
    user = "Summarize the dialog."
    answer = "Edward and Rachel will meet at 2pm."
    # BOS + "[INST] Summarize the dialog. [/INST]": 14 (the user turn alone)
    assert count(tokenizer, chat_strings(["user"], [user])) == 14
    assert count(tokenizer, chat_strings(["user", "assistant"], [user, answer])) == 25
    roles = ["system", "user", "assistant", "user", "assistant"]
    contents = ["You are terse.", "Hi", "Hello.", user, answer]
    assert count(tokenizer, chat_strings(roles, contents)) == 43


def test_the_sample_dataset_counts() -> None:
    tokenizer = pinned_tokenizer()
    records = [json.loads(line) for line in DIALOGSUM.read_text().splitlines()]
    prompts = sum(len(tokenizer.encode(r["prompt"])) for r in records)
    completions = sum(len(tokenizer.encode(r["completion"])) for r in records)
    assert (prompts, completions) == (16_547, 5_177)  # 21,724 encoded separately

    report = validate([DIALOGSUM.read_bytes()])
    tokens = report.tokens
    assert tokens is not None and tokens.exact and tokens.sample == "all"
    assert tokens.total == 22_084  # BOS + prompt + completion + EOS, each example
    assert (tokens.min, tokens.p50, tokens.p95, tokens.max) == (54, 62, 67, 69)
    assert report.training_tokens(3) == 3 * 22_084


_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=32, max_codepoint=126),
        st.sampled_from("\n\t\x1fёжЯ東京大きい👍🙂é"),
    ),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_at_most_one_token_per_utf8_byte_plus_one(text: str) -> None:
    assert len(pinned_tokenizer().encode(text)) <= len(text.encode()) + 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), _TEXT), max_size=6))
def test_the_bound_from_the_key_holds(messages: list[tuple[str, str]]) -> None:
    tokenizer = pinned_tokenizer()
    roles = [r for r, _ in messages] + ["user", "assistant"]
    contents = [c for _, c in messages] + ["x", "y"]
    key = "\x1f".join(part for pair in zip(roles, contents, strict=True) for part in pair)
    bound = token_bound(len(key.encode()), key.count("\x1f"))
    assert count(tokenizer, chat_strings(roles, contents)) <= bound

    prompt, completion = contents[0] or "p", contents[-1]
    text_key = f"{prompt}\x1f{completion}"
    text_bound = token_bound(len(text_key.encode()), text_key.count("\x1f"))
    assert count(tokenizer, text_strings(prompt, completion)) <= text_bound


def _dataset(count_: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "Tokyo", "東京", "naïve", "42"]
    return [
        json.dumps(
            {
                "prompt": " ".join(rng.choices(words, k=rng.randint(3, 60))),
                "completion": " ".join(rng.choices(words, k=rng.randint(1, 30))),
            }
        ).encode()
        for _ in range(count_)
    ]


def test_large_files_count_a_sample_the_same_whatever_the_line_order() -> None:
    lines = _dataset(3_000, seed=7)
    limits = Limits(tokens_exact_bytes=64 * 1024)
    report = validate([b"\n".join(lines)], limits=limits)
    shuffled = lines[:]
    random.Random(8).shuffle(shuffled)
    again = validate([b"\n".join(shuffled)], limits=limits)
    exact = validate([b"\n".join(lines)], limits=Limits(tokens_exact_bytes=1 << 30))
    size = len(b"\n".join(lines))  # known in advance: sampled from the first example on
    hinted = validate([b"\n".join(lines)], limits=limits, expected_bytes=size)
    assert hinted.tokens == validate([b"\n".join(lines)], limits=limits).tokens

    assert report.tokens is not None and again.tokens is not None and exact.tokens is not None
    assert not report.tokens.exact and report.tokens.sample == "1/64 by content hash"
    assert report.tokens == again.tokens  # the sample is by content, not by position
    assert exact.tokens.exact and exact.tokens.counted == 3_000
    assert 0 < report.tokens.counted < 3_000 / 64 * 2
    # The estimate is close to the exact total (a ratio estimator on ~47 examples).
    assert abs(report.tokens.total - exact.tokens.total) <= 0.05 * exact.tokens.total


def test_a_large_file_without_sampled_examples_falls_back_to_its_head() -> None:
    lines = _dataset(40, seed=10)  # none of these 40 is in the 1/64 sample
    limits = Limits(tokens_exact_bytes=512, min_examples=1)
    tokens = validate([b"\n".join(lines)], limits=limits).tokens
    exact = validate([b"\n".join(lines)], limits=Limits(min_examples=1)).tokens
    assert tokens is not None and exact is not None and exact.exact
    assert not tokens.exact and tokens.sample == "the first 40 examples (none fell in the sample)"
    assert tokens.total == exact.total  # the head was every example here


def test_over_the_maximum_sequence_length_exactly() -> None:
    tokenizer = pinned_tokenizer()
    long = {"prompt": "word " * 300, "completion": "end of the answer"}
    tokens = count(tokenizer, text_strings(long["prompt"], long["completion"]))
    lines = [json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}).encode() for i in range(12)]
    lines.insert(5, json.dumps(long).encode())  # line 6
    data = b"\n".join(lines)

    for limit, over in ((tokens - 1, 1), (tokens, 0), (tokens + 1, 0)):
        for fast in (True, False):
            validator = Validator(limits=Limits(max_seq_length=limit), fast=fast)
            validator.feed(data)
            report = validator.finish()
            assert report.tokens is not None
            assert report.tokens.over_max_seq_length == over
            assert report.valid  # a warning by default
            assert report.warning_count == over
            if over:
                warning = report.warnings[0]
                assert (warning.line, warning.code) == (6, "too_many_tokens")
                assert f"{tokens:,} tokens" in warning.message

    strict = validate([data], limits=Limits(max_seq_length=tokens - 1, max_seq_error=True))
    assert not strict.valid
    assert [(e.line, e.code) for e in strict.errors] == [(6, "too_many_tokens")]


def test_fast_and_line_by_line_paths_count_the_same() -> None:
    chat = [
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": f"Be brief {i}."},
                    {"role": "user", "content": "Summarize: " + "word " * (i % 50)},
                    {"role": "assistant", "content": f"Summary {i}."},
                ]
            }
        ).encode()
        for i in range(200)
    ]
    for lines in (chat, _dataset(200, seed=3)):
        reports = []
        for fast in (True, False):
            validator = Validator(limits=Limits(max_seq_length=40), fast=fast)
            validator.feed(b"\n".join(lines))
            reports.append(validator.finish())
        assert reports[0].tokens == reports[1].tokens
        assert reports[0].warnings == reports[1].warnings
        assert reports[0].tokens is not None and reports[0].tokens.over_max_seq_length > 0
