"""Judging a new deployment (the challenger) against the live one (the champion).

Pure: no I/O, no Azure imports. After its smoke test passes, a run's deployment
and the deployment serving before it answer the same held-out examples (the
``eval set``: the ``EVAL_EXAMPLES`` lines of the run's validation split with
the smallest line hash, :func:`eval_set`). Each answer is scored against the
example's reference with ROUGE-L F and exact match (:func:`score`); the
pipeline keeps the scores on the run as a *progress* record (a JSON object,
below) until every answer is in, then :func:`judge` gives the verdict.

Metrics:

- **ROUGE-L F** (:func:`rouge_l`) equals ``rouge_score``'s
  ``RougeScorer(["rougeL"], use_stemmer=False)`` (the library Azure ML's own
  evaluation uses): lower-case, every run of characters other than ``a-z0-9``
  is a separator, F1 of the longest common subsequence of tokens, 0 when
  either side has no token. That tokenizer drops every non-ASCII character,
  so when more than half the references have no such token
  (:func:`choose_tokenizer`) the Unicode tokenizer is used instead (NFKC,
  case-folded ``\\w+`` runs) and the record says ``"rouge_tokenizer":
  "unicode"``: those numbers are not comparable with Azure ML's.
- **Exact match** (:func:`exact_match`): 1 when both texts are equal after
  NFKC, case folding and collapsing whitespace (stripped), else 0.

Verdict (:func:`judge`), with the deltas ``challenger - champion`` per example:

- the challenger failing to answer more than ``max_error_fraction`` of the
  examples rolls back; a challenger error scores 0 otherwise;
- with a champion that answered: fewer than ``min_examples`` examples roll
  back ("too few examples to judge"); else a paired bootstrap
  (:func:`paired_bootstrap`, ``RESAMPLES`` resamples seeded from the run id)
  gives a 95% interval of the mean delta, and the challenger is promoted iff
  its lower bound is at least ``-margin`` (a one-sided 97.5% non-inferiority
  test). Examples the champion failed are left out of the pairs;
- the first model on an endpoint, or one whose champion failed more than
  ``max_error_fraction`` of the examples (recorded as ``failed``), is promoted
  iff its mean ROUGE-L is at least ``floor``.

Progress record (``Run.evaluation`` while EVALUATING; the verdict adds to it)::

    {"status": "scoring", "metric": "rouge_l_f", "rouge_tokenizer", "examples", "seed",
     "challenger": {"deployment"}, "champion": {"deployment", "model"} or {},
     "results": [{"key", "prompt", "expected",
                  "challenger": ANSWER, "champion": ANSWER}]}

where an ANSWER is final once it has ``rouge_l`` (an error scores 0 and keeps
its ``error``); a throttled one holds only ``tries``, ``status``, ``error``
and ``retry_after`` until it is tried again.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared.domain.smoke import SmokePrompt, prompt_from_line

METRIC = "rouge_l_f"
RESAMPLES = 2000
CONFIDENCE = 0.95
KEEP_CHARS = 300  # longest prompt/answer/reference text kept per example
ROUGE_SCORE = "rouge_score"
UNICODE = "unicode"
SIDES = ("challenger", "champion")

_NON_ALPHANUM = re.compile(r"[^a-z0-9]+")
_SPACES = re.compile(r"\s+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Criteria:
    """What a challenger must show (settings ``EVAL_*``)."""

    margin: float = 0.02
    floor: float = 0.2
    min_examples: int = 20
    max_error_fraction: float = 0.1
    resamples: int = RESAMPLES


@dataclass(frozen=True)
class Example:
    key: str
    """Hex of the line's 8-byte blake2b digest: orders the eval set, names the example."""
    prompt: SmokePrompt
    """What is sent; ``expected`` is the reference (for chat: the last assistant turn)."""


# -- metrics ------------------------------------------------------------------------------


def rouge_tokens(text: str) -> list[str]:
    """``rouge_score.tokenize.tokenize(text, None)``: lower-cased ``[a-z0-9]+`` runs."""
    spaced = _NON_ALPHANUM.sub(" ", text.lower())
    return [token for token in _SPACES.split(spaced) if _VALID_TOKEN.match(token)]


