"""Load ``function_app.py`` and index its functions from the app's own metadata.

As the Python worker does: import the script with the app directory first on
``sys.path``, find the one top-level ``FunctionRegister`` (``func.FunctionApp``),
call ``get_functions()`` once, and read each function's bindings through
``get_bindings()`` / ``get_dict_repr()``. Nothing here knows any function by name.

Checks the real worker makes at start-up are made here too, and reported together:
a binding whose name is not a parameter, a parameter no binding fills, a binding
type this host does not drive, an unresolvable ``%SETTING%``, a bad route or
schedule.
"""

from __future__ import annotations

import enum
import importlib.util
import inspect
import logging
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func

from local.functions_host.config import (
    DEFAULT_SCRIPT_FILE,
    SCRIPT_FILE_SETTING,
    HostStartError,
    resolve_references,
)
from local.functions_host.ncrontab import CronError, CronSchedule
from local.functions_host.routes import RouteError, RouteTemplate

log = logging.getLogger("host.indexing")

_HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")


@dataclass(frozen=True)
class FunctionSpec:
    """One indexed function: what triggers it and which parameter receives the trigger."""

    name: str
    function: Callable[..., Any]
    trigger_type: str
    parameter: str  # the trigger's parameter name
    annotation: Any  # the parameter's resolved annotation (inspect.Parameter.empty if none)
    binding: Mapping[str, Any]  # the trigger binding, enums as plain strings

    @property
    def function_id(self) -> str:
        """The id the real host uses in receipts, logs and webhook URLs."""
        return f"Host.Functions.{self.name}"


@dataclass(frozen=True)
class HttpSpec(FunctionSpec):
    route: RouteTemplate
    methods: frozenset[str]
    auth_level: str  # anonymous | function | admin


@dataclass(frozen=True)
class BlobSpec(FunctionSpec):
    connection: str
    container: str
    pattern: str  # the blob part of the path, parameters like {name} unresolved
    source: str


@dataclass(frozen=True)
class TimerSpec(FunctionSpec):
    schedule: CronSchedule
    run_on_startup: bool
    use_monitor: bool | None


@dataclass(frozen=True)
class EventGridSpec(FunctionSpec):
    pass


_S = typing.TypeVar("_S", bound=FunctionSpec)


@dataclass(frozen=True)
class IndexedApp:
    script: Path
    module: ModuleType
    functions: list[FunctionSpec]

    def of_type(self, kind: type[_S]) -> list[_S]:
        return [f for f in self.functions if isinstance(f, kind)]


def load_app(app_dir: Path, settings: Mapping[str, str]) -> IndexedApp:
    """Import the app's script and index it; raise ``HostStartError`` listing every problem."""
    script = app_dir / (settings.get(SCRIPT_FILE_SETTING) or DEFAULT_SCRIPT_FILE)
    if not script.is_file():
        raise HostStartError(f"no {script.name} in {app_dir}")
    module = _import_script(script)
    registers = [
        value for value in vars(module).values() if isinstance(value, func.FunctionRegister)
    ]
    # The worker keeps one app object per name; the same object bound twice is one app.
    unique = list({id(r): r for r in registers}.values())
    if not unique:
        raise HostStartError(f"{script} defines no top-level func.FunctionApp")
    if len(unique) > 1:
        raise HostStartError(f"{script} defines more than one top-level function app")
    try:
        functions = unique[0].get_functions()
    except ValueError as error:
        raise HostStartError(f"{script}: {error}") from error

    problems: list[str] = []
    specs: list[FunctionSpec] = []
    for function in functions:
        spec = _index_function(function, settings, problems)
        if spec is not None:
            specs.append(spec)
    if problems:
        raise HostStartError(
            f"{script} cannot be hosted:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return IndexedApp(script=script, module=module, functions=specs)


def _import_script(script: Path) -> ModuleType:
    app_dir = str(script.parent.resolve())
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)
    name = script.stem
    spec = importlib.util.spec_from_file_location(name, script)
    if spec is None or spec.loader is None:
        raise HostStartError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as error:
        sys.modules.pop(name, None)
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise
        log.exception("Importing %s failed", script)
        raise HostStartError(f"importing {script} failed: {error!r}") from error
    return module


