"""Smoke testing a new deployment: what to send, how to judge the answers.

Pure: no I/O, no Azure imports. The reconciler picks a few prompts from the
run's validation split (:func:`prompts_from_lines`), a :class:`Scorer` (the
``HttpScorer`` adapter in production) sends each one to the new deployment in
isolation (the ``azureml-model-deployment`` header reaches it at 0% traffic),
:func:`judge` checks every answer against :class:`SmokeCriteria`, and
:func:`conclude` turns the results into one verdict for the run.

Invariants:

- a scorer never raises for what the service does (HTTP errors, timeouts, bad
  JSON): it returns an :class:`Answer` whose ``status``/``error`` say what
  happened, so a failed smoke test is a verdict, not an exception;
- a verdict passes only if at least one prompt was scored and every prompt
  passed; its reason names the first failure;
- texts kept in results are cut to :data:`KEEP_CHARS` characters with a
  visible ``…(+N chars)`` marker, never silently.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard
from urllib.parse import urlsplit, urlunsplit

KEEP_CHARS = 500  # longest prompt/answer/expected text kept in a result
ERROR_EXCERPT_CHARS = 200  # longest service error quoted in a failure reason
COMPLETION_ROUTES = ("/completions", "/v1/completions")
CHAT_ROUTE = "/v1/chat/completions"

_BOM = b"\xef\xbb\xbf"
_WORD = re.compile(r"\w+")
_ALT_TEXT_FIELDS = ("text", "ground_truth")


@dataclass(frozen=True)
class SmokePrompt:
    prompt: str
    """Text prompt; for chat, the last user turn's content (what a reader sees)."""
    expected: str | None = None
    """The expected completion, when known (from the validation split)."""
    messages: tuple[Mapping[str, str], ...] = ()
    """Chat: the messages to send (system and user turns); empty for text."""


@dataclass(frozen=True)
class SmokeCriteria:
    max_latency_ms: int = 30_000
    min_similarity: float = 0.0
    """0 disables the similarity check; otherwise 0..1 against ``expected``."""
    require_text: bool = True


@dataclass(frozen=True)
class ScoringTarget:
    scoring_uri: str
    """The endpoint's scoring URI (ends with ``/score``)."""
    key: str
    deployment: str
    """Sent as ``azureml-model-deployment`` so only this deployment answers."""
    route: str = "/completions"
    """``/completions``, ``/v1/completions``, ``/v1/chat/completions`` (OpenAI shape) or
    ``/score`` (MLflow ``input_data`` shape)."""
    chat: bool = False
    """Chat model: send the conversation (``messages``), not a single prompt."""
    timeout_seconds: float = 30.0
    max_tokens: int = 200


@dataclass(frozen=True)
class Answer:
    status: int
    """HTTP status; 0 when there was no response (timeout, connection error)."""
    text: str
    latency_ms: float
    usage: Mapping[str, int] = field(default_factory=dict)
    """``prompt_tokens``, ``completion_tokens``, ``total_tokens`` when given."""
    error: str = ""
    """Why there is no usable answer (HTTP body excerpt, timeout...); empty if usable."""
    retry_after: float | None = None
    """Seconds the service asked to wait (``Retry-After`` on a 429 or 503), if it did."""


class Scorer(Protocol):
    def score(self, target: ScoringTarget, prompt: SmokePrompt) -> Answer:
        """Send ``prompt`` to ``target``; never raises for what the service does."""
        ...


# -- scoring routes ---------------------------------------------------------------------


def route_url(scoring_uri: str, route: str) -> str:
    """The URL of ``route`` on the endpoint whose scoring URI is ``scoring_uri``.

    ``https://e.inference.ml.azure.com/score`` with ``/v1/completions`` gives
    ``https://e.inference.ml.azure.com/v1/completions``. A trailing slash on
    the URI and a missing leading slash on the route are tolerated; a URI that
    does not end with ``/score`` is taken as the base the route is appended to.
    A query string, if any, is kept.
    """
    parts = urlsplit(scoring_uri.strip())
    path = parts.path.rstrip("/")
    path = path.removesuffix("/score")
    suffix = "/" + route.strip().lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path + suffix, parts.query, ""))


