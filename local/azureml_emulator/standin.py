"""The stand-in for training: a nearest-example model derived from the data.

Nothing is trained. The emulator reads the job's training file (JSONL, text or
chat format), keeps its (prompt, completion) pairs, and answers a prompt with
the completion of the most similar training prompt (cosine similarity of word
counts). So scoring answers honestly depend on what the job was given, and a
deployment of a model trained on other data answers differently.

A job whose data the emulator cannot reach (a datastore with no mapping, a
``wasbs://`` or ``abfss://`` path) still completes, as it would on Azure, but
its stand-in learned nothing: it answers every prompt with a note saying so.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob import BlobClient

MAX_EXAMPLES = 50_000
_WORD = re.compile(r"\w+", re.UNICODE)


class TrainingDataError(Exception):
    """The training data could not be read or holds no usable example."""


def _vector(text: str) -> Counter[str]:
    return Counter(word.lower() for word in _WORD.findall(text))


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    if not a or not b:
        return 0.0
    dot = sum(count * b[word] for word, count in a.items() if word in b)
    norm = math.sqrt(sum(c * c for c in a.values())) * math.sqrt(sum(c * c for c in b.values()))
    return dot / norm


@dataclass(frozen=True)
class StandInModel:
    task: str  # "text" or "chat"
    prompts: tuple[str, ...]
    completions: tuple[str, ...]
    truncated: bool = False
    note: str = ""  # the answer of a model that learned nothing, and why

    def answer(self, prompt: str) -> str:
        """The completion of the training example whose prompt is most like ``prompt``."""
        if not self.prompts:
            return self.note
        query = _vector(prompt)
        best, best_score = 0, -1.0
        for index, candidate in enumerate(self.prompts):
            score = _cosine(query, _vector(candidate))
            if score > best_score:
                best, best_score = index, score
        return self.completions[best]


def _example(record: object) -> tuple[str, str, str] | None:
    """``(task, prompt, completion)`` of one JSONL record, or None if unusable."""
    if not isinstance(record, dict):
        return None
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        turns = [m for m in messages if isinstance(m, dict) and isinstance(m.get("content"), str)]
        if not turns or turns[-1].get("role") != "assistant":
            return None
        prompt = "\n".join(m["content"] for m in turns[:-1] if m.get("role") != "system")
        return "chat", prompt, turns[-1]["content"]
    for prompt_key, completion_key in (("prompt", "completion"), ("text", "ground_truth")):
        text_prompt, completion = record.get(prompt_key), record.get(completion_key)
        if isinstance(text_prompt, str) and isinstance(completion, str):
            return "text", text_prompt, completion
    return None


def train(lines: Iterable[bytes]) -> StandInModel:
    """Build the stand-in model from JSONL lines; unusable lines are skipped."""
    tasks: Counter[str] = Counter()
    prompts: list[str] = []
    completions: list[str] = []
    truncated = False
    for raw in lines:
        text = raw.decode("utf-8-sig", errors="replace").strip()
        if not text:
            continue
        try:
            parsed = _example(json.loads(text))
        except ValueError:
            continue
        if parsed is None:
            continue
        if len(prompts) >= MAX_EXAMPLES:
            truncated = True
            break
        tasks[parsed[0]] += 1
        prompts.append(parsed[1])
        completions.append(parsed[2])
    if not prompts:
        raise TrainingDataError("the training data holds no usable prompt/completion example")
    return StandInModel(
        task=tasks.most_common(1)[0][0],
        prompts=tuple(prompts),
        completions=tuple(completions),
        truncated=truncated,
    )


def untrained(task: str, reason: str) -> StandInModel:
    """The stand-in of a job whose training data the emulator could not reach."""
    note = f"(untrained stand-in: {reason})"
    return StandInModel(task=task, prompts=(), completions=(), note=note)


def read_blob_lines(url: str, account_key: str) -> list[bytes]:
    """Download a training file from blob storage (Azurite or Azure) as lines.

    The account name comes from the URL, the key from the emulator's settings:
    on Azure the job's compute identity reads the data; here the emulator does.
    """
    try:
        client = BlobClient.from_blob_url(url)
        credential = AzureNamedKeyCredential(client.account_name or "", account_key)
        client = BlobClient.from_blob_url(
            url, credential=credential, retry_total=1, connection_timeout=5, read_timeout=60
        )
        data = client.download_blob().readall()
    except Exception as exc:  # any storage failure fails the job, with its reason
        raise TrainingDataError(f"could not read training data at {url}: {exc}") from exc
    return data.splitlines()