def plain(value: Any) -> Any:
    """Binding attribute values with enums replaced by their plain values."""
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _index_function(
    function: func.Function, settings: Mapping[str, str], problems: list[str]
) -> FunctionSpec | None:
    name = function.get_function_name() or function.get_user_function().__name__
    user_function = function.get_user_function()
    bindings = [plain(b.get_dict_repr()) for b in function.get_bindings()]
    where = f"function '{name}'"

    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        problems.append(f"{where} has {len(triggers)} triggers; a function needs exactly one")
        return None
    trigger = triggers[0]
    trigger_type = str(trigger["type"])

    signature = inspect.signature(user_function)
    try:
        hints = typing.get_type_hints(user_function)
    except Exception as error:  # an annotation that does not evaluate
        problems.append(f"{where}: its annotations do not evaluate: {error!r}")
        return None
    parameters = list(signature.parameters)
    names = [str(b.get("name")) for b in bindings if b.get("name") != "$return"]
    for binding_name in names:
        if binding_name not in parameters:
            problems.append(
                f"{where}: binding '{binding_name}' has no parameter of that name "
                f"(parameters: {', '.join(parameters) or 'none'})"
            )
    for parameter in parameters:
        if parameter not in names:
            problems.append(
                f"{where}: parameter '{parameter}' is not bound to anything "
                "(this host supports no 'context' parameter either)"
            )
    for binding in bindings:
        if binding is trigger:
            continue
        if not (binding.get("type") == "http" and binding.get("name") == "$return"):
            problems.append(
                f"{where}: binding type '{binding.get('type')}' ('{binding.get('name')}') "
                "is not supported by the local host"
            )

    parameter = str(trigger["name"])
    annotation = hints.get(parameter, inspect.Parameter.empty)
    common: dict[str, Any] = {
        "name": name,
        "function": user_function,
        "trigger_type": trigger_type,
        "parameter": parameter,
        "annotation": annotation,
        "binding": trigger,
    }
    if trigger_type == "httpTrigger":
        return _http_spec(common, trigger, where, problems)
    if trigger_type == "blobTrigger":
        return _blob_spec(common, trigger, settings, where, problems)
    if trigger_type == "timerTrigger":
        return _timer_spec(common, trigger, settings, where, problems)
    if trigger_type == "eventGridTrigger":
        return EventGridSpec(**common)
    problems.append(f"{where}: trigger type '{trigger_type}' is not supported by the local host")
    return None


def _http_spec(
    common: dict[str, Any], trigger: Mapping[str, Any], where: str, problems: list[str]
) -> HttpSpec | None:
    route_text = trigger.get("route")
    if route_text is None:
        route_text = common["name"]  # the host's default: the function name
    try:
        route = RouteTemplate(str(route_text))
    except RouteError as error:
        problems.append(f"{where}: {error}")
        return None
    methods_value = trigger.get("methods")
    methods = (
        frozenset(str(m).upper() for m in methods_value)
        if methods_value
        else frozenset(_HTTP_METHODS)
    )
    auth_level = str(trigger.get("authLevel") or "function").lower()
    if auth_level not in ("anonymous", "function", "admin"):
        problems.append(f"{where}: unknown auth level '{auth_level}'")
        return None
    return HttpSpec(**common, route=route, methods=methods, auth_level=auth_level)


def _blob_spec(
    common: dict[str, Any],
    trigger: Mapping[str, Any],
    settings: Mapping[str, str],
    where: str,
    problems: list[str],
) -> BlobSpec | None:
    path, found = resolve_references(
        str(trigger.get("path", "")), settings, where=f"{where} (blob path)"
    )
    problems.extend(found)
    if found:
        return None
    container, _, pattern = path.strip("/").partition("/")
    if not container or "{" in container:
        problems.append(f"{where}: blob path '{path}' must start with a fixed container name")
        return None
    connection = str(trigger.get("connection") or "AzureWebJobsStorage")
    return BlobSpec(
        **common,
        connection=connection,
        container=container,
        pattern=pattern,
        source=str(trigger.get("source") or "LogsAndContainerScan"),
    )


def _timer_spec(
    common: dict[str, Any],
    trigger: Mapping[str, Any],
    settings: Mapping[str, str],
    where: str,
    problems: list[str],
) -> TimerSpec | None:
    text, found = resolve_references(
        str(trigger.get("schedule", "")), settings, where=f"{where} (schedule)"
    )
    problems.extend(found)
    if found:
        return None
    try:
        schedule = CronSchedule.parse(text)
    except CronError as error:
        problems.append(f"{where}: {error}")
        return None
    use_monitor = trigger.get("useMonitor")
    return TimerSpec(
        **common,
        schedule=schedule,
        run_on_startup=bool(trigger.get("runOnStartup", False)),
        use_monitor=None if use_monitor is None else bool(use_monitor),
    )
