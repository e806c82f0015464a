"""HTTP routes: matching a request to a function as the Functions host's router does.

Owns the route templates of ASP.NET Core routing that HTTP triggers use,
under host.json's routePrefix: literal segments (case-insensitive),
`{name}`, `{name:constraint}` (int, long, bool, alpha, guid, decimal,
double, float; several may be chained), optional `{name?}` segments,
catch-all `{*name}` as the last segment, and complex segments such as
`{name}.{ext}`. Route values are URL-decoded. When several templates match,
the most specific wins (literal before constrained before plain before
optional before catch-all, segment by segment), as ASP.NET orders them.

A path whose template matches but whose method the function does not accept
finds no route: the real host answers 404 there, not 405.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from funchost.catalog import FunctionSpec
from funchost.config import ConfigError

_GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)"
CONSTRAINTS = {
    "int": re.compile(r"-?\d+"),
    "long": re.compile(r"-?\d+"),
    "bool": re.compile(r"true|false", re.IGNORECASE),
    "alpha": re.compile(r"[a-z]+", re.IGNORECASE),
    "guid": re.compile(rf"{_GUID}|\{{{_GUID}\}}|\({_GUID}\)|[0-9a-f]{{32}}", re.IGNORECASE),
    "decimal": re.compile(_NUMBER),
    "double": re.compile(_NUMBER),
    "float": re.compile(_NUMBER),
}
_TOKEN = re.compile(r"\{([^{}]*)\}")

# Segment kinds in ASP.NET's order of precedence, most specific first.
LITERAL, COMPLEX, CONSTRAINED, PLAIN, OPTIONAL, CATCH_ALL = range(6)


@dataclass(frozen=True)
class _Parameter:
    name: str
    constraints: tuple[str, ...]

    def accepts(self, value: str) -> bool:
        return all(CONSTRAINTS[c].fullmatch(value) for c in self.constraints)


@dataclass(frozen=True)
class Route:
    spec: FunctionSpec
    template: str
    methods: frozenset[str] | None
    pattern: re.Pattern
    parameters: tuple[_Parameter, ...]
    precedence: tuple[int, ...]

    def values(self, path: str) -> dict[str, str] | None:
        """The route values if `path` matches this template, else None."""
        match = self.pattern.match(path)
        if not match:
            return None
        values = {}
        for index, parameter in enumerate(self.parameters):
            raw = match.group(f"p{index}")
            if raw is None:
                continue
            value = unquote(raw)
            if not parameter.accepts(value):
                return None
            values[parameter.name] = value
        return values


@dataclass(frozen=True)
class RouteMatch:
    spec: FunctionSpec
    route_params: dict[str, str]


class RouteTable:
    def __init__(self, specs: Iterable[FunctionSpec], route_prefix: str) -> None:
        routes = [compile_route(spec, route_prefix) for spec in specs]
        _reject_ambiguous(routes)
        self.routes = sorted(routes, key=lambda r: (r.precedence, r.template))

    def match(self, method: str, path: str) -> RouteMatch | None:
        for route in self.routes:
            if route.methods is not None and method.upper() not in route.methods:
                continue
            values = route.values(path)
            if values is not None:
                return RouteMatch(route.spec, values)
        return None

    def methods_at(self, path: str) -> set[str]:
        """Methods some function accepts at `path`: to explain a 404 in the log."""
        methods: set[str] = set()
        for route in self.routes:
            if route.values(path) is not None:
                methods |= route.methods or {"any"}
        return methods


def compile_route(spec: FunctionSpec, route_prefix: str) -> Route:
    route = spec.trigger.route
    template = (spec.name if route is None else route).strip("/")
    what = f"function {spec.name}: route {template!r}"
    methods = spec.trigger.methods
    pattern = "^" + "".join("/" + re.escape(s) for s in route_prefix.split("/") if s)
    parameters: list[_Parameter] = []
    precedence: list[int] = []
    segments = template.split("/") if template else []
    for position, segment in enumerate(segments):
        regex, kind = _segment(segment, parameters, what)
        if kind == CATCH_ALL and position != len(segments) - 1:
            raise ConfigError(f"{what}: a catch-all parameter must be the last segment")
        pattern += regex
        precedence.append(kind)
    return Route(spec=spec, template=template,
                 methods=frozenset(_method_name(m) for m in methods) if methods else None,
                 pattern=re.compile(pattern + "/?$", re.IGNORECASE),
                 parameters=tuple(parameters), precedence=tuple(precedence))


def _segment(segment: str, parameters: list[_Parameter], what: str) -> tuple[str, int]:
    tokens = list(_TOKEN.finditer(segment))
    literals = _TOKEN.split(segment)[::2]
    if any("{" in text or "}" in text for text in literals):
        raise ConfigError(f"{what}: unbalanced braces in segment {segment!r}")
    if not tokens:
        return "/" + re.escape(segment), LITERAL
    if len(tokens) == 1 and tokens[0].group(0) == segment:
        body = tokens[0].group(1)
        group = f"(?P<p{len(parameters)}>"
        if body.startswith("*"):
            parameters.append(_parameter(body.lstrip("*"), what))
            return f"(?:/{group}.*))?", CATCH_ALL
        if body.endswith("?"):
            parameters.append(_parameter(body[:-1], what))
            return f"(?:/{group}[^/]+))?", OPTIONAL
        parameter = _parameter(body, what)
        parameters.append(parameter)
        return f"/{group}[^/]+)", CONSTRAINED if parameter.constraints else PLAIN
    regex = "/"
    for literal, token in zip(literals, tokens + [None]):
        regex += re.escape(literal)
        if token is not None:
            if token.group(1).startswith("*") or token.group(1).endswith("?"):
                raise ConfigError(f"{what}: optional and catch-all parameters must be a whole segment")
            regex += f"(?P<p{len(parameters)}>[^/]+?)"
            parameters.append(_parameter(token.group(1), what))
    return regex, COMPLEX


def _parameter(body: str, what: str) -> _Parameter:
    name, *constraints = body.split(":")
    if not re.fullmatch(r"\w+", name):
        raise ConfigError(f"{what}: parameter {{{body}}} is not supported (no defaults or odd names)")
    unknown = [c for c in constraints if c.lower() not in CONSTRAINTS]
    if unknown:
        raise ConfigError(f"{what}: route constraint {unknown[0]!r} is not supported "
                          f"(supported: {', '.join(CONSTRAINTS)})")
    return _Parameter(name, tuple(c.lower() for c in constraints))


def _method_name(method: object) -> str:
    return str(getattr(method, "value", method)).upper()


def _reject_ambiguous(routes: list[Route]) -> None:
    # Two functions answering the same template and method would make every such request ambiguous.
    seen: dict[str, list[Route]] = {}
    for route in routes:
        shape = _TOKEN.sub(lambda t: "{:" + ":".join(t.group(1).split(":")[1:]) + "}", route.template.lower())
        for other in seen.get(shape, []):
            if route.methods is None or other.methods is None or route.methods & other.methods:
                raise ConfigError(f"functions {other.spec.name} and {route.spec.name} both answer "
                                  f"route {route.template!r} for the same methods")
        seen.setdefault(shape, []).append(route)