def unicode_tokens(text: str) -> list[str]:
    """Words in any script: ``\\w+`` runs of the NFKC-normalised, case-folded text."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def choose_tokenizer(references: Sequence[str]) -> str:
    """``"rouge_score"``, unless more than half the references have no ROUGE token
    (non-English text, which that tokenizer drops): then ``"unicode"``."""
    empty = sum(1 for reference in references if not rouge_tokens(reference))
    return UNICODE if references and empty * 2 > len(references) else ROUGE_SCORE


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists."""
    if len(b) > len(a):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(
                previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1])
            )
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str, tokenizer: str = ROUGE_SCORE) -> float:
    """ROUGE-L F of ``prediction`` against ``reference``, computed as ``rouge_score`` does."""
    tokens = unicode_tokens if tokenizer == UNICODE else rouge_tokens
    predicted, target = tokens(prediction), tokens(reference)
    if not predicted or not target:
        return 0.0
    common = lcs_length(target, predicted)
    precision = common / len(predicted)
    recall = common / len(target)
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def _normalised(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def exact_match(prediction: str, reference: str) -> int:
    """1 if the texts are equal after NFKC, case folding and whitespace collapsing."""
    return int(_normalised(prediction) == _normalised(reference))


# -- the eval set --------------------------------------------------------------------------


def line_key(line: bytes) -> str:
    """The 8-byte blake2b digest of a line without its line end, as hex (the same digest
    as the train/validation split, so the eval set is the same lines in every upload)."""
    return hashlib.blake2b(line.rstrip(b"\r\n"), digest_size=8).hexdigest()


def eval_set(
    lines: Iterable[bytes],
    count: int,
    prompt_field: str = "prompt",
    completion_field: str = "completion",
) -> list[Example]:
    """The ``count`` usable examples with a reference whose lines hash smallest, in
    hash order: deterministic, one streaming pass in memory for ``count`` examples,
    unbiased even for a sorted file. Repeated lines count once."""
    if count <= 0:
        return []
    heap: list[tuple[int, str, SmokePrompt]] = []  # a max-heap by hash (negated)
    seen: set[str] = set()
    for line in lines:
        key = line_key(line)
        rank = int(key, 16)
        if key in seen or (len(heap) >= count and -heap[0][0] <= rank):
            continue
        prompt = prompt_from_line(line, prompt_field, completion_field)
        if prompt is None or prompt.expected is None:
            continue
        seen.add(key)
        heapq.heappush(heap, (-rank, key, prompt))
        if len(heap) > count:
            heapq.heappop(heap)
    return [Example(key, prompt) for _, key, prompt in sorted(heap, reverse=True)]


# -- scoring one answer ----------------------------------------------------------------------


def clip(text: str, limit: int = KEEP_CHARS) -> str:
    """``text``, or its first ``limit`` characters and a ``…(+N chars)`` marker."""
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"


def score(answer: str, reference: str, tokenizer: str, *, error: str = "") -> dict[str, Any]:
    """A final ANSWER entry: the answer (clipped) and its scores; an error scores 0."""
    if error:
        return {"rouge_l": 0.0, "exact_match": 0, "answer": clip(answer), "error": error}
    return {
        "rouge_l": round(rouge_l(answer, reference, tokenizer), 6),
        "exact_match": exact_match(answer, reference),
        "answer": clip(answer),
        "error": "",
    }


def is_final(entry: Mapping[str, Any] | None) -> bool:
    return entry is not None and "rouge_l" in entry


def complete(progress: Mapping[str, Any]) -> bool:
    """Every example answered (or given up on) by every side being compared."""
    sides = [side for side in SIDES if side == "challenger" or progress.get("champion")]
    return all(is_final(r.get(side)) for r in progress.get("results", ()) for side in sides)


def answered(progress: Mapping[str, Any]) -> tuple[int, int]:
    """(final answers, answers wanted) so far."""
    sides = [side for side in SIDES if side == "challenger" or progress.get("champion")]
    results = progress.get("results", ())
    done = sum(1 for r in results for side in sides if is_final(r.get(side)))
    return done, len(results) * len(sides)


# -- statistics --------------------------------------------------------------------------------


def seed_for(run_id: str) -> int:
    """The bootstrap seed of a run: the first 8 bytes of blake2b(run id), an integer."""
    return int.from_bytes(hashlib.blake2b(run_id.encode(), digest_size=8).digest(), "big")


def paired_bootstrap(
    deltas: Sequence[float],
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``deltas`` (resampled with
    replacement ``resamples`` times with ``random.Random(seed)``)."""
    if not deltas:
        raise ValueError("no deltas to resample")
    rng = random.Random(seed)
    n = len(deltas)
    means = sorted(sum(rng.choices(deltas, k=n)) / n for _ in range(resamples))
    tail = (1.0 - confidence) / 2
    low = means[int(tail * resamples)]
    high = means[min(resamples - 1, int((1.0 - tail) * resamples))]
    return low, high


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _side_summary(progress: Mapping[str, Any], side: str) -> dict[str, Any]:
    entries = [r[side] for r in progress.get("results", ()) if is_final(r.get(side))]
    errors = [e for e in entries if e.get("error")]
    return {
        **progress.get(side, {}),
        "rouge_l": round(_mean([float(e["rouge_l"]) for e in entries]), 4),
        "exact_match": round(_mean([float(e["exact_match"]) for e in entries]), 4),
        "errors": len(errors),
        **({"first_error": errors[0]["error"]} if errors else {}),
    }


def judge(progress: Mapping[str, Any], criteria: Criteria) -> dict[str, Any]:
    """The verdict on a complete progress record: the record with the two summaries,
    the delta and its interval (when compared), ``judged_by`` (``champion`` or
    ``floor``), ``verdict`` (``promote`` or ``roll_back``) and a ``reason``."""
    results = list(progress.get("results", ()))
    n = len(results)
    challenger = _side_summary(progress, "challenger")
    record: dict[str, Any] = {
        **{k: v for k, v in progress.items() if k != "retry_after"},
        "status": "judged",
        "margin": criteria.margin,
        "floor": criteria.floor,
        "resamples": criteria.resamples,
        "challenger": challenger,
        "delta": None,
        "ci": None,
    }
    if n == 0:
        return _verdict(record, False, "floor", "no example with a reference to evaluate on")
    if challenger["errors"] > criteria.max_error_fraction * n:
        why = (
            f"the challenger failed {challenger['errors']} of {n} examples: "
            f"{challenger['first_error']}"
        )
        return _verdict(record, False, "floor", why)
    champion: dict[str, Any] = {}
    if progress.get("champion"):
        champion = _side_summary(progress, "champion")
        if champion["errors"] > criteria.max_error_fraction * n:
            champion["failed"] = f"{champion['errors']} of {n}: {champion['first_error']}"
        record["champion"] = champion
    if not champion or "failed" in champion:
        passed = challenger["rouge_l"] >= criteria.floor
        whose = (
            f"champion {champion['deployment']} failed ({champion['failed']}); "
            if champion
            else "first model on the endpoint; "
        )
        comparison = "at least" if passed else "below"
        why = (
            f"{whose}challenger ROUGE-L {challenger['rouge_l']:.2f} {comparison} the floor "
            f"{criteria.floor:.2f} (EVAL_FLOOR_ROUGE_L)"
        )
        return _verdict(record, passed, "floor", why)
    if n < criteria.min_examples:
        why = f"too few examples to judge: {n} (EVAL_MIN_EXAMPLES={criteria.min_examples})"
        return _verdict(record, False, "champion", why)
    deltas = [
        float(r["challenger"]["rouge_l"]) - float(r["champion"]["rouge_l"])
        for r in results
        if not r["champion"].get("error")
    ]
    low, high = paired_bootstrap(deltas, int(progress.get("seed", 0)), criteria.resamples)
    delta = _mean(deltas)
    record.update(delta=round(delta, 4), ci=[round(low, 4), round(high, 4)])
    passed = low >= -criteria.margin
    why = (
        f"challenger {challenger['rouge_l']:.2f} vs champion {champion['rouge_l']:.2f}, "
        f"delta {delta:+.2f} [{low:.2f}, {high:.2f}]"
        + ("" if passed else f": worse by more than the margin {criteria.margin:.2f}")
    )
    return _verdict(record, passed, "champion", why)


def _verdict(record: dict[str, Any], promote: bool, judged_by: str, reason: str) -> dict[str, Any]:
    record.update(
        verdict="promote" if promote else "roll_back",
        judged_by=judged_by,
        reason=f"{reason}: {'promoted' if promote else 'rolled back'}",
    )
    return record


def for_event(evaluation: Mapping[str, Any]) -> dict[str, Any]:
    """The record without texts: per-example ``[challenger, champion]`` ROUGE-L pairs."""
    if not evaluation:
        return {}
    pairs = [
        [
            (r.get("challenger") or {}).get("rouge_l"),
            (r.get("champion") or {}).get("rouge_l"),
        ]
        for r in evaluation.get("results", ())
    ]
    return {**{k: v for k, v in evaluation.items() if k != "results"}, "results": pairs}