def is_chat_route(route: str) -> bool:
    """Whether ``route`` takes ``messages`` (chat completions) rather than a ``prompt``."""
    return route.strip().rstrip("/").lower().endswith("/chat/completions")


def is_mlflow_route(route: str) -> bool:
    """Whether ``route`` is ``/score``: the MLflow ``input_data`` contract of Azure ML
    catalog containers, not the OpenAI shape."""
    return route.strip().rstrip("/").lower().endswith("/score")


def contract_of(route: str) -> str:
    """The request shape a route takes, in words, for error messages."""
    if is_mlflow_route(route):
        return "MLflow input_data shape"
    return "OpenAI chat shape" if is_chat_route(route) else "OpenAI completions shape"


# -- similarity ---------------------------------------------------------------------------


def _words(text: str) -> Counter[str]:
    normalised = unicodedata.normalize("NFKC", text).casefold()
    return Counter(_WORD.findall(normalised))


def similarity(a: str, b: str) -> float:
    """How alike two texts are, 0..1: the F1 score of their words (bag of words).

    Both texts are normalised (Unicode NFKC, case-folded) and split into words
    (runs of Unicode letters, digits and underscores; punctuation and spacing
    are ignored). With ``common`` the size of the multiset intersection,
    precision is ``common / len(words(a))``, recall ``common / len(words(b))``,
    and the score their harmonic mean, as in SQuAD's answer F1.

    Properties: deterministic; symmetric; 1.0 for texts with the same words in
    any order (word order is not compared); 0.0 when no word is shared; two
    texts without any word score 1.0, one empty and one not 0.0.
    """
    words_a, words_b = _words(a), _words(b)
    if not words_a and not words_b:
        return 1.0
    common = sum((words_a & words_b).values())
    if common == 0:
        return 0.0
    precision = common / sum(words_a.values())
    recall = common / sum(words_b.values())
    return 2 * precision * recall / (precision + recall)


# -- prompts from a validation split ----------------------------------------------------


def prompts_from_lines(
    lines: Iterable[bytes],
    count: int,
    prompt_field: str = "prompt",
    completion_field: str = "completion",
) -> list[SmokePrompt]:
    """The first ``count`` usable examples of a JSONL validation split, as prompts.

    Text records use ``prompt_field``/``completion_field``, or ``text``/``ground_truth``
    (Azure's samples); a record with a prompt and no completion is usable, with
    no expected answer. Chat records (``messages``) send every message but the
    last assistant turn, which is the expected answer; the prompt shown is the
    last user turn. Unusable lines (blank, not UTF-8, not a JSON object, missing
    or empty fields, a conversation not ending with an assistant turn) are
    skipped. Reading stops once ``count`` prompts are found, so ``lines`` may be
    a lazy stream of a large blob. A UTF-8 BOM and CRLF line ends are fine.
    """
    prompts: list[SmokePrompt] = []
    if count <= 0:
        return prompts
    for line in lines:
        prompt = prompt_from_line(line, prompt_field, completion_field)
        if prompt is None:
            continue
        prompts.append(prompt)
        if len(prompts) >= count:
            break
    return prompts


