"""HTTP route templates as the Functions host (ASP.NET Core routing) reads them.

Supported: literal segments (case-insensitive), ``{param}``, ``{param:constraint}``
(several constraints chain: ``{id:int:min(1)}``), optional ``{param?}``, defaults
``{param=value}``, a catch-all last segment ``{*rest}``, and segments that mix
literals and parameters (``{name}.{ext}``). Constraints: int, long, bool, alpha,
guid, double, float, decimal, datetime, minlength(n), maxlength(n), length(n),
length(a,b), min(n), max(n), range(a,b), regex(expr). A value that breaks a
constraint means the route does not match (404), as in ASP.NET.

When several templates match, the most specific wins: literals before constrained
parameters before plain ones before optional ones before catch-alls.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = ["RouteError", "RouteTemplate"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Check = Callable[[str], bool]


class RouteError(ValueError):
    """A route template this host (and ASP.NET routing) cannot use."""


@dataclass(frozen=True)
class _Parameter:
    name: str
    checks: tuple[Check, ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False


@dataclass
class RouteTemplate:
    """A parsed template; ``match(path)`` returns the route parameters or None."""

    template: str
    _regex: re.Pattern[str] = field(init=False, repr=False)
    _parameters: dict[str, _Parameter] = field(init=False, repr=False)
    precedence: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        self._parameters = {}
        segments = [s for s in self.template.strip("/").split("/")] if self.template else []
        pattern = ""
        ranks: list[int] = []
        for index, segment in enumerate(segments):
            if not segment:
                raise RouteError(f"route {self.template!r} has an empty segment")
            last = index == len(segments) - 1
            piece, rank, optional = self._segment(segment, last)
            if optional:
                pattern += f"(?:/{piece})?"
            else:
                pattern += f"/{piece}"
            ranks.append(rank)
        self._regex = re.compile(f"^{pattern}/?$", re.IGNORECASE | re.DOTALL)
        self.precedence = tuple(ranks)

    def _segment(self, segment: str, last: bool) -> tuple[str, int, bool]:
        """The regex for one segment, its precedence rank, and whether it may be absent."""
        tokens = self._tokens(segment)
        pieces: list[str] = []
        rank = 0
        parameters: list[_Parameter] = []
        for kind, text in tokens:
            if kind == "literal":
                pieces.append(re.escape(text))
                continue
            parameter = self._parse_parameter(text)
            if parameter.catch_all and not (last and len(tokens) == 1):
                raise RouteError(
                    f"route {self.template!r}: a catch-all parameter must be a whole last segment"
                )
            parameters.append(parameter)
            pattern = ".*" if parameter.catch_all else "[^/]+?"
            pieces.append(f"(?P<{parameter.name}>{pattern})")
            rank = max(rank, _rank(parameter))
        whole_parameter = len(tokens) == 1 and len(parameters) == 1
        optional = whole_parameter and (parameters[0].optional or parameters[0].catch_all)
        if any(p.optional for p in parameters) and not (whole_parameter and last):
            raise RouteError(f"route {self.template!r}: only a whole last segment can be optional")
        if len(parameters) > 1 and rank < 2:
            rank = 2
        return "".join(pieces), rank, optional

    def _tokens(self, segment: str) -> list[tuple[str, str]]:
        """Split a segment into literals and parameters; ``{{`` and ``}}`` are literal braces."""
        tokens: list[tuple[str, str]] = []
        literal = ""
        index = 0
        while index < len(segment):
            char = segment[index]
            if char in "{}" and segment[index : index + 2] == char * 2:
                literal += char
                index += 2
            elif char == "}":
                raise RouteError(f"route {self.template!r}: unbalanced braces in {segment!r}")
            elif char == "{":
                if literal:
                    tokens.append(("literal", literal))
                    literal = ""
                end = self._parameter_end(segment, index)
                tokens.append(("parameter", segment[index + 1 : end]))
                index = end + 1
            else:
                literal += char
                index += 1
        if literal:
            tokens.append(("literal", literal))
        return tokens

    def _parameter_end(self, segment: str, start: int) -> int:
        """Index of the ``}`` closing the parameter opened at ``start``."""
        depth = 0
        index = start + 1
        while index < len(segment):
            char = segment[index]
            if depth and char in "{}" and segment[index : index + 2] == char * 2:
                index += 2  # an escaped brace inside a constraint's argument
                continue
            if char == "(":
                depth += 1
            elif char == ")":
                depth = max(0, depth - 1)
            elif char == "{" and not depth:
                break
            elif char == "}" and not depth:
                return index
            index += 1
        raise RouteError(f"route {self.template!r}: unbalanced braces in {segment!r}")

    def _parse_parameter(self, text: str) -> _Parameter:
        catch_all = text.startswith("*")
        body = text.lstrip("*")
        parts = _split_constraints(body)
        # "?" (optional) or "=value" (default) end the parameter, after any "(...)".
        last = parts[-1]
        cut = last.rfind(")") + 1
        suffix_region = last[cut:]
        default: str | None = None
        if "=" in suffix_region:
            suffix_region, default = suffix_region.split("=", 1)
        optional = suffix_region.endswith("?")
        parts[-1] = last[:cut] + suffix_region.removesuffix("?")
        name, *constraints = parts
        constraints = [c.replace("{{", "{").replace("}}", "}") for c in constraints]
        if not _NAME.match(name):
            raise RouteError(f"route {self.template!r}: bad parameter name {name!r}")
        if name.lower() in (n.lower() for n in self._parameters):
            raise RouteError(f"route {self.template!r}: parameter {name!r} appears twice")
        checks = tuple(_constraint(c, self.template) for c in constraints)
        parameter = _Parameter(
            name=name,
            checks=checks,
            optional=optional or default is not None,
            default=default,
            catch_all=catch_all,
        )
        self._parameters[name] = parameter
        return parameter

    def match(self, path: str) -> dict[str, str] | None:
        """Route parameters if ``path`` (below the route prefix, no query) matches."""
        normalized = "/" + path.strip("/") if path.strip("/") else ""
        found = self._regex.match(normalized)
        if found is None:
            return None
        values: dict[str, str] = {}
        for name, parameter in self._parameters.items():
            raw = found.group(name)
            if raw is None or raw == "":
                if parameter.default is not None:
                    values[name] = parameter.default
                continue
            value = unquote(raw)
            if not all(check(value) for check in parameter.checks):
                return None
            values[name] = value
        return values


def _rank(parameter: _Parameter) -> int:
    if parameter.catch_all:
        return 4
    if parameter.optional:
        return 3
    return 1 if parameter.checks else 2


def _split_constraints(text: str) -> list[str]:
    """``id:int:range(1,5)`` -> ``["id", "int", "range(1,5)"]``, colons inside () kept."""
    parts: list[str] = []
    depth = 0
    current = ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def _is_int(text: str, bits: int) -> bool:
    if not re.fullmatch(r"[+-]?\d+", text):
        return False
    limit = 1 << (bits - 1)
    return -limit <= int(text) < limit


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity")


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _is_datetime(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _number(text: str) -> int:
    return int(text)


def _constraint(text: str, template: str) -> Check:
    name, _, argument_text = text.partition("(")
    name = name.strip().lower()
    argument_text = argument_text[:-1] if argument_text.endswith(")") else argument_text
    simple: dict[str, Check] = {
        "int": lambda v: _is_int(v, 32),
        "long": lambda v: _is_int(v, 64),
        "bool": lambda v: v.lower() in ("true", "false"),
        "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
        "guid": _is_guid,
        "double": _is_float,
        "float": _is_float,
        "decimal": _is_float,
        "datetime": _is_datetime,
    }
    try:
        if name in simple and not argument_text:
            return simple[name]
        if name == "regex":
            expression = re.compile(argument_text, re.IGNORECASE)
            return lambda v: expression.search(v) is not None
        numbers = [_number(a) for a in argument_text.split(",")] if argument_text else []
        if name == "minlength" and len(numbers) == 1:
            return lambda v: len(v) >= numbers[0]
        if name == "maxlength" and len(numbers) == 1:
            return lambda v: len(v) <= numbers[0]
        if name == "length" and len(numbers) == 1:
            return lambda v: len(v) == numbers[0]
        if name == "length" and len(numbers) == 2:
            return lambda v: numbers[0] <= len(v) <= numbers[1]
        if name == "min" and len(numbers) == 1:
            return lambda v: _is_int(v, 64) and int(v) >= numbers[0]
        if name == "max" and len(numbers) == 1:
            return lambda v: _is_int(v, 64) and int(v) <= numbers[0]
        if name == "range" and len(numbers) == 2:
            return lambda v: _is_int(v, 64) and numbers[0] <= int(v) <= numbers[1]
    except (ValueError, re.error) as error:
        raise RouteError(f"route {template!r}: bad constraint {text!r}: {error}") from error
    raise RouteError(f"route {template!r}: unknown or malformed constraint {text!r}")
