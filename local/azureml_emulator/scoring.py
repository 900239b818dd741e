"""Scoring routes of online endpoints, answering with the deployed stand-in model.

Which routes a deployment serves depends on the inference container Azure puts
in front of the model; the emulator serves one of two contracts per deployment
(``POST /_emulator/scoring-contract``, default ``openai``):

- ``openai`` (a vLLM-style container): ``POST /online/{endpoint}/completions``
  and ``/v1/completions`` take ``{"prompt", "max_tokens", ...}``,
  ``/v1/chat/completions`` takes ``{"messages", ...}``; answers are
  OpenAI-shaped with ``usage`` (word counts: the stand-in has no tokenizer).
- ``mlflow`` (the catalog model card's contract): only ``/score``, taking
  ``{"input_data": {"input_string": [...], "parameters": {"max_new_tokens": N}}}``.
  A list of prompt strings answers ``[{"0": text}, ...]``, one per prompt; a
  list of ``{"role", "content"}`` messages (chat) answers ``{"output": text}``.
  No ``usage``.

A route the deployment's contract does not serve answers 404
``{"error": {"code": "NotFound", "message": "route /completions is not served
by this deployment"}}``. Malformed bodies answer 400 saying what is wrong.

Key auth uses the endpoint's keys (``Authorization: Bearer <key>``). A request
goes to the deployment named in ``azureml-model-deployment`` (any traffic
share, 0% included), otherwise to one picked by the endpoint's traffic
weights. Injected scoring faults (500, empty text) apply to both contracts.
"""

from __future__ import annotations

import fnmatch
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from local.azureml_emulator.arm import ArmError
from local.azureml_emulator.http import Request, Response, Router
from local.azureml_emulator.standin import StandInModel
from local.azureml_emulator.state import Deployment, World

BASE_MODEL_ANSWER = "(base model: this deployment serves a model the emulator did not train)"
CONTRACTS = ("openai", "mlflow")
ROUTES = {
    "openai": ("/completions", "/v1/completions", "/v1/chat/completions"),
    "mlflow": ("/score",),
}


