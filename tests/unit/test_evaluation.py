"""The evaluation gate's pure parts: metrics, the eval set, the bootstrap, the verdict."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from shared.domain import evaluation as ev
from shared.domain.evaluation import Criteria, judge

# -- ROUGE-L: the literals of the design note, and rouge_score itself ----------------------


def test_rouge_l_literal_values() -> None:
    # docs/design/issue-11-research.md section 2, checked against rouge-score 0.1.2.
    assert ev.rouge_l("the cat was on the mat", "The cat sat on the mat.") == pytest.approx(5 / 6)
    assert ev.rouge_l(
        "Rachel and Edward meet at 2 pm", "Edward and Rachel will meet at 2pm."
    ) == pytest.approx(0.428571, abs=1e-6)
    assert ev.rouge_l("", "anything") == 0.0
    assert ev.rouge_l("same words", "Same, words!") == 1.0


def test_rouge_l_equals_rouge_score_on_random_pairs() -> None:
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")  # dev dependency
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    words = ["the", "a", "cat", "dog", "Mat", "sat", "2pm", "2", "pm", "Édouard", "東京"]
    words += ["don't", "e-mail", "x1", "X1", "İstanbul", "ß"]
    rng = random.Random(11)
    for _ in range(2000):
        reference = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        prediction = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        expected = scorer.score(reference, prediction)["rougeL"].fmeasure
        assert ev.rouge_l(prediction, reference) == expected, (prediction, reference)


def test_non_ascii_references_switch_to_the_unicode_tokenizer() -> None:
    # rouge_score's tokenizer drops every non-ASCII character: both models would score 0.
    assert ev.rouge_l("東京 は 大きい", "東京 は 大きい") == 0.0
    assert ev.rouge_l("東京 は 大きい", "東京 は 大きい", ev.UNICODE) == 1.0
    assert ev.choose_tokenizer(["東京 は 大きい", "Ωμέγα", "plain English"]) == ev.UNICODE
    assert ev.choose_tokenizer(["東京 は 大きい", "plain English"]) == ev.ROUGE_SCORE


def test_exact_match_ignores_case_width_and_spacing_only() -> None:
    assert ev.exact_match("  Edward and  Rachel\nwill meet. ", "edward and rachel will meet.") == 1
    assert ev.exact_match("\uff21\uff22\uff23", "abc") == 1  # NFKC: full-width letters
    assert ev.exact_match("Edward and Rachel will meet", "Edward and Rachel will meet.") == 0


# -- the eval set --------------------------------------------------------------------------


def _line(i: int) -> bytes:
    return json.dumps({"prompt": f"p{i}", "completion": f"c{i}"}).encode() + b"\n"


def test_the_eval_set_is_the_smallest_line_hashes_whatever_the_order() -> None:
    lines = [_line(i) for i in range(40)]
    picked = ev.eval_set(lines, 5)
    keys = sorted(ev.line_key(line) for line in lines)[:5]
    assert [e.key for e in picked] == keys
    assert ev.eval_set(list(reversed(lines)), 5) == picked
    # A superset of the file keeps every example that still ranks in the smallest five.
    more = ev.eval_set([*lines, *(_line(i) for i in range(40, 80))], 5)
    assert {e.key for e in more} <= {ev.line_key(line) for line in lines} | {
        ev.line_key(_line(i)) for i in range(40, 80)
    }
    assert (
        picked[0].prompt.expected
        == json.loads(next(line for line in lines if ev.line_key(line) == keys[0]))["completion"]
    )


def test_the_eval_set_skips_lines_without_a_reference_and_repeats() -> None:
    no_reference = json.dumps({"prompt": "only a prompt"}).encode()
    lines = [no_reference, b"not json", _line(1), _line(1), _line(2)]
    assert [e.prompt.prompt for e in ev.eval_set(lines, 10)] in (["p1", "p2"], ["p2", "p1"])
    assert len(ev.eval_set(lines, 10)) == 2
    assert ev.eval_set(lines, 0) == []


def test_a_chat_example_is_judged_on_its_final_assistant_turn() -> None:
    chat = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Summarize."},
            {"role": "assistant", "content": "A summary."},
        ]
    }
    (example,) = ev.eval_set([json.dumps(chat).encode()], 3)
    assert example.prompt.expected == "A summary."
    assert [m["content"] for m in example.prompt.messages] == ["Hi", "Hello.", "Summarize."]


# -- the bootstrap -------------------------------------------------------------------------


def test_the_paired_bootstrap_is_seeded() -> None:
    deltas = [0.25, -0.5, 0.75, 0.0, 0.5, 0.125, -0.25, 0.375]
    assert ev.paired_bootstrap(deltas, 42) == (-0.109375, 0.40625)
    assert ev.paired_bootstrap(deltas, 42) == ev.paired_bootstrap(deltas, 42)
    assert ev.paired_bootstrap([0.1] * 5, 1) == pytest.approx((0.1, 0.1))
    # The seed is the first 8 bytes of blake2b(run id).
    assert ev.seed_for("ft-x") == 9866121286504720600


# -- the verdict ---------------------------------------------------------------------------


def _entry(rouge: float, error: str = "") -> dict[str, Any]:
    return {"rouge_l": 0.0 if error else rouge, "exact_match": 0, "answer": "", "error": error}


def _progress(
    challenger: list[float], champion: list[float] | None, errors: dict[int, str] | None = None
) -> dict[str, Any]:
    errors = errors or {}
    results = []
    for i, score in enumerate(challenger):
        result: dict[str, Any] = {"key": f"{i:016x}", "challenger": _entry(score)}
        if champion is not None:
            result["champion"] = _entry(champion[i], errors.get(i, ""))
        results.append(result)
    return {
        "status": "scoring",
        "rouge_tokenizer": ev.ROUGE_SCORE,
        "examples": len(results),
        "seed": 7,
        "challenger": {"deployment": "new"},
        "champion": {} if champion is None else {"deployment": "old", "model": "m:1"},
        "results": results,
    }


CRITERIA = Criteria(margin=0.02, floor=0.5, min_examples=20)


def test_a_better_challenger_is_promoted_with_both_scores_and_the_interval() -> None:
    rng = random.Random(3)
    champion = [rng.uniform(0.5, 0.8) for _ in range(30)]
    challenger = [c + rng.uniform(0.0, 0.2) for c in champion]
    record = judge(_progress(challenger, champion), CRITERIA)
    assert record["verdict"] == "promote" and record["judged_by"] == "champion"
    low, high = record["ci"]
    assert 0 < low <= record["delta"] <= high
    assert record["challenger"]["rouge_l"] > record["champion"]["rouge_l"]
    assert record["champion"]["deployment"] == "old" and record["champion"]["model"] == "m:1"


def test_a_worse_challenger_is_rolled_back_saying_by_how_much() -> None:
    champion = [0.8] * 25
    challenger = [0.6 + (i % 3) * 0.01 for i in range(25)]
    record = judge(_progress(challenger, champion), CRITERIA)
    assert record["verdict"] == "roll_back"
    assert record["ci"][1] < -0.02
    assert "worse by more than the margin 0.02" in record["reason"]
    assert record["reason"].startswith("challenger 0.61 vs champion 0.80, delta -0.19")


def test_a_challenger_within_the_margin_is_promoted() -> None:
    champion = [0.8] * 25
    challenger = [0.79] * 25
    record = judge(_progress(challenger, champion), CRITERIA)
    assert record["verdict"] == "promote" and record["ci"] == [-0.01, -0.01]


def test_too_few_examples_to_compare_roll_back() -> None:
    record = judge(_progress([0.9] * 5, [0.5] * 5), CRITERIA)
    assert record["verdict"] == "roll_back" and "too few examples" in record["reason"]


def test_the_first_model_is_judged_against_the_floor() -> None:
    assert judge(_progress([0.6] * 5, None), CRITERIA)["verdict"] == "promote"
    below = judge(_progress([0.37] * 30, None), CRITERIA)
    assert below["verdict"] == "roll_back" and below["judged_by"] == "floor"
    assert "challenger ROUGE-L 0.37 below the floor 0.50" in below["reason"]


def test_a_failing_champion_is_recorded_and_the_challenger_judged_by_the_floor() -> None:
    errors = {i: "HTTP 500: Injected scoring fault." for i in range(10)}
    record = judge(_progress([0.7] * 25, [0.9] * 25, errors), CRITERIA)
    assert record["verdict"] == "promote" and record["judged_by"] == "floor"
    assert record["champion"]["failed"] == "10 of 25: HTTP 500: Injected scoring fault."
    # A few champion errors are left out of the pairs instead (not counted for the challenger).
    few = judge(_progress([0.7] * 25, [0.7] * 25, {0: "HTTP 500"}), CRITERIA)
    assert few["judged_by"] == "champion" and few["delta"] == 0.0


def test_a_challenger_that_fails_to_answer_is_rolled_back() -> None:
    progress = _progress([0.9] * 25, None)
    for result in progress["results"][:3]:
        result["challenger"] = _entry(0, "no response: timed out after 60s")
    record = judge(progress, CRITERIA)
    assert record["verdict"] == "roll_back"
    assert "failed 3 of 25 examples: no response: timed out" in record["reason"]


def test_progress_is_complete_once_every_side_is_final() -> None:
    progress = _progress([0.5, 0.5], [0.5, 0.5])
    assert ev.complete(progress) and ev.answered(progress) == (4, 4)
    progress["results"][1]["champion"] = {"tries": 1, "status": 429, "retry_after": 2}
    assert not ev.complete(progress) and ev.answered(progress) == (3, 4)


def test_the_event_carries_score_pairs_not_texts() -> None:
    record = judge(_progress([0.6, 0.7], None), CRITERIA)
    data = ev.for_event(record)
    assert data["results"] == [[0.6, None], [0.7, None]]
    assert data["verdict"] == "promote" and "prompt" not in json.dumps(data)
