"""Test-side helpers for the Azure ML emulator: a credential, the admin client, polling.

The credential is what the real ``MLClient`` needs to build its bearer-token
policy; the emulator accepts any token, unless an RBAC deny rule names its
text (``EmulatorAdmin.deny``). ``EmulatorAdmin`` wraps the emulator's
``/_emulator/...`` routes (see ``local/azureml_emulator/admin.py``) so tests
read as "inject this fault", "show me the events". ``wait_until`` is the only
way tests wait: poll with a deadline, never sleep and hope.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from azure.core.credentials import AccessToken, TokenCredential

T = TypeVar("T")


class StaticTokenCredential(TokenCredential):
    """A ``TokenCredential`` that always hands out the same bearer token."""

    def __init__(self, token: str = "emulator-test-token") -> None:
        self._token = token

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


def wait_until(
    probe: Callable[[], T],
    done: Callable[[T], bool],
    *,
    what: str,
    timeout: float = 30.0,
    interval: float = 0.02,
) -> T:
    """Call ``probe`` until ``done(result)`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(interval)


class EmulatorAdmin:
    """The emulator's admin routes (faults, settings, state, events) as methods."""

    def __init__(self, base_url: str, ca_bundle: Path) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.verify = str(ca_bundle)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._session.request(
            method, f"{self.base_url}/_emulator/{path}", json=body, timeout=10
        )
        response.raise_for_status()
        return response.json()

    def fault_requests(
        self,
        route: str,
        *,
        status: int = 0,
        count: int | None = None,
        fraction: float | None = None,
        retry_after: int | None = None,
        latency_ms: int = 0,
        kinds: list[str] | None = None,
        after: bool = False,
    ) -> Any:
        """Fail (``status``) and/or delay (``latency_ms``) requests matching ``METHOD /path``
        (or ``METHOD /path?query``). ``after=True`` carries the request out and replaces
        only its reply: a lost response."""
        body: dict[str, Any] = {"route": route, "status": status, "latency_ms": latency_ms}
        if after:
            body["after"] = True
        optional = {
            "count": count,
            "fraction": fraction,
            "retry_after": retry_after,
            "kinds": kinds,
        }
        body.update({key: value for key, value in optional.items() if value is not None})
        return self._call("POST", "faults/requests", body)

    def fault_job(
        self,
        name: str,
        outcome: str = "fail",
        message: str = "",
        *,
        seconds: float | None = None,
        model_name: str | None = None,
    ) -> Any:
        """Decide what happens to jobs matching ``name`` (a glob).

        ``outcome``: ``"fail"`` (the fine-tune step fails with ``message``),
        ``"stuck"`` (Running for ever), ``"not_responding"`` (NotResponding for
        ``seconds`` emulated seconds, then Running, then Completed),
        ``"model_late"`` (Completed, model registered ``seconds`` later) or
        ``"model_renamed"`` (model registered as ``model_name``).
        """
        body: dict[str, Any] = {"name": name, "outcome": outcome, "message": message}
        if seconds is not None:
            body["seconds"] = seconds
        if model_name is not None:
            body["model_name"] = model_name
        return self._call("POST", "faults/jobs", body)

    def fault_deployment(self, name: str, message: str = "", *, quota: bool = False) -> Any:
        """Make provisioning of deployments matching ``name`` fail.

        With ``quota=True`` their PUT is refused at once with Azure's quota 400
        (``message``, if given, replaces the quota sentence) and nothing is created.
        """
        body: dict[str, Any] = {"name": name, "message": message}
        if quota:
            body["quota"] = True
        return self._call("POST", "faults/deployments", body)

    def fault_scoring(self, name: str, *, status: int | None = None, empty: bool = False) -> Any:
        """Make deployments matching ``name`` answer scoring with ``status`` or empty text."""
        body: dict[str, Any] = {"name": name}
        if status is not None:
            body["status"] = status
        if empty:
            body["empty"] = True
        return self._call("POST", "faults/scoring", body)

    def clear_faults(self) -> Any:
        """Clear faults, RBAC deny rules and scoring contracts (not names or datastores)."""
        return self._call("DELETE", "faults")

    # -- region, RBAC and container behaviour --

    def reserve_endpoint_name(self, name: str) -> Any:
        """Hold an endpoint name as if another customer in the region had it."""
        return self._call("POST", "endpoint-names", {"name": name})

    def free_endpoint_names(self) -> Any:
        """Release every reserved endpoint name."""
        return self._call("DELETE", "endpoint-names")

    def deny(self, principal: str, actions: str = "*") -> Any:
        """Deny ``principal`` (client id, object id, static token text, or ``*``) the
        ARM actions matching the glob ``actions``: such calls answer 403."""
        return self._call("POST", "rbac", {"principal": principal, "actions": actions})

    def clear_rbac(self) -> Any:
        return self._call("DELETE", "rbac")

    def rbac(self) -> dict[str, Any]:
        """Deny rules and the system-assigned identity's ``client_id``/``object_id``."""
        result: dict[str, Any] = self._call("GET", "rbac")
        return result

    def scoring_contract(self, name: str, contract: str) -> Any:
        """Make deployments matching ``name`` serve ``"openai"`` or ``"mlflow"`` routes."""
        return self._call("POST", "scoring-contract", {"name": name, "contract": contract})

    def map_datastore(self, name: str, url: str) -> Any:
        """Make ``azureml://datastores/<name>/paths/<p>`` read ``<url>/<p>`` (a container URL)."""
        return self._call("POST", "datastores", {"name": name, "url": url})

    def forget_datastores(self) -> Any:
        return self._call("DELETE", "datastores")

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "state")
        return result

    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self._call("GET", "events")["events"]
        return events

    def requests(self, contains: str = "") -> list[dict[str, Any]]:
        """Management, run-history and scoring requests the emulator answered, oldest
        first: ``at`` / ``replied`` (``time.time()``), ``kind``, ``method``, ``path``,
        ``status``, ``retry_after`` (header text or None), ``injected`` (a fault's
        reply). Only those whose path contains ``contains`` (case-insensitive)."""
        query = f"?contains={quote(contains)}" if contains else ""
        found: list[dict[str, Any]] = self._call("GET", f"requests{query}")["requests"]
        return found

    def config(self, **settings: Any) -> Any:
        """Change ``speed``, ``webhook_url`` or lifecycle timings (``Timings`` field names)."""
        return self._call("POST", "config", settings)

    # -- the Event Grid topic stand-in (local/azureml_emulator/topic.py) --

    def topic_events(self, subject: str | None = None, *, since: int = 0) -> list[dict[str, Any]]:
        """CloudEvents the topic received, in order, from the ``since``-th on.

        Only ``subject``'s when given. Run ids follow from content, so a test that
        must see exactly its own events passes ``since=len(topic_events())``
        taken before it starts: the session's emulator may have seen that run.
        """
        events: list[dict[str, Any]] = self._call("GET", "topic")["events"][since:]
        return [e for e in events if subject is None or e.get("subject") == subject]

    def topic_rejected(self) -> int:
        """How many publish requests the topic refused (auth, faults, bad bodies)."""
        rejected: int = self._call("GET", "topic")["rejected"]
        return rejected

    def fault_topic(
        self,
        status: int = 500,
        *,
        count: int | None = 1,
        retry_after: int | None = None,
        retry_after_ms: int | None = None,
    ) -> Any:
        """Answer the next ``count`` publishes (None: until cleared) with ``status``.

        ``retry_after_ms`` sets ``retry-after-ms``, which the SDK's retry policy
        obeys: a small value makes its retries immediate.
        """
        body: dict[str, Any] = {"status": status, "count": count}
        optional = {"retry_after": retry_after, "retry_after_ms": retry_after_ms}
        body.update({key: value for key, value in optional.items() if value is not None})
        return self._call("POST", "faults/topic", body)

    def close(self) -> None:
        self._session.close()
