"""Scoring a deployment over HTTP with ``requests``: the ``Scorer`` port's adapter.

``online_endpoints.invoke`` only reaches ``/score`` and mutates a module-level
header dict, so the smoke test posts requests itself, in the shape the route
takes (``SMOKE_ROUTE``): the OpenAI shape on ``/completions``,
``/v1/completions`` and ``/v1/chat/completions`` (vLLM-style containers, as the
seed notebook uses), or the MLflow ``input_data`` shape on ``/score`` (the
catalog's MLflow containers: ``[{"0": text}]`` back, ``{"output": text}`` for
chat). A 404 names the route and shape tried, since that is how a mismatch
between the setting and the container shows. TLS trust
is requests' own: ``REQUESTS_CA_BUNDLE`` (how the local emulator's certificate
is trusted) is honoured because a session merges the environment's settings.

Never raises for what the service does: HTTP errors, timeouts, connection
failures and unparsable bodies all come back as an :class:`Answer` whose
``status`` and ``error`` say what happened (``status`` 0: no response); a 429
or 503 carries the ``Retry-After`` it was given, in seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import requests

from shared.domain.smoke import (
    Answer,
    ScoringTarget,
    SmokePrompt,
    contract_of,
    is_chat_route,
    is_mlflow_route,
    route_url,
)

BODY_EXCERPT_CHARS = 300  # how much of an error body an Answer keeps
USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


class HttpScorer:
    """Posts one prompt to one deployment and reports what came back."""

    def __init__(self, session: requests.Session | None = None) -> None:
        self._session = session or requests.Session()

    def score(self, target: ScoringTarget, prompt: SmokePrompt) -> Answer:
        url = route_url(target.scoring_uri, target.route)
        headers = {
            "Authorization": f"Bearer {target.key}",
            "Content-Type": "application/json",
            "azureml-model-deployment": target.deployment,
        }
        started = time.perf_counter()
        try:
            response = self._session.post(
                url,
                data=json.dumps(request_body(target, prompt)).encode("utf-8"),
                headers=headers,
                timeout=target.timeout_seconds,
            )
        except requests.Timeout:
            return Answer(
                0, "", _elapsed_ms(started), {}, f"timed out after {target.timeout_seconds:g}s"
            )
        except requests.RequestException as exc:
            return Answer(0, "", _elapsed_ms(started), {}, f"could not reach {url}: {exc}")
        latency_ms = _elapsed_ms(started)
        if response.status_code == 404:
            error = (
                f"route {target.route} ({contract_of(target.route)}) answered 404: the "
                "deployment does not serve it; set SMOKE_ROUTE to the container's route "
                "(/completions, /v1/completions, /v1/chat/completions, or /score for "
                f"MLflow containers): {_excerpt(response.text)}"
            )
            return Answer(404, "", latency_ms, {}, error)
        if response.status_code != 200:
            retry_after = (
                _retry_after(response.headers.get("Retry-After"))
                if response.status_code in (429, 503)
                else None
            )
            return Answer(
                response.status_code, "", latency_ms, {}, _excerpt(response.text), retry_after
            )
        try:
            body = response.json()
        except ValueError:
            error = f"the answer is not JSON: {_excerpt(response.text)}"
            return Answer(200, "", latency_ms, {}, error)
        if is_mlflow_route(target.route):
            text = mlflow_text(body)
            shape = 'a [{"0": text}] list or an {"output": text} object'
        else:
            text = answer_text(body, chat=is_chat_route(target.route))
            shape = "choices[0] text"
        usage = _usage(body)
        if text is None:
            error = f"the answer has no {shape}: {_excerpt(response.text)}"
            return Answer(200, "", latency_ms, usage, error)
        return Answer(200, text, latency_ms, usage)

    def close(self) -> None:
        self._session.close()


def request_body(target: ScoringTarget, prompt: SmokePrompt) -> dict[str, Any]:
    """The OpenAI-shaped request: ``messages`` for chat routes, ``prompt`` otherwise.

    Greedy decoding (``temperature`` 0) so a smoke test is as repeatable as
    the model allows. A chat prompt without messages sends its text as the
    only user turn.
    """
    body: dict[str, Any]
    if is_mlflow_route(target.route):
        return mlflow_body(target, prompt)
    if is_chat_route(target.route):
        messages = [dict(m) for m in prompt.messages] or [
            {"role": "user", "content": prompt.prompt}
        ]
        body = {"messages": messages}
    else:
        body = {"prompt": prompt.prompt}
    body.update({"temperature": 0, "max_tokens": target.max_tokens})
    return body


def mlflow_body(target: ScoringTarget, prompt: SmokePrompt) -> dict[str, Any]:
    """The MLflow ``input_data`` request of catalog containers (one input per request).

    Greedy decoding is ``do_sample: false`` there (a ``temperature`` of 0 is an
    error in Hugging Face generation). A chat model gets its conversation as
    the input string's message list.
    """
    conversation: list[Any] = [dict(m) for m in prompt.messages] or [
        {"role": "user", "content": prompt.prompt}
    ]
    inputs: list[Any] = conversation if target.chat else [prompt.prompt]
    parameters = {"max_new_tokens": target.max_tokens, "do_sample": False}
    return {"input_data": {"input_string": inputs, "parameters": parameters}}


def mlflow_text(body: object) -> str | None:
    """The text of an MLflow container's answer: ``[{"0": text}]``, ``[text]`` or
    ``{"output": text}`` (chat); None if the body has none of these."""
    if isinstance(body, Mapping):
        output = body.get("output")
        return output if isinstance(output, str) else None
    if isinstance(body, list) and body:
        first = body[0]
        if isinstance(first, str):
            return first
        if isinstance(first, Mapping) and isinstance(first.get("0"), str):
            return str(first["0"])
    return None


def answer_text(body: object, *, chat: bool) -> str | None:
    """``choices[0].message.content`` (chat) or ``choices[0].text``; None if absent.

    A chat answer carrying ``text``, or a completion carrying ``message``, is
    accepted too: images differ, and the smoke test judges content, not shape.
    """
    if not isinstance(body, Mapping):
        return None
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None
    choice = choices[0]
    message = choice.get("message")
    content = message.get("content") if isinstance(message, Mapping) else None
    text = choice.get("text")
    first, second = (content, text) if chat else (text, content)
    for value in (first, second):
        if isinstance(value, str):
            return value
    return None


def _usage(body: object) -> dict[str, int]:
    usage = body.get("usage") if isinstance(body, Mapping) else None
    if not isinstance(usage, Mapping):
        return {}
    return {
        name: value
        for name in USAGE_FIELDS
        if isinstance(value := usage.get(name), int) and not isinstance(value, bool)
    }


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds; None when absent or an HTTP date (not used by Azure ML)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def _elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) <= BODY_EXCERPT_CHARS:
        return flat
    return f"{flat[:BODY_EXCERPT_CHARS]}…(+{len(flat) - BODY_EXCERPT_CHARS} chars)"
