"""The emulator's stand-in for training: answers come from the training data."""

from __future__ import annotations

import json

import pytest

from local.azureml_emulator.standin import TrainingDataError, train


def _lines(*records: object) -> list[bytes]:
    return [json.dumps(r).encode() for r in records]


def test_answers_with_the_completion_of_the_most_similar_prompt() -> None:
    model = train(
        _lines(
            {"prompt": "Edward: Rachel, what time is the meeting? Rachel: 2pm.", "completion": "A"},
            {"prompt": "Tom: Are you coming to the party tonight? Ann: Yes.", "completion": "B"},
        )
    )
    assert model.task == "text"
    assert model.answer("Rachel, at what time is the meeting") == "A"
    assert model.answer("coming to the party?") == "B"


def test_reads_azure_sample_field_names_bom_and_skips_unusable_lines() -> None:
    lines = [
        b"\xef\xbb\xbf" + json.dumps({"text": "hello there", "ground_truth": "hi"}).encode(),
        b"not json",
        b"",
        json.dumps({"prompt": 3, "completion": "x"}).encode(),
    ]
    model = train(lines)
    assert model.prompts == ("hello there",)
    assert model.answer("anything") == "hi"


def test_chat_examples_use_user_turns_as_prompt_and_last_assistant_turn_as_answer() -> None:
    model = train(
        _lines(
            {
                "messages": [
                    {"role": "system", "content": "You summarise."},
                    {"role": "user", "content": "Summarise: the cat sat on the mat"},
                    {"role": "assistant", "content": "A cat sat."},
                ]
            },
            {"messages": [{"role": "user", "content": "no answer"}]},
        )
    )
    assert model.task == "chat"
    assert model.prompts == ("Summarise: the cat sat on the mat",)
    assert model.answer("the cat") == "A cat sat."


def test_no_usable_example_is_an_error() -> None:
    with pytest.raises(TrainingDataError):
        train([b"{}", b"[1, 2]"])
