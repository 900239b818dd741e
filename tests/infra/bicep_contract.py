"""The deployment template (``infra/``) checked against the app's own code.

``infra/**/*.bicep`` is parsed by pycep (in ``.venv-iac``, see
``parse_bicep.py``) into JSON; this module reads that JSON and answers
questions about the template with a small symbolic resolver, then compares the
answers with what the code says it needs:

- the app settings the Function App gets (``shared.domain.settings.load_settings``
  and the storage connections the code and the blob trigger read);
- the roles each identity gets on each scope (``shared.domain.permissions``);
- the runtime, plan and identity-only connections.

Every ``check_*`` function returns a list of problems (empty: fine), so a test
can run the same checks on a deliberately broken copy of the template and see
them fail, naming what is missing.

The resolver follows what one Bicep expression refers to, across modules:
a module parameter becomes the caller's argument, ``module.outputs.x``
becomes the output's expression inside the module, and an ``existing``
resource named after another resource's ``.name`` (or after a top-level
parameter) becomes that resource (or parameter). So "the storage account the
app's ``AzureWebJobsStorage__blobServiceUri`` points at" and "the scope of this
role assignment" compare equal when they are the same account, however many
modules apart they are written. It understands the subset of Bicep the
template uses; anything else resolves to an opaque reference, and checks that
need to see through it then fail loudly rather than pass. (pycep writes an
identifier and a string literal alike, so a literal spelled like a symbol of
its file reads as that symbol: another reason to keep names distinct.)
"""

from __future__ import annotations

import json
import posixpath
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT_FILE = "main.bicep"
ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
ACCESSOR = "property_accessor"
SYMBOL_KINDS = ("parameters", "variables", "resources", "modules")


class Runtime:
    """A value known only at deployment time (a resource property, a function result)."""

    def __repr__(self) -> str:
        return "<runtime>"


RUNTIME = Runtime()


@dataclass(frozen=True)
class Ref:
    """What an expression refers to: ``kind`` is resource, param, existing, literal or opaque."""

    kind: str
    where: Any  # "file#symbol" for resources and params; the value for literals
    path: tuple[str, ...] = ()

    def at(self, path: tuple[str, ...]) -> Ref:
        return Ref(self.kind, self.where, self.path + path) if path else self


@dataclass(frozen=True)
class Ctx:
    """One instantiation of a Bicep file: the root, or a module call from another context."""

    file: str
    caller: Ctx | None = None
    module: str | None = None  # the module's symbol in the caller's file
    conditional: bool = False  # some module on the way here has an if()


@dataclass(frozen=True)
class Resource:
    ctx: Ctx
    symbol: str
    type: str
    config: Mapping[str, Any]
    conditional: bool  # the resource or a module on the way has an if()

    @property
    def ref(self) -> Ref:
        return Ref("resource", f"{self.ctx.file}#{self.symbol}")


