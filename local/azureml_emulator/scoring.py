"""Scoring routes of online endpoints, answering with the deployed stand-in model.

``POST /online/{endpoint}/completions`` (also ``/v1/completions``, ``/score``)
and ``/v1/chat/completions`` answer OpenAI-shaped JSON. Key auth uses the
endpoint's keys (``Authorization: Bearer <key>``). A request goes to the
deployment named in ``azureml-model-deployment`` (any traffic share, 0%
included), otherwise to one picked by the endpoint's traffic weights.
Token counts in ``usage`` are word counts: the stand-in has no tokenizer.
"""

from __future__ import annotations

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
        for route in (r"/score", r"/completions", r"/v1/completions"):
            router.add("POST", base + route, self.completions, kind="scoring")
        router.add("POST", base + r"/v1/chat/completions", self.chat, kind="scoring")

    def completions(self, request: Request) -> Response:
        deployment, model = self._route(request)
        body = _json_object(request)
        prompt = body.get("prompt")
        if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise _scoring_error(400, "'prompt' must be a non-empty string.")
        text, finish = self._answer(deployment, model, prompt, body)
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        return self._reply(deployment, "text_completion", prompt, text, choice)

    def chat(self, request: Request) -> Response:
        deployment, model = self._route(request)
        body = _json_object(request)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _scoring_error(400, "'messages' must be a non-empty list.")
        prompt = "\n".join(
            str(m.get("content", ""))
            for m in messages
            if isinstance(m, dict) and m.get("role") != "system"
        )
        text, finish = self._answer(deployment, model, prompt, body)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
        }
        return self._reply(deployment, "chat.completion", prompt, text, choice)

    # -- helpers -----------------------------------------------------------------------

    def _route(self, request: Request) -> tuple[Deployment, StandInModel | None]:
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
        body: dict[str, Any],
    ) -> tuple[str, str]:
        fault = self.scoring_fault(deployment.resource.name)
        if fault and fault.get("status"):
            raise _scoring_error(int(fault["status"]), "Injected scoring fault.")
        if fault and fault.get("empty"):
            return "", "stop"
        text = model.answer(prompt) if model is not None else BASE_MODEL_ANSWER
        max_tokens = body.get("max_tokens")
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


def _json_object(request: Request) -> dict[str, Any]:
    body = request.json()
    if not isinstance(body, dict):
        raise _scoring_error(400, "The request body must be a JSON object.")
    return body


def _scoring_error(status: int, message: str) -> ArmError:
    return ArmError(status, "ScoringError", message)