class ScoringRoutes:
    def __init__(
        self,
        world: World,
        models: dict[str, StandInModel],
        scoring_fault: Callable[[str], dict[str, Any] | None],
    ) -> None:
        self.world = world
        self.models = models
        self.scoring_fault = scoring_fault
        self._random = random.Random(11)

    def register(self, router: Router) -> None:
        base = r"/online/(?P<endpoint>[^/]+)"
        for route in (r"/completions", r"/v1/completions"):
            router.add("POST", base + route, self.completions, kind="scoring")
        router.add("POST", base + r"/v1/chat/completions", self.chat, kind="scoring")
        router.add("POST", base + r"/score", self.score, kind="scoring")

    def completions(self, request: Request) -> Response:
        deployment, model = self._route(request)
        body = _json_object(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise _scoring_error(400, "'prompt' must be a non-empty string.")
        text, finish = self._answer(deployment, model, prompt, body.get("max_tokens"))
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        return self._reply(deployment, "text_completion", prompt, text, choice)

    def chat(self, request: Request) -> Response:
        deployment, model = self._route(request)
        body = _json_object(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _scoring_error(400, "'messages' must be a non-empty list.")
        prompt = _chat_prompt(messages)
        text, finish = self._answer(deployment, model, prompt, body.get("max_tokens"))
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
        }
        return self._reply(deployment, "chat.completion", prompt, text, choice)

    def score(self, request: Request) -> Response:
        """The MLflow contract: ``input_data.input_string`` in, ``[{"0": ...}]`` out."""
        deployment, model = self._route(request)
        body = _json_object(request)
        input_data = body.get("input_data")
        if not isinstance(input_data, dict):
            raise _scoring_error(
                400,
                "'input_data' must be an object holding 'input_string' (a list of prompts, "
                "or of chat messages) and optionally 'parameters'.",
            )
        strings = input_data.get("input_string")
        parameters = input_data.get("parameters", {})
        if not isinstance(parameters, dict):
            raise _scoring_error(400, "'input_data.parameters' must be an object.")
        max_new = parameters.get("max_new_tokens")
        if not isinstance(strings, list) or not strings:
            raise _scoring_error(400, "'input_data.input_string' must be a non-empty list.")
        if all(isinstance(s, str) and s for s in strings):
            answers = [self._answer(deployment, model, s, max_new)[0] for s in strings]
            return self._mlflow_reply(deployment, [{"0": text} for text in answers])
        if all(_is_message(m) for m in strings):
            text, _ = self._answer(deployment, model, _chat_prompt(strings), max_new)
            return self._mlflow_reply(deployment, {"output": text})
        raise _scoring_error(
            400,
            "'input_data.input_string' must hold only non-empty prompt strings, or only chat "
            "messages ({'role': ..., 'content': <string>}).",
        )

    # -- helpers -----------------------------------------------------------------------

    def _route(self, request: Request) -> tuple[Deployment, StandInModel | None]:
        deployment, model = self._deployment(request)
        contract = self.contract_of(deployment.resource.name)
        route = "/" + request.path.rstrip("/").split("/online/", 1)[1].split("/", 1)[1]
        if route.lower() not in ROUTES[contract]:
            raise ArmError(404, "NotFound", f"route {route} is not served by this deployment")
        return deployment, model

    def contract_of(self, deployment: str) -> str:
        with self.world.lock:
            # The glob set last wins, so a specific rule can follow a broad one.
            for pattern, contract in reversed(self.world.scoring_contracts.items()):
                if fnmatch.fnmatchcase(deployment.lower(), pattern.lower()):
                    return contract
        return "openai"

    def _deployment(self, request: Request) -> tuple[Deployment, StandInModel | None]:
        name = request.params["endpoint"].lower()
        with self.world.lock:
            found = [e for (_, n), e in self.world.endpoints.items() if n == name]
            if not found or found[0].deleting:
                raise _scoring_error(404, f"Endpoint '{name}' does not exist.")
            endpoint = found[0]
            auth = request.header("Authorization") or ""
            if auth.removeprefix("Bearer ").strip() not in endpoint.keys:
                raise _scoring_error(401, "Invalid authentication: the key is missing or wrong.")
            ws_id = endpoint.resource.id.split("/onlineEndpoints/")[0].lower()
            wanted = request.header("azureml-model-deployment")
            if not wanted:
                weights = [(d, w) for d, w in endpoint.traffic.items() if w > 0]
                if not weights:
                    raise _scoring_error(
                        404,
                        "No valid deployments to route to: no deployment has traffic. Set traffic "
                        "or name one in the azureml-model-deployment header.",
                    )
                names, shares = zip(*weights, strict=True)
                wanted = self._random.choices(names, weights=shares)[0]
            deployment = self.world.deployments.get((ws_id, name, wanted.lower()))
            if deployment is None or deployment.deleting:
                raise _scoring_error(404, f"Deployment '{wanted}' does not exist on '{name}'.")
            if deployment.resource.properties["provisioningState"] != "Succeeded":
                raise _scoring_error(
                    503,
                    f"Deployment '{wanted}' is "
                    f"{deployment.resource.properties['provisioningState']}, not serving.",
                )
            model = self.models.get(deployment.model_id.lower())
            if model is None and "/workspaces/" not in deployment.model_id.lower():
                model = self._model_by_ref(ws_id, deployment.model_id)
        return deployment, model

    def _model_by_ref(self, ws_id: str, ref: str) -> StandInModel | None:
        # "azureml:name:version" references resolve to the stored model id.
        parts = ref.split(":")
        if len(parts) == 3 and parts[0] == "azureml":
            return self.models.get(f"{ws_id}/models/{parts[1]}/versions/{parts[2]}".lower())
        return None

    def _answer(
        self,
        deployment: Deployment,
        model: StandInModel | None,
        prompt: str,
        max_tokens: Any,
    ) -> tuple[str, str]:
        fault = self.scoring_fault(deployment.resource.name)
        if fault and fault.get("status"):
            raise _scoring_error(int(fault["status"]), "Injected scoring fault.")
        if fault and fault.get("empty"):
            return "", "stop"
        text = model.answer(prompt) if model is not None else BASE_MODEL_ANSWER
        words = text.split()
        if isinstance(max_tokens, int) and 0 < max_tokens < len(words):
            return " ".join(words[:max_tokens]), "length"
        return text, "stop"

    def _reply(
        self, deployment: Deployment, kind: str, prompt: str, text: str, choice: dict[str, Any]
    ) -> Response:
        prompt_tokens, completion_tokens = len(prompt.split()), len(text.split())
        body = {
            "id": f"cmpl-{uuid.uuid4().hex[:24]}",
            "object": kind,
            "created": int(time.time()),
            "model": deployment.model_id,
            "choices": [choice],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return Response(200, body, {"azureml-model-deployment": deployment.resource.name})

    @staticmethod
    def _mlflow_reply(deployment: Deployment, body: Any) -> Response:
        return Response(200, body, {"azureml-model-deployment": deployment.resource.name})


def _is_message(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("role"), str)
        and isinstance(value.get("content"), str)
    )


def _chat_prompt(messages: list[Any]) -> str:
    """What the stand-in matches a chat on: the non-system turns."""
    return "\n".join(
        str(m.get("content", ""))
        for m in messages
        if isinstance(m, dict) and m.get("role") != "system"
    )


def _json_object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise _scoring_error(400, "The request body must be a JSON object.")
    return body


def _scoring_error(status: int, message: str) -> ArmError:
    return ArmError(status, "ScoringError", message)