def parse_infra(root: Path, iac_python: Path, script: Path) -> dict[str, Any]:
    """Parse ``root/**/*.bicep`` with pycep in the IaC venv; raise with the errors."""
    done = subprocess.run(
        [str(iac_python), str(script), str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    if not done.stdout:
        raise RuntimeError(f"pycep produced nothing: {done.stderr.strip()}")
    parsed: dict[str, Any] = json.loads(done.stdout)
    if parsed["errors"]:
        raise RuntimeError(f"Bicep parse errors: {parsed['errors']}")
    return parsed


def _unwrap(entry: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """(the body, whether it has a condition) of a resource or module declaration."""
    config = entry["config"]
    if "config" in config and ("condition" in config or "loop_type" in config):
        return config["config"], config.get("condition") is not None
    return config, False


def _key(raw: str) -> str:
    return raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == "'" else raw


def _select(expr: Any, path: tuple[str, ...]) -> tuple[Any, tuple[str, ...]]:
    """``{a: {b: x}}`` with path (a, b, c) is x with path (c,): look into object literals."""
    while path and isinstance(expr, dict) and not ({"operator", "function"} & expr.keys()):
        keys = {_key(k): k for k in expr}
        if path[0] not in keys:
            break
        expr, path = expr[keys[path[0]]], path[1:]
    return expr, path


class Template:
    """The parsed ``infra/`` folder, with the resolver over it."""

    def __init__(self, files: Mapping[str, Mapping[str, Any]]) -> None:
        self.files = files
        if ROOT_FILE not in files:
            raise ValueError(f"no {ROOT_FILE} among {sorted(files)}")

    # -- instantiations ---------------------------------------------------------

    def contexts(self) -> Iterator[Ctx]:
        """The root and every module instantiation under it, depth first."""
        stack = [Ctx(ROOT_FILE)]
        while stack:
            ctx = stack.pop()
            yield ctx
            for name, entry in self.files[ctx.file].get("modules", {}).items():
                _, conditional = _unwrap(entry)
                file = self.module_file(ctx, name)
                stack.append(Ctx(file, ctx, name, ctx.conditional or conditional))

    def module_file(self, ctx: Ctx, module: str) -> str:
        detail = self.files[ctx.file]["modules"][module]["detail"]
        path = posixpath.normpath(posixpath.join(posixpath.dirname(ctx.file), detail["path"]))
        if path not in self.files:
            raise ValueError(f"{ctx.file}: module {module} points at {path}, not parsed")
        return path

    def resources(self, type_: str | None = None) -> Iterator[Resource]:
        for ctx in self.contexts():
            for symbol, entry in self.files[ctx.file].get("resources", {}).items():
                if type_ is not None and entry["type"].lower() != type_.lower():
                    continue
                body, conditional = _unwrap(entry)
                yield Resource(ctx, symbol, entry["type"], body, conditional or ctx.conditional)

    def declared(self, ref: Ref) -> tuple[str, Mapping[str, Any]] | None:
        """(type, body) of the resource a ``resource`` ref names."""
        if ref.kind != "resource":
            return None
        file, symbol = ref.where.split("#", 1)
        entry = self.files[file].get("resources", {}).get(symbol)
        if entry is None:
            return None
        return entry["type"], _unwrap(entry)[0]

    # -- resolution -----------------------------------------------------------

    def refs(self, expr: Any, ctx: Ctx, depth: int = 0) -> set[Ref]:
        """Everything ``expr`` may refer to, in ``ctx``."""
        if depth > 60:
            raise RecursionError("Bicep expression too deep (a reference cycle?)")
        d = depth + 1
        if expr is None or isinstance(expr, bool | int | float):
            return {Ref("literal", expr)}
        if isinstance(expr, str):
            if "${" in expr:
                found = {Ref("literal", expr)}
                for inner in INTERPOLATION.findall(expr):
                    parts = inner.strip().split(".")
                    if all(re.fullmatch(r"[A-Za-z_]\w*", p) for p in parts):
                        found |= self._symbol(parts[0], tuple(parts[1:]), ctx, d)
                    else:
                        found.add(Ref("opaque", inner))
                return found
            if self._is_symbol(expr, ctx):
                return self._symbol(expr, (), ctx, d)
            return {Ref("literal", expr)}
        if isinstance(expr, list):
            return set().union(*(self.refs(item, ctx, d) for item in expr)) if expr else set()
        if isinstance(expr, dict):
            if "operator" in expr:
                op = expr["operator"]
                if op["type"] == ACCESSOR:
                    head, path = self._chain(op)
                    if isinstance(head, str) and self._is_symbol(head, ctx):
                        return self._symbol(head, path, ctx, d)
                    return {r.at(path) for r in self.refs(head, ctx, d)}
                if op["type"] == "conditional":
                    operands = op["operands"]
                    return self.refs(operands["true_value"], ctx, d) | self.refs(
                        operands["false_value"], ctx, d
                    )
                return set().union(*(self.refs(v, ctx, d) for v in op["operands"].values()))
            if "function" in expr:
                fn = expr["function"]
                if fn.get("property_name") is not None:
                    return {Ref("opaque", f"{fn['type']}().{fn['property_name']}")}
                args = [v for v in (fn.get("parameters") or {}).values() if v is not None]
                return {Ref("opaque", fn["type"])} | set().union(
                    *(self.refs(a, ctx, d) for a in args)
                )
            return set().union(*(self.refs(v, ctx, d) for v in expr.values())) if expr else set()
        return {Ref("opaque", repr(expr))}

    def _chain(self, op: Mapping[str, Any]) -> tuple[Any, tuple[str, ...]]:
        """``a.b.c`` as (a, ("b", "c"))."""
        operands = op["operands"]
        head, rest = operands["operand_1"], operands["operand_2"]
        path: list[str] = []
        while isinstance(rest, dict) and rest.get("operator", {}).get("type") == ACCESSOR:
            path.append(str(rest["operator"]["operands"]["operand_1"]))
            rest = rest["operator"]["operands"]["operand_2"]
        path.append(str(rest))
        return head, tuple(path)

    def _is_symbol(self, name: str, ctx: Ctx) -> bool:
        f = self.files[ctx.file]
        return any(name in f.get(kind, {}) for kind in SYMBOL_KINDS)

    def _symbol(self, name: str, path: tuple[str, ...], ctx: Ctx, depth: int) -> set[Ref]:
        f = self.files[ctx.file]
        if name in f.get("parameters", {}):
            return {r.at(path) for r in self._param(name, ctx, depth)}
        if name in f.get("variables", {}):
            value, rest = _select(f["variables"][name]["value"], path)
            return {r.at(rest) for r in self.refs(value, ctx, depth)}
        if name in f.get("resources", {}):
            entry = f["resources"][name]
            if not entry.get("existing"):
                return {Ref("resource", f"{ctx.file}#{name}", path)}
            return {r.at(path) for r in self._existing(name, ctx, depth)}
        if name in f.get("modules", {}):
            if len(path) < 2 or path[0] != "outputs":
                return {Ref("opaque", f"{ctx.file}#{name}", path)}
            module_ctx = Ctx(self.module_file(ctx, name), ctx, name)
            outputs = self.files[module_ctx.file].get("outputs", {})
            if path[1] not in outputs:
                return {Ref("opaque", f"{module_ctx.file}: no output {path[1]}")}
            value = outputs[path[1]]["value"]
            return {r.at(path[2:]) for r in self.refs(value, module_ctx, depth)}
        return {Ref("opaque", name, path)}

    def _param(self, name: str, ctx: Ctx, depth: int) -> set[Ref]:
        declared = self.files[ctx.file]["parameters"][name]
        if ctx.caller is not None and ctx.module is not None:
            body, _ = _unwrap(self.files[ctx.caller.file]["modules"][ctx.module])
            passed = body.get("params", {})
            if name in passed:
                return self.refs(passed[name], ctx.caller, depth)
            return self.refs(declared.get("default"), ctx, depth)
        found = {Ref("param", f"{ctx.file}#{name}")}
        if declared.get("default") is not None:
            found |= self.refs(declared["default"], ctx, depth)
        return found

    def _existing(self, name: str, ctx: Ctx, depth: int) -> set[Ref]:
        """An ``existing`` resource is whatever its name comes from."""
        body, _ = _unwrap(self.files[ctx.file]["resources"][name])
        found: set[Ref] = set()
        for r in self.refs(body.get("name"), ctx, depth):
            if r.kind == "resource" and r.path == ("name",):
                found.add(Ref("resource", r.where))
            elif r.kind == "param" and not r.path:
                found.add(r)
        return found or {Ref("existing", f"{ctx.file}#{name}")}

    # -- values -----------------------------------------------------------------

    def value(self, expr: Any, ctx: Ctx, depth: int = 0) -> Any:
        """The literal value ``expr`` has with default parameters, or ``RUNTIME``."""
        if depth > 60:
            raise RecursionError("Bicep expression too deep (a reference cycle?)")
        d = depth + 1
        if expr is None or isinstance(expr, bool | int | float):
            return expr
        if isinstance(expr, str):
            if "${" in expr:
                return RUNTIME
            if not self._is_symbol(expr, ctx):
                return expr
            f = self.files[ctx.file]
            if expr in f.get("parameters", {}):
                declared = f["parameters"][expr]
                if ctx.caller is not None and ctx.module is not None:
                    body, _ = _unwrap(self.files[ctx.caller.file]["modules"][ctx.module])
                    if expr in body.get("params", {}):
                        return self.value(body["params"][expr], ctx.caller, d)
                default = declared.get("default")
                return RUNTIME if default is None else self.value(default, ctx, d)
            if expr in f.get("variables", {}):
                return self.value(f["variables"][expr]["value"], ctx, d)
            return RUNTIME
        if isinstance(expr, dict) and "operator" in expr:
            op = expr["operator"]
            if op["type"] == ACCESSOR:
                head, path = self._chain(op)
                if path == ("name",) and isinstance(head, str):
                    return self._name_value(head, ctx, d)
                modules = self.files[ctx.file].get("modules", {})
                if isinstance(head, str) and head in modules and path[:1] == ("outputs",):
                    module_ctx = Ctx(self.module_file(ctx, head), ctx, head)
                    out = self.files[module_ctx.file].get("outputs", {}).get(path[1])
                    if out is not None and len(path) == 2:
                        return self.value(out["value"], module_ctx, d)
            return RUNTIME
        if isinstance(expr, dict) and "function" in expr:
            fn = expr["function"]
            if fn["type"] == "string" and fn.get("property_name") is None:
                inner = self.value(next(iter(fn["parameters"].values())), ctx, d)
                if inner is RUNTIME:
                    return RUNTIME
                return str(inner).lower() if isinstance(inner, bool) else str(inner)
            return RUNTIME
        return RUNTIME

    def _name_value(self, symbol: str, ctx: Ctx, depth: int) -> Any:
        resources = self.files[ctx.file].get("resources", {})
        if symbol not in resources:
            return RUNTIME
        body, _ = _unwrap(resources[symbol])
        return self.value(body.get("name"), ctx, depth)


# -- the Function App ---------------------------------------------------------------


@dataclass(frozen=True)
class FunctionApp:
    resource: Resource
    settings: Mapping[str, Any]  # name -> value expression (in resource.ctx)


def function_apps(t: Template) -> list[Resource]:
    return [
        r
        for r in t.resources("Microsoft.Web/sites")
        if "functionapp" in str(t.value(r.config.get("kind"), r.ctx)).lower()
    ]


def function_app(t: Template) -> tuple[FunctionApp | None, list[str]]:
    apps = function_apps(t)
    if len(apps) != 1:
        found = ", ".join(f"{a.ctx.file}:{a.symbol}" for a in apps) or "none"
        return None, [f"expected exactly one Function App (Microsoft.Web/sites), found {found}"]
    site = apps[0]
    settings: dict[str, Any] = {}
    problems: list[str] = []
    listed = site.config.get("properties", {}).get("siteConfig", {}).get("appSettings")
    if isinstance(listed, list):
        for item in listed:
            name = t.value(item.get("name"), site.ctx) if isinstance(item, dict) else RUNTIME
            if not isinstance(name, str):
                problems.append(f"an app setting of {site.symbol} has a computed name: {item}")
                continue
            settings[name] = item.get("value")
    else:
        problems.append(f"{site.symbol}: siteConfig.appSettings is not a literal list")
    return FunctionApp(site, settings), problems


def setting_value(t: Template, app: FunctionApp, name: str) -> Any:
    return t.value(app.settings[name], app.resource.ctx) if name in app.settings else None


def is_set(t: Template, app: FunctionApp, name: str) -> bool:
    """Present with a value that is not empty under default parameters."""
    return name in app.settings and setting_value(t, app, name) not in ("", None)


def app_identity(t: Template, app: FunctionApp) -> tuple[Ref | None, list[str]]:
    """The one user-assigned identity the Function App runs as."""
    identity = app.resource.config.get("identity", {})
    if t.value(identity.get("type"), app.resource.ctx) != "UserAssigned":
        return None, ["the Function App's identity type is not UserAssigned"]
    roots: set[Ref] = set()
    for key in identity.get("userAssignedIdentities", {}):
        roots |= {
            Ref(r.kind, r.where)
            for r in t.refs(_key(key), app.resource.ctx)
            if r.kind == "resource" and r.path == ("id",)
        }
    if len(roots) != 1:
        return None, [f"the Function App needs exactly one user-assigned identity, found {roots}"]
    root = next(iter(roots))
    declared = t.declared(root)
    if declared is None or declared[0] != "Microsoft.ManagedIdentity/userAssignedIdentities":
        return None, [f"the Function App's identity {root.where} is not a user-assigned identity"]
    return root, []


def scope_roots(t: Template, app: FunctionApp, setting: str) -> set[Ref]:
    """The resources (or top-level parameters) an app setting's value comes from."""
    if setting not in app.settings:
        return set()
    return {
        Ref(r.kind, r.where)
        for r in t.refs(app.settings[setting], app.resource.ctx)
        if r.kind in ("resource", "param")
    }


# -- role assignments -----------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    resource: Resource
    scopes: frozenset[Ref]
    principals: frozenset[Ref]
    roles: frozenset[str]
    principal_type: Any

    def describe(self) -> str:
        return f"{self.resource.ctx.file}:{self.resource.symbol}"


def role_assignments(t: Template) -> list[Assignment]:
    found = []
    for r in t.resources(ROLE_ASSIGNMENT):
        scope = r.config.get("scope")
        scopes = {
            Ref(x.kind, x.where)
            for x in (t.refs(scope, r.ctx) if scope is not None else set())
            if x.kind in ("resource", "param") and not x.path
        }
        props = r.config.get("properties", {})
        principals = {
            x for x in t.refs(props.get("principalId"), r.ctx) if x.kind in ("resource", "param")
        }
        roles = {
            str(x.where)
            for x in t.refs(props.get("roleDefinitionId"), r.ctx)
            if x.kind == "literal" and isinstance(x.where, str) and GUID.match(x.where)
        }
        found.append(
            Assignment(
                r,
                frozenset(scopes),
                frozenset(principals),
                frozenset(roles),
                t.value(props.get("principalType"), r.ctx),
            )
        )
    return found


def check_role(
    assignments: list[Assignment],
    *,
    role_name: str,
    role_guid: str,
    scope_label: str,
    scope_roots_: set[Ref],
    principal_label: str,
    principal: Ref,
    principal_path: tuple[str, ...],
) -> list[str]:
    """One required (role, scope, principal): assigned unconditionally, to a service principal."""
    want = f"{role_name} ({role_guid}) on {scope_label} for {principal_label}"
    if not scope_roots_:
        return [f"{want}: the template does not say which resource that scope is"]
    candidates = [
        a
        for a in assignments
        if role_guid in a.roles
        and a.scopes & scope_roots_
        and principal.at(principal_path) in a.principals
    ]
    if not candidates:
        return [f"missing role assignment: {want}"]
    unconditional = [a for a in candidates if not a.resource.conditional]
    if not unconditional:
        names = ", ".join(a.describe() for a in candidates)
        return [f"{want} is only assigned conditionally ({names})"]
    if not any(a.principal_type == "ServicePrincipal" for a in unconditional):
        return [f"{want}: principalType must be ServicePrincipal"]
    return []


# -- the checks ----------------------------------------------------------------------


def check_settings(t: Template, required: list[tuple[str, ...]], why: str) -> list[str]:
    """Each entry (one name, or alternatives) is set to a non-empty value by the template."""
    app, problems = function_app(t)
    if app is None:
        return problems
    for names in required:
        if not any(is_set(t, app, name) for name in names):
            problems.append(f"app setting {' or '.join(names)} is not set by the template ({why})")
    return problems


def check_setting_values(t: Template, expected: Mapping[str, str]) -> list[str]:
    """Settings whose value is fixed by the deployment (e.g. identity-based connections)."""
    app, problems = function_app(t)
    if app is None:
        return problems
    for name, want in expected.items():
        got = setting_value(t, app, name)
        if got != want:
            shown = "missing" if name not in app.settings else repr(got)
            problems.append(f"app setting {name} must be {want!r}, the template has {shown}")
    return problems


def check_forbidden_settings(t: Template, forbidden: Mapping[str, str]) -> list[str]:
    """No key-based or local-only settings; no value built from account or topic keys."""
    app, problems = function_app(t)
    if app is None:
        return problems
    for name, why in forbidden.items():
        if name in app.settings:
            problems.append(f"app setting {name} must not be set: {why}")
    for name, expr in app.settings.items():
        text = json.dumps(expr)
        if re.search(r'"type": "list_?\w*keys', text, re.I) or re.search(
            r"AccountKey=|SharedAccessKey|primaryKey|InstrumentationKey=", text, re.I
        ):
            problems.append(f"app setting {name} is built from a key: identity-based access only")
    return problems


def check_identity(t: Template) -> list[str]:
    """One user-assigned identity, used by the host, the trigger and the app's own SDK clients."""
    app, problems = function_app(t)
    if app is None:
        return problems
    identity, problems = app_identity(t, app)
    if identity is None:
        return problems
    client_id = identity.at(("properties", "clientId"))
    for name in ("AZURE_CLIENT_ID", "AzureWebJobsStorage__clientId", "DATASET_STORAGE__clientId"):
        if name not in app.settings:
            problems.append(f"app setting {name} is missing: it must be the identity's clientId")
        elif client_id not in t.refs(app.settings[name], app.resource.ctx):
            problems.append(f"app setting {name} is not the app identity's clientId")
    auth = app.settings.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING")
    auth_refs = t.refs(auth, app.resource.ctx) if auth is not None else set()
    texts = " ".join(str(r.where) for r in auth_refs if r.kind == "literal")
    if client_id not in auth_refs or "Authorization=AAD" not in texts:
        problems.append(
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING must be "
            "'ClientId=<the identity's clientId>;Authorization=AAD'"
        )
    deployment = (
        app.resource.config.get("properties", {})
        .get("functionAppConfig", {})
        .get("deployment", {})
        .get("storage", {})
    )
    auth_block = deployment.get("authentication", {})
    if t.value(auth_block.get("type"), app.resource.ctx) != "UserAssignedIdentity" or identity.at(
        ("id",)
    ) not in t.refs(auth_block.get("userAssignedIdentityResourceId"), app.resource.ctx):
        problems.append(
            "functionAppConfig.deployment.storage must authenticate with the app's "
            "user-assigned identity"
        )
    return problems


def check_platform(t: Template, python_version: str, service_name: str) -> list[str]:
    """Flex Consumption (FC1), Linux, HTTPS only, the Python runtime, the azd service tag."""
    app, problems = function_app(t)
    if app is None:
        return problems
    site, ctx = app.resource.config, app.resource.ctx
    props = site.get("properties", {})
    runtime = props.get("functionAppConfig", {}).get("runtime", {})
    got = (t.value(runtime.get("name"), ctx), t.value(runtime.get("version"), ctx))
    if got != ("python", python_version):
        problems.append(
            f"functionAppConfig.runtime is {got}, the app needs ('python', '{python_version}')"
        )
    if t.value(site.get("kind"), ctx) != "functionapp,linux":
        problems.append("the Function App's kind must be 'functionapp,linux'")
    if t.value(props.get("httpsOnly"), ctx) is not True:
        problems.append("the Function App must be httpsOnly")
    plans = [
        r
        for r in t.refs(props.get("serverFarmId"), ctx)
        if r.kind == "resource" and r.path == ("id",)
    ]
    declared = [t.declared(Ref(r.kind, r.where)) for r in plans]
    skus = {
        (
            t.value(body.get("sku", {}).get("name"), ctx),
            t.value(body.get("sku", {}).get("tier"), ctx),
        )
        for kind, body in (d for d in declared if d is not None)
        if kind == "Microsoft.Web/serverfarms"
    }
    if skus != {("FC1", "FlexConsumption")}:
        problems.append(f"the Function App's plan must be Flex Consumption (FC1), found {skus}")
    tags = json.dumps(site.get("tags"))
    if f'"\'azd-service-name\'": "{service_name}"' not in tags and (
        f'"azd-service-name": "{service_name}"' not in tags
    ):
        problems.append(f"the Function App needs the tag azd-service-name: {service_name}")
    return problems


def check_roles(
    t: Template,
    *,
    app_roles: Mapping[str, list[tuple[str, str]]],
    training_roles: Mapping[str, list[tuple[str, str]]],
    scope_settings: Mapping[str, str],
    workspace_setting: str,
) -> list[str]:
    """``app_roles`` / ``training_roles``: scope label -> [(role name, guid)].

    ``scope_settings`` says which app setting names each scope's resource (its
    value's resource is the scope); the training principal is the identity of
    the workspace named by ``workspace_setting``.
    """
    app, problems = function_app(t)
    if app is None:
        return problems
    identity, problems = app_identity(t, app)
    if identity is None:
        return problems
    assignments = role_assignments(t)
    for scope, roles in app_roles.items():
        setting = scope_settings.get(scope)
        if setting is None:
            problems.append(f"no app setting is known to name {scope}: extend the test's table")
            continue
        roots = scope_roots(t, app, setting)
        for name, guid in roles:
            problems += check_role(
                assignments,
                role_name=name,
                role_guid=guid,
                scope_label=f"{scope} (where {setting} points)",
                scope_roots_=roots,
                principal_label=f"the app identity ({identity.where})",
                principal=identity,
                principal_path=("properties", "principalId"),
            )
    workspaces = scope_roots(t, app, workspace_setting)
    for scope, roles in training_roles.items():
        setting = scope_settings.get(scope)
        if setting is None:
            problems.append(f"no app setting is known to name {scope}: extend the test's table")
            continue
        roots = scope_roots(t, app, setting)
        for name, guid in roles:
            results = [
                check_role(
                    assignments,
                    role_name=name,
                    role_guid=guid,
                    scope_label=f"{scope} (where {setting} points)",
                    scope_roots_=roots,
                    principal_label="the Azure ML workspace's identity",
                    principal=workspace,
                    principal_path=("identity", "principalId"),
                )
                for workspace in sorted(workspaces, key=repr)
            ]
            if not workspaces:
                problems.append(f"{workspace_setting} does not name a workspace the template knows")
            elif all(results):
                problems += results[0]
    return problems


def declared_roots(t: Template, roots: set[Ref], type_: str) -> list[Mapping[str, Any]]:
    """Bodies of the declared resources of ``type_`` among ``roots``."""
    bodies = []
    for root in roots:
        declared = t.declared(root)
        if declared is not None and declared[0].lower() == type_.lower():
            bodies.append(declared[1])
    return bodies


def _prop(body: Mapping[str, Any], name: str) -> Any:
    """A property of ``properties``, matched without case (ARM property names are not)."""
    props = body.get("properties", {})
    return next((v for k, v in props.items() if _key(k).lower() == name.lower()), None)


def check_posture(t: Template) -> list[str]:
    """Identity-only storage, telemetry and events; the Event Grid system topics exist."""
    app, problems = function_app(t)
    if app is None:
        return problems
    ctx = app.resource.ctx
    storage_roots = scope_roots(t, app, "AzureWebJobsStorage__blobServiceUri") | scope_roots(
        t, app, "DATASET_STORAGE__blobServiceUri"
    )
    accounts = declared_roots(t, storage_roots, "Microsoft.Storage/storageAccounts")
    if not accounts:
        problems.append("the app's storage accounts are not declared in the template")
    for body in accounts:
        for name, want in (
            ("allowSharedKeyAccess", False),
            ("allowBlobPublicAccess", False),
            ("minimumTlsVersion", "TLS1_2"),
        ):
            got = t.value(_prop(body, name), ctx)
            if got != want:
                problems.append(f"storage account {body.get('name')}: {name} must be {want!r}")
        if t.value(body.get("kind"), ctx) != "StorageV2":
            problems.append("the storage account must be general-purpose v2 (Event Grid source)")
    insights = scope_roots(t, app, "APPLICATIONINSIGHTS_CONNECTION_STRING")
    for body in declared_roots(t, insights, "Microsoft.Insights/components"):
        if t.value(_prop(body, "disableLocalAuth"), ctx) is not True:
            problems.append("Application Insights must have local (key) authentication disabled")
    topics = declared_roots(
        t, scope_roots(t, app, "EVENTS_TOPIC_ENDPOINT"), "Microsoft.EventGrid/topics"
    )
    if not topics:
        problems.append(
            "EVENTS_TOPIC_ENDPOINT does not come from an Event Grid topic of the template"
        )
    for body in topics:
        if t.value(_prop(body, "inputSchema"), ctx) != "CloudEventSchemaV1_0":
            problems.append(
                "the events topic must take CloudEventSchemaV1_0 (the app sends CloudEvents)"
            )
        if t.value(_prop(body, "disableLocalAuth"), ctx) is not True:
            problems.append("the events topic must have local (key) authentication disabled")
    sources = {
        "Microsoft.Storage.StorageAccounts": scope_roots(t, app, "DATASET_STORAGE__blobServiceUri"),
        "Microsoft.MachineLearningServices.Workspaces": scope_roots(t, app, "AZUREML_WORKSPACE"),
    }
    system_topics = list(t.resources("Microsoft.EventGrid/systemTopics"))
    for topic_type, roots in sources.items():
        found = [
            s
            for s in system_topics
            if t.value(s.config.get("properties", {}).get("topicType"), s.ctx) == topic_type
            and {Ref(r.kind, r.where) for r in t.refs(s.config["properties"].get("source"), s.ctx)}
            & roots
        ]
        if not found:
            problems.append(
                f"no Event Grid system topic ({topic_type}) on the resource the app uses"
            )
    return problems