def prompt_from_line(line: bytes, prompt_field: str, completion_field: str) -> SmokePrompt | None:
    """One line of a validation split as a prompt (rules in ``prompts_from_lines``), or None."""
    try:
        record = json.loads(line.removeprefix(_BOM).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if "messages" in record:
        return _chat_prompt(record["messages"])
    for prompt_key, completion_key in ((prompt_field, completion_field), _ALT_TEXT_FIELDS):
        prompt = record.get(prompt_key)
        if _usable_text(prompt):
            completion = record.get(completion_key)
            return SmokePrompt(prompt, completion if _usable_text(completion) else None)
    return None


def _chat_prompt(messages: object) -> SmokePrompt | None:
    if not isinstance(messages, list) or len(messages) < 2:
        return None
    turns: list[dict[str, str]] = []
    for message in messages:
        if not isinstance(message, dict):
            return None
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or not isinstance(content, str):
            return None
        turns.append({"role": role, "content": content})
    *sent, last = turns
    users = [turn["content"] for turn in sent if turn["role"] == "user"]
    if last["role"] != "assistant" or not _usable_text(last["content"]) or not users:
        return None
    if not _usable_text(users[-1]):
        return None
    return SmokePrompt(users[-1], last["content"], tuple(sent))


def _usable_text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


# -- judging ------------------------------------------------------------------------------


def clip(text: str, limit: int = KEEP_CHARS) -> str:
    """``text``, or its first ``limit`` characters and a ``…(+N chars)`` marker."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit} chars)"


def _excerpt(text: str) -> str:
    return clip(" ".join(text.split()), ERROR_EXCERPT_CHARS)


@dataclass(frozen=True)
class PromptResult:
    """One prompt's answer and verdict; texts clipped with :func:`clip`."""

    prompt: str
    answer: str
    expected: str | None
    status: int
    latency_ms: float
    usage: Mapping[str, int]
    similarity: float | None
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "answer": self.answer,
            "expected": self.expected,
            "status": self.status,
            "latency_ms": round(self.latency_ms, 1),
            "usage": dict(self.usage),
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "passed": self.passed,
            "reason": self.reason,
        }


def judge(prompt: SmokePrompt, answer: Answer, criteria: SmokeCriteria) -> PromptResult:
    """The verdict on one answer.

    A non-200 status (or no response) fails on that alone, quoting the error.
    A 200 answer fails for each of: an error parsing it, empty text (when
    ``require_text``), latency over ``max_latency_ms``, similarity to the
    expected answer below ``min_similarity`` (checked only when it is above 0
    and an expected answer is known); the reason lists every failure, ``; ``
    separated. Similarity is reported whenever an expected answer is known.
    """
    failures: list[str] = []
    score: float | None = None
    if answer.status != 200:
        if answer.status == 0:
            failures.append(f"no response: {_excerpt(answer.error) or 'unknown error'}")
        else:
            detail = _excerpt(answer.error)
            failures.append(f"HTTP {answer.status}" + (f": {detail}" if detail else ""))
    else:
        if answer.error:
            failures.append(f"unusable answer: {_excerpt(answer.error)}")
        if criteria.require_text and not answer.text.strip():
            failures.append("empty answer")
        if answer.latency_ms > criteria.max_latency_ms:
            failures.append(
                f"latency {answer.latency_ms:.0f} ms over the {criteria.max_latency_ms} ms limit"
            )
        if prompt.expected is not None:
            score = similarity(answer.text, prompt.expected)
            if criteria.min_similarity > 0 and score < criteria.min_similarity:
                failures.append(
                    f"similarity {score:.2f} to the expected answer "
                    f"below {criteria.min_similarity:.2f}"
                )
    return PromptResult(
        prompt=clip(prompt.prompt),
        answer=clip(answer.text),
        expected=None if prompt.expected is None else clip(prompt.expected),
        status=answer.status,
        latency_ms=answer.latency_ms,
        usage=dict(answer.usage),
        similarity=score,
        passed=not failures,
        reason="; ".join(failures) if failures else "passed",
    )


@dataclass(frozen=True)
class SmokeOutcome:
    passed: bool
    reason: str
    results: tuple[PromptResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reason": self.reason,
            "results": [result.to_dict() for result in self.results],
        }


def conclude(results: Sequence[PromptResult]) -> SmokeOutcome:
    """One verdict: passed only if there is a result and every result passed.

    The reason names the first failure (``prompt 2 of 3: HTTP 500: ...``).
    """
    total = len(results)
    if total == 0:
        return SmokeOutcome(False, "no prompt was scored", ())
    for number, result in enumerate(results, start=1):
        if not result.passed:
            return SmokeOutcome(
                False, f"prompt {number} of {total}: {result.reason}", tuple(results)
            )
    return SmokeOutcome(True, f"all {total} prompts passed", tuple(results))
