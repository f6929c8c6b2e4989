"""Compiled field matchers of visa requirements: exact sets, Passport globs, and templates.

A requirement field (``value``, ``source``, ``by``, ``role``, ``affiliation``, ``issuers``)
matches when any of its alternatives does. Compiling puts every exact alternative (``const:``
and the members of ``list:`` lists) into one frozenset, so an exact check is one hash lookup
however long the trusted list is; globs (``pattern:``, ``split_pattern:``) are the matchers of
``broker.core.conditions.compile_matcher``, the same linear-time automaton the conditions use
(no second glob implementation, no backtracking regex: THREAT-MODEL GA-15).

Alternatives with variables (``const:https://x/datasets/${dataset}``) stay templates: the text
is split once into literal parts and variable names, and filled from the dataset's variables at
decision time (a join, then an exact compare). A template glob is compiled through the bounded
LRU cache of ``compile_pattern``. A variable value containing ``*`` or ``?`` must never widen a
pattern: such a fill fails to match (and the loader refuses such values up front).

Comparisons are exact and case-sensitive, never prefix, substring or URL-normalized (GA-02),
and nothing here performs I/O: URL claims are opaque text (GA-03).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from broker.core.conditions import Matcher, compile_matcher
from broker.core.models import VisaObject
from broker.core.policy.language import VARIABLE_RE

Env = Mapping[str, str]
GLOB_CHARACTERS = frozenset("*?")


@dataclass(frozen=True, slots=True)
class TextTemplate:
    """Text with ``${name}`` variables, pre-split into literal parts and variable names."""

    text: str
    parts: tuple[tuple[bool, str], ...]  # (is_variable, literal text or variable name)
    single: tuple[str, str, str] | None = None  # (prefix, variable, suffix) when there is one variable

    @classmethod
    def parse(cls, text: str) -> TextTemplate:
        parts: list[tuple[bool, str]] = []
        position = 0
        for match in VARIABLE_RE.finditer(text):
            if match.start() > position:
                parts.append((False, text[position : match.start()]))
            parts.append((True, match.group(1)))
            position = match.end()
        if position < len(text):
            parts.append((False, text[position:]))
        names = [piece for is_var, piece in parts if is_var]
        single = None
        if len(names) == 1:
            prefix, _, suffix = text.partition("${" + names[0] + "}")
            single = (prefix, names[0], suffix)
        return cls(text, tuple(parts), single)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(name for is_var, name in self.parts if is_var)

    def render(self, env: Env) -> str:
        """The text with every variable filled in; ``KeyError`` for an unbound variable."""
        single = self.single
        if single is not None:
            return single[0] + env[single[1]] + single[2]
        return "".join(env[piece] if is_var else piece for is_var, piece in self.parts)

    def render_for_glob(self, env: Env) -> str | None:
        """Like :meth:`render`, but ``None`` when a filled value contains a glob character."""
        out = []
        for is_var, piece in self.parts:
            if is_var:
                value = env[piece]
                if not GLOB_CHARACTERS.isdisjoint(value):
                    return None
                out.append(value)
            else:
                out.append(piece)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class TemplatedSpec:
    """One alternative with variables: kind (const, pattern, split_pattern) and its text template."""

    kind: str
    template: TextTemplate

    def test(self, actual: str, env: Env) -> bool:
        if self.kind == "const":
            return actual == self.template.render(env)
        filled = self.template.render_for_glob(env)
        if filled is None:
            return False
        matcher = compile_matcher(f"{self.kind}:{filled}")
        return matcher is not None and matcher.matches(actual)


@dataclass(frozen=True, slots=True)
class FieldMatcher:
    """Any-of over: an exact set, compiled globs, and templates filled per dataset.

    ``shown`` keeps the alternatives as written (``list:trusted_dacs``, ``pattern:...``) for
    explanations and the required-visas document; ``lists`` maps each used list name to its values.
    """

    exact: frozenset[str]
    globs: tuple[tuple[str, Matcher], ...]  # (spec as written, matcher)
    templated: tuple[TemplatedSpec, ...]
    shown: tuple[str, ...]
    lists: tuple[tuple[str, tuple[str, ...]], ...] = ()
    _shown_templates: tuple[TextTemplate, ...] = ()
    _described: str | None = None  # describe() when no alternative has a variable

    def __post_init__(self) -> None:
        object.__setattr__(self, "_shown_templates", tuple(TextTemplate.parse(text) for text in self.shown))
        if not any("${" in text for text in self.shown):
            object.__setattr__(self, "_described", " or ".join(self.shown))

    @property
    def only_exact(self) -> bool:
        """True when every alternative is an exact value known at load (const:, list:)."""
        return not self.globs and not self.templated

    def test(self, actual: str, env: Env) -> bool:
        if actual in self.exact:
            return True
        for _, matcher in self.globs:
            if matcher.matches(actual):
                return True
        return any(spec.test(actual, env) for spec in self.templated)

    def variables(self) -> set[str]:
        return {name for spec in self.templated for name in spec.template.variables}

    def glob_variables(self) -> set[str]:
        return {name for spec in self.templated if spec.kind != "const" for name in spec.template.variables}

    def describe(self, env: Env) -> str:
        """The alternatives as written, variables filled: ``const:X or list:trusted_dacs``."""
        if self._described is not None:
            return self._described
        return " or ".join(_render(template, env) for template in self._shown_templates)

    def to_json(self, env: Env) -> dict[str, Any]:
        """Machine-readable: ``{"one_of": [...], "patterns": [...], "split_patterns": [...]}``."""
        exact: list[str] = []
        patterns: list[str] = []
        split_patterns: list[str] = []
        lists = dict(self.lists)
        for text in self.shown:
            kind, _, rest = text.partition(":")
            rest = _fill(rest, env)
            if kind == "list":
                exact.extend(lists.get(rest, ()))
            elif kind == "const":
                exact.append(rest)
            elif kind == "pattern":
                patterns.append(rest)
            else:
                split_patterns.append(rest)
        out: dict[str, Any] = {}
        if exact:
            out["one_of"] = list(dict.fromkeys(exact))
        if patterns:
            out["patterns"] = patterns
        if split_patterns:
            out["split_patterns"] = split_patterns
        named = [text.partition(":")[2] for text in self.shown if text.startswith("list:")]
        if named:
            out["lists"] = named
        return out


def _render(template: TextTemplate, env: Env) -> str:
    """Like :meth:`TextTemplate.render`, but an unbound variable stays written as ``${name}``."""
    if "${" not in template.text:
        return template.text
    try:
        return template.render(env)
    except KeyError:
        return template.text


def _fill(text: str, env: Env) -> str:
    if "${" not in text:
        return text
    return VARIABLE_RE.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def _role(visa: VisaObject) -> str | None:
    value = visa.value
    return value[: value.index("@")] if isinstance(value, str) and "@" in value else None


def _affiliation(visa: VisaObject) -> str | None:
    # Split at the FIRST '@' only: "faculty@a.edu@evil.test" has affiliation "a.edu@evil.test".
    value = visa.value
    return value[value.index("@") + 1 :] if isinstance(value, str) and "@" in value else None


# How each requirement field reads its text from the visa object. An absent claim is None,
# which no matcher accepts (absent `by` is "unknown": SPEC-DIGEST 2.1).
FIELD_GETTERS: dict[str, Callable[[VisaObject], str | None]] = {
    "value": attrgetter("value"),
    "source": attrgetter("source"),
    "by": attrgetter("by"),
    "role": _role,
    "affiliation": _affiliation,
}
