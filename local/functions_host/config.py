"""What the host reads before it loads the app: app settings, ``%NAME%`` references, host.json.

* ``local.settings.json`` as Core Tools reads it: ``Values`` (strings only) become
  environment variables; a variable already set in the environment wins, with a log
  line, as in Core Tools. ``Host.LocalHttpPort`` is the default port.
* ``%NAME%`` in a binding attribute (a blob path, a timer schedule) is replaced by the
  app setting ``NAME``; one that is missing or empty is a start-up error.
* ``host.json``: the HTTP route prefix and the blob trigger's retry count and
  parallelism, with the real host's defaults.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("host.config")

_REFERENCE = re.compile(r"%([^%]+)%")
HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"
SCRIPT_FILE_SETTING = "PYTHON_SCRIPT_FILE_NAME"
DEFAULT_SCRIPT_FILE = "function_app.py"


class HostStartError(RuntimeError):
    """The host cannot start: bad settings, an app that does not load, a busy port."""


@dataclass(frozen=True)
class LocalSettings:
    values: dict[str, str]
    local_http_port: int | None = None


def read_local_settings(path: Path) -> LocalSettings:
    """Parse a ``local.settings.json``; raise ``HostStartError`` on anything malformed."""
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError as error:
        raise HostStartError(f"settings file {path} does not exist") from error
    except (OSError, ValueError) as error:
        raise HostStartError(f"cannot read settings file {path}: {error}") from error
    if not isinstance(document, dict):
        raise HostStartError(f"{path}: expected a JSON object with a 'Values' object")
    if document.get("IsEncrypted") is True:
        raise HostStartError(f"{path}: encrypted settings (IsEncrypted: true) are not supported")
    values = document.get("Values", {})
    if not isinstance(values, dict):
        raise HostStartError(f"{path}: 'Values' must be an object of strings")
    not_strings = sorted(k for k, v in values.items() if not isinstance(v, str))
    if not_strings:
        raise HostStartError(
            f"{path}: every value in 'Values' must be a string (Core Tools rejects others); "
            f"not strings: {', '.join(not_strings)}"
        )
    port: int | None = None
    host_section = document.get("Host")
    if isinstance(host_section, dict) and host_section.get("LocalHttpPort") is not None:
        try:
            port = int(host_section["LocalHttpPort"])
        except (TypeError, ValueError) as error:
            raise HostStartError(f"{path}: Host.LocalHttpPort must be a port number") from error
    return LocalSettings(values=dict(values), local_http_port=port)


def apply_settings(
    values: Mapping[str, str],
    environ: MutableMapping[str, str] | None = None,
    *,
    override: bool = False,
) -> None:
    """Put ``values`` into the environment, as Core Tools does before starting the worker.

    Without ``override`` a variable that is already set keeps its value (Core Tools:
    "Skipping '...' from local.settings.json as it's already defined in current
    environment variables").
    """
    target = os.environ if environ is None else environ
    for name, value in values.items():
        if not override and name in target and target[name] != value:
            log.info("Skipping '%s' from the settings file: already set in the environment", name)
            continue
        target[name] = value


def resolve_references(
    text: str, settings: Mapping[str, str], *, where: str
) -> tuple[str, list[str]]:
    """Replace every ``%NAME%`` in ``text``; return the result and the problems found."""
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        value = settings.get(name, "")
        if not value:
            state = "is empty" if name in settings else "is not set"
            problems.append(f"{where} refers to app setting %{name}%, which {state}")
            return match.group(0)
        return value

    return _REFERENCE.sub(replace, text), problems


def default_host_id(app_dir: Path) -> str:
    """A stable host id for an app directory: lower-case, at most 32 characters.

    The real host derives it from the site name; locally the directory name plus a
    short hash of its full path keeps two checkouts from sharing receipts.
    """
    resolved = str(app_dir.resolve())
    digest = hashlib.sha256(resolved.encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", app_dir.resolve().name.lower()).strip("-") or "app"
    return f"{stem[: 32 - 9]}-{digest}"


@dataclass(frozen=True)
class HostJson:
    """The parts of host.json this host honours, with the real host's defaults."""

    route_prefix: str = "api"
    blob_max_attempts: int = 5  # extensions.queues.maxDequeueCount
    blob_parallelism: int | None = None  # extensions.blobs.maxDegreeOfParallelism


def read_host_json(app_dir: Path) -> HostJson:
    path = app_dir / "host.json"
    if not path.exists():
        return HostJson()
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise HostStartError(f"cannot read {path}: {error}") from error
    extensions = document.get("extensions", {}) if isinstance(document, dict) else {}
    if not isinstance(extensions, dict):
        extensions = {}

    def section(name: str) -> dict[str, Any]:
        value = extensions.get(name, {})
        return value if isinstance(value, dict) else {}

    prefix = section("http").get("routePrefix", "api")
    attempts = section("queues").get("maxDequeueCount", 5)
    parallelism = section("blobs").get("maxDegreeOfParallelism")
    try:
        return HostJson(
            route_prefix=str(prefix).strip("/"),
            blob_max_attempts=max(1, int(attempts)),
            blob_parallelism=None if parallelism is None else max(1, int(parallelism)),
        )
    except (TypeError, ValueError) as error:
        raise HostStartError(f"{path}: {error}") from error
