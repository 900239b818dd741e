"""The smoke test's pure parts: routes, similarity, prompts from a split, verdicts.

Also the HTTP adapter's request and answer shapes, which need no server; the
adapter against the emulator is in ``tests/integration/test_scoring.py``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from local.ports import free_port
from shared.adapters.scoring import HttpScorer, answer_text, mlflow_text, request_body
from shared.domain.smoke import (
    KEEP_CHARS,
    Answer,
    PromptResult,
    ScoringTarget,
    SmokeCriteria,
    SmokePrompt,
    clip,
    conclude,
    is_chat_route,
    judge,
    prompts_from_lines,
    route_url,
    similarity,
)

URI = "https://ep-1.westeurope.inference.ml.azure.com/score"
BASE = "https://ep-1.westeurope.inference.ml.azure.com"


def line(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def ok(text: str = "Paris.", latency_ms: float = 120.0) -> Answer:
    usage = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    return Answer(200, text, latency_ms, usage)


# --- route_url / is_chat_route -------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "route", "expected"),
    [
        (URI, "/completions", f"{BASE}/completions"),
        (URI, "/v1/completions", f"{BASE}/v1/completions"),
        (URI, "/v1/chat/completions", f"{BASE}/v1/chat/completions"),
        (URI + "/", "/completions", f"{BASE}/completions"),  # trailing slash
        (URI, "v1/completions", f"{BASE}/v1/completions"),  # route without leading slash
        (f"{BASE}/online/ep-1/score", "/completions", f"{BASE}/online/ep-1/completions"),
        (BASE, "/completions", f"{BASE}/completions"),  # no /score: appended to the base
        (BASE + "/", "/completions", f"{BASE}/completions"),
        (f"{BASE}/api", "/v1/completions", f"{BASE}/api/v1/completions"),
        (f"{BASE}/scoreboard", "/completions", f"{BASE}/scoreboard/completions"),
        (f"{URI}?x=1", "/completions", f"{BASE}/completions?x=1"),  # query kept
    ],
)
def test_route_url(uri: str, route: str, expected: str) -> None:
    assert route_url(uri, route) == expected


@pytest.mark.parametrize(
    ("route", "chat"),
    [
        ("/completions", False),
        ("/v1/completions", False),
        ("/score", False),
        ("/v1/chat/completions", True),
        ("/v1/chat/completions/", True),
        ("/chat/completions", True),
    ],
)
def test_is_chat_route(route: str, chat: bool) -> None:
    assert is_chat_route(route) is chat


# --- similarity -------------------------------------------------------------------------


def test_similarity_of_identical_texts_is_one() -> None:
    assert similarity("Paris is the capital of France.", "Paris is the capital of France.") == 1.0


def test_similarity_ignores_case_punctuation_spacing_and_order() -> None:
    assert similarity("Paris, is the capital!", "  the CAPITAL is paris ") == 1.0


def test_similarity_normalises_unicode() -> None:
    # NFKC: the "ﬁ" ligature is "fi"; case folding: "ß" is "ss".
    assert similarity("ﬁne STRASSE", "fine straße") == 1.0


def test_similarity_without_shared_words_is_zero() -> None:
    assert similarity("Tokyo", "Lima is the capital of Peru") == 0.0


def test_similarity_is_word_f1() -> None:
    # 2 shared words; precision 2/3, recall 2/4: F1 = 2 * (2/3 * 1/2) / (2/3 + 1/2) = 4/7.
    assert similarity("the capital Paris", "the capital is Lima") == pytest.approx(4 / 7)


def test_similarity_counts_repeated_words_once_each() -> None:
    # Multiset intersection: "a a" shares one "a" with "a b".
    assert similarity("a a", "a b") == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Paris is the capital of France", "The capital of France: Paris"),
        ("one two three", "three four"),
        ("", "something"),
        ("héllo wörld 🌍", "hello world"),
    ],
)
def test_similarity_is_symmetric_bounded_and_deterministic(a: str, b: str) -> None:
    score = similarity(a, b)
    assert 0.0 <= score <= 1.0
    assert score == similarity(b, a)
    assert score == similarity(a, b)


def test_similarity_of_empty_texts() -> None:
    assert similarity("", "") == 1.0
    assert similarity("...", "  ") == 1.0  # no words on either side
    assert similarity("", "words") == 0.0


def test_similarity_grows_with_overlap() -> None:
    expected = "Edward and Rachel will meet at 3pm"
    assert (
        similarity("Edward and Rachel will meet at 3pm", expected)
        > similarity("Edward and Rachel will meet", expected)
        > similarity("Edward will", expected)
        > similarity("nobody", expected)
    )


# --- prompts_from_lines --------------------------------------------------------------


def test_text_prompts_use_the_configured_fields() -> None:
    lines = [
        line({"question": "Capital of France?", "answer": "Paris."}),
        line({"question": "Capital of Peru?", "answer": "Lima."}),
    ]

    prompts = prompts_from_lines(lines, 5, prompt_field="question", completion_field="answer")

    assert prompts == [
        SmokePrompt("Capital of France?", "Paris."),
        SmokePrompt("Capital of Peru?", "Lima."),
    ]


def test_text_prompts_default_fields_and_azure_sample_fields() -> None:
    lines = [
        line({"prompt": "Capital of France?", "completion": "Paris."}),
        line({"text": "Capital of Japan?", "ground_truth": "Tokyo."}),
    ]

    assert prompts_from_lines(lines, 5) == [
        SmokePrompt("Capital of France?", "Paris."),
        SmokePrompt("Capital of Japan?", "Tokyo."),
    ]


def test_text_prompt_without_completion_has_no_expected_answer() -> None:
    lines = [line({"prompt": "Say hi", "completion": ""}), line({"prompt": "Say bye"})]

    assert prompts_from_lines(lines, 5) == [SmokePrompt("Say hi"), SmokePrompt("Say bye")]


def test_chat_prompts_send_all_but_the_last_assistant_turn() -> None:
    record = {
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris. 🇫🇷", "weight": 1},
        ]
    }

    [prompt] = prompts_from_lines([line(record)], 1)

    assert prompt.prompt == "Capital of France?"
    assert prompt.expected == "Paris. 🇫🇷"
    assert prompt.messages == (
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Capital of France?"},
    )


def test_bom_crlf_and_newlines_inside_strings_are_fine() -> None:
    first = b"\xef\xbb\xbf" + line({"prompt": "a\r\nb", "completion": "c"}) + b"\r\n"
    second = line({"prompt": "d", "completion": "e"}) + b"\r\n"

    assert prompts_from_lines([first, second], 5) == [
        SmokePrompt("a\r\nb", "c"),
        SmokePrompt("d", "e"),
    ]


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"   \r\n",
        b"{not json",
        b"\xff\xfe invalid utf-8",
        b"[1, 2]",
        b'"a string"',
        line({"prompt": "", "completion": "x"}),
        line({"prompt": "   ", "completion": "x"}),
        line({"prompt": 42, "completion": "x"}),
        line({"completion": "orphan"}),
        line({"other": "fields"}),
        line({"messages": "not a list"}),
        line({"messages": []}),
        line({"messages": [{"role": "user", "content": "only a question"}]}),
        line({"messages": [{"role": "assistant", "content": "no user turn"}] * 2}),
        line(
            {
                "messages": [
                    {"role": "user", "content": "ends with the user"},
                    {"role": "assistant", "content": "a"},
                    {"role": "user", "content": "b"},
                ]
            }
        ),
        line({"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]}),
        line({"messages": [{"role": "user", "content": "q"}, "not an object"]}),
        line({"messages": [{"role": "user", "content": ["parts"]}, {"role": "assistant"}]}),
        line(
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}
        ),
    ],
)
def test_unusable_lines_are_skipped(junk: bytes) -> None:
    good = line({"prompt": "Capital of Peru?", "completion": "Lima."})

    assert prompts_from_lines([junk, good], 3) == [SmokePrompt("Capital of Peru?", "Lima.")]


def test_reading_stops_at_count() -> None:
    consumed: list[int] = []

    def lines() -> Any:
        for i in range(1000):
            consumed.append(i)
            yield line({"prompt": f"p{i}", "completion": f"c{i}"})

    prompts = prompts_from_lines(lines(), 3)

    assert [p.prompt for p in prompts] == ["p0", "p1", "p2"]
    assert len(consumed) == 3  # a lazy stream is not read further


def test_fewer_usable_lines_than_count_and_zero_count() -> None:
    lines = [line({"prompt": "p", "completion": "c"}), b"junk"]

    assert len(prompts_from_lines(lines, 10)) == 1
    assert prompts_from_lines(lines, 0) == []
    assert prompts_from_lines([], 3) == []


# --- judge --------------------------------------------------------------------------


def test_a_good_answer_passes_with_its_similarity() -> None:
    prompt = SmokePrompt("Capital of France?", "Paris is the capital of France.")

    result = judge(prompt, ok("Paris is the capital of France."), SmokeCriteria(min_similarity=0.8))

    assert result.passed
    assert result.reason == "passed"
    assert result.similarity == 1.0
    assert result.status == 200
    assert result.usage == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    assert result.answer == "Paris is the capital of France."


def test_similarity_is_reported_even_when_not_checked() -> None:
    result = judge(SmokePrompt("q", "Lima"), ok("Tokyo"), SmokeCriteria())

    assert result.passed
    assert result.similarity == 0.0


def test_without_expected_answer_similarity_is_not_checked() -> None:
    result = judge(SmokePrompt("q"), ok("anything"), SmokeCriteria(min_similarity=0.9))

    assert result.passed
    assert result.similarity is None


def test_http_error_fails_with_the_status_and_error_excerpt() -> None:
    answer = Answer(500, "", 40.0, {}, '{"error": {"message": "Injected scoring fault."}}')

    result = judge(SmokePrompt("q", "a"), answer, SmokeCriteria(min_similarity=0.5))

    assert not result.passed
    assert result.reason == 'HTTP 500: {"error": {"message": "Injected scoring fault."}}'
    assert result.similarity is None  # no answer to compare


def test_http_error_without_body_names_the_status() -> None:
    assert judge(SmokePrompt("q"), Answer(503, "", 1.0, {}), SmokeCriteria()).reason == "HTTP 503"


def test_long_error_bodies_are_excerpted_visibly() -> None:
    answer = Answer(502, "", 1.0, {}, "x" * 1000)

    reason = judge(SmokePrompt("q"), answer, SmokeCriteria()).reason

    assert reason.startswith("HTTP 502: xxx")
    assert reason.endswith("…(+800 chars)")


def test_no_response_fails_with_the_error() -> None:
    answer = Answer(0, "", 30000.0, {}, "timed out after 30s")

    result = judge(SmokePrompt("q"), answer, SmokeCriteria())

    assert not result.passed
    assert result.reason == "no response: timed out after 30s"
    assert result.status == 0


def test_empty_answer_fails() -> None:
    for text in ("", "  \n "):
        result = judge(SmokePrompt("q"), ok(text), SmokeCriteria())
        assert not result.passed
        assert result.reason == "empty answer"


def test_empty_answer_passes_when_text_is_not_required() -> None:
    assert judge(SmokePrompt("q"), ok(""), SmokeCriteria(require_text=False)).passed


def test_slow_answer_fails_on_latency() -> None:
    result = judge(SmokePrompt("q"), ok(latency_ms=1500.4), SmokeCriteria(max_latency_ms=1000))

    assert not result.passed
    assert result.reason == "latency 1500 ms over the 1000 ms limit"


def test_latency_at_the_limit_passes() -> None:
    assert judge(SmokePrompt("q"), ok(latency_ms=1000), SmokeCriteria(max_latency_ms=1000)).passed


def test_dissimilar_answer_fails_below_the_threshold() -> None:
    prompt = SmokePrompt("Capital of France?", "Paris is the capital of France.")

    result = judge(prompt, ok("I like turtles."), SmokeCriteria(min_similarity=0.5))

    assert not result.passed
    assert result.reason == "similarity 0.00 to the expected answer below 0.50"
    assert result.similarity == 0.0


def test_every_failure_of_a_200_answer_is_listed() -> None:
    criteria = SmokeCriteria(max_latency_ms=10, min_similarity=0.5)

    result = judge(SmokePrompt("q", "expected words"), ok("", latency_ms=50), criteria)

    assert result.reason == (
        "empty answer; latency 50 ms over the 10 ms limit; "
        "similarity 0.00 to the expected answer below 0.50"
    )


def test_unusable_200_answer_fails() -> None:
    answer = Answer(200, "", 5.0, {}, "the answer is not JSON: <html>")

    result = judge(SmokePrompt("q"), answer, SmokeCriteria(require_text=False))

    assert not result.passed
    assert result.reason == "unusable answer: the answer is not JSON: <html>"


def test_long_texts_are_clipped_with_a_visible_marker() -> None:
    long_prompt, long_answer = "p" * 600, "a" * (KEEP_CHARS + 1)
    prompt = SmokePrompt(long_prompt, "e" * 2000)

    result = judge(prompt, ok(long_answer), SmokeCriteria())

    assert result.prompt == "p" * KEEP_CHARS + "…(+100 chars)"
    assert result.answer == "a" * KEEP_CHARS + "…(+1 chars)"
    assert result.expected == "e" * KEEP_CHARS + "…(+1500 chars)"


def test_similarity_is_computed_on_the_full_texts() -> None:
    expected = "word " * 300 + "end"
    result = judge(SmokePrompt("q", expected), ok(expected), SmokeCriteria(min_similarity=1.0))

    assert result.passed
    assert result.similarity == 1.0
    assert result.expected is not None and "…(+" in result.expected


def test_clip_keeps_short_texts_whole() -> None:
    assert clip("x" * KEEP_CHARS) == "x" * KEEP_CHARS
    assert clip("") == ""
    assert clip("abcdef", 3) == "abc…(+3 chars)"


def test_result_to_dict_is_json_ready() -> None:
    result = judge(SmokePrompt("q", "Paris"), ok("Paris", latency_ms=12.345), SmokeCriteria())

    data = result.to_dict()

    assert json.loads(json.dumps(data)) == data
    assert data == {
        "prompt": "q",
        "answer": "Paris",
        "expected": "Paris",
        "status": 200,
        "latency_ms": 12.3,
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
        "similarity": 1.0,
        "passed": True,
        "reason": "passed",
    }


# --- conclude -----------------------------------------------------------------------


def result(passed: bool, reason: str = "passed") -> PromptResult:
    return PromptResult("q", "a", None, 200, 1.0, {}, None, passed, reason)


def test_all_passed_passes() -> None:
    outcome = conclude([result(True), result(True)])

    assert outcome.passed
    assert outcome.reason == "all 2 prompts passed"
    assert len(outcome.results) == 2


def test_no_results_fail() -> None:
    outcome = conclude([])

    assert not outcome.passed
    assert outcome.reason == "no prompt was scored"


def test_the_first_failure_is_named() -> None:
    outcome = conclude(
        [result(True), result(False, "HTTP 500: boom"), result(False, "empty answer")]
    )

    assert not outcome.passed
    assert outcome.reason == "prompt 2 of 3: HTTP 500: boom"
    assert [r.passed for r in outcome.results] == [True, False, False]


def test_outcome_to_dict() -> None:
    outcome = conclude([judge(SmokePrompt("q"), Answer(500, "", 3.0, {}), SmokeCriteria())])

    data = outcome.to_dict()

    assert json.loads(json.dumps(data)) == data
    assert data["passed"] is False
    assert data["reason"] == "prompt 1 of 1: HTTP 500"
    assert data["results"][0]["status"] == 500


# --- the HTTP adapter's request and answer shapes (no server needed) ----------------


def target(route: str = "/completions") -> ScoringTarget:
    return ScoringTarget(URI, "key", "green", route=route, max_tokens=64)


def test_completion_request_body() -> None:
    body = request_body(target(), SmokePrompt("Capital of France?"))

    assert body == {"prompt": "Capital of France?", "temperature": 0, "max_tokens": 64}


def test_chat_request_body_sends_the_messages() -> None:
    messages = ({"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"})

    body = request_body(target("/v1/chat/completions"), SmokePrompt("Hi", None, messages))

    assert body == {"messages": list(messages), "temperature": 0, "max_tokens": 64}


def test_chat_request_body_without_messages_sends_the_prompt_as_a_user_turn() -> None:
    body = request_body(target("/v1/chat/completions"), SmokePrompt("Hi"))

    assert body["messages"] == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    ("body", "chat", "text"),
    [
        ({"choices": [{"text": "Paris"}]}, False, "Paris"),
        ({"choices": [{"message": {"role": "assistant", "content": "Lima"}}]}, True, "Lima"),
        ({"choices": [{"text": ""}]}, False, ""),
        ({"choices": [{"text": "as text"}]}, True, "as text"),  # images differ: accepted
        ({"choices": [{"message": {"content": "as chat"}}]}, False, "as chat"),
        ({"choices": []}, False, None),
        ({"choices": [{"text": None}]}, False, None),
        ({"choices": ["Paris"]}, False, None),
        ({"output": "Paris"}, False, None),
        (["Paris"], False, None),
        ("Paris", False, None),
    ],
)
def test_answer_text(body: Any, chat: bool, text: str | None) -> None:
    assert answer_text(body, chat=chat) == text


def test_score_route_sends_the_mlflow_input_data_shape() -> None:
    body = request_body(target("/score"), SmokePrompt("Capital of France?"))

    assert body == {
        "input_data": {
            "input_string": ["Capital of France?"],
            "parameters": {"max_new_tokens": 64, "do_sample": False},
        }
    }


def test_score_route_sends_a_chat_model_its_conversation() -> None:
    messages = ({"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"})
    chat = ScoringTarget(URI, "key", "green", route="/score", max_tokens=8, chat=True)

    body = request_body(chat, SmokePrompt("Hi", None, messages))

    assert body["input_data"]["input_string"] == [dict(m) for m in messages]


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ([{"0": "Paris"}], "Paris"),
        (["Paris"], "Paris"),
        ({"output": "Lima"}, "Lima"),
        ([], None),
        ([{"1": "Paris"}], None),
        ({"choices": [{"text": "Paris"}]}, None),  # the OpenAI shape is not MLflow's
        ("Paris", None),
    ],
)
def test_mlflow_text(body: Any, text: str | None) -> None:
    assert mlflow_text(body) == text


def test_unreachable_endpoint_is_an_answer_not_an_exception() -> None:
    unreachable = ScoringTarget(f"http://127.0.0.1:{free_port()}/score", "key", "green")

    answer = HttpScorer().score(unreachable, SmokePrompt("q"))

    assert answer.status == 0
    assert answer.text == ""
    assert answer.error.startswith("could not reach http://127.0.0.1:")
    assert not judge(SmokePrompt("q"), answer, SmokeCriteria()).passed


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A scoring URI whose server accepts connections and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)  # connections complete in the backlog; nothing reads them
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/score"


def test_no_answer_within_the_timeout_is_an_answer_not_an_exception(silent_server: str) -> None:
    target = ScoringTarget(silent_server, "key", "green", timeout_seconds=0.2)

    answer = HttpScorer().score(target, SmokePrompt("q"))

    assert answer.status == 0
    assert answer.error == "timed out after 0.2s"
    assert answer.latency_ms >= 200
    assert judge(SmokePrompt("q"), answer, SmokeCriteria()).reason == (
        "no response: timed out after 0.2s"
    )
