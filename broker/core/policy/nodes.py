"""The compiled forms of policy rules: a requirement on one visa, and the all_of / any_of nodes over them.

:mod:`broker.core.policy.compile` builds them; :mod:`broker.core.policy.decide` and
:mod:`broker.core.policy.trace` evaluate and explain them. They live apart from the compiler so
that evaluation never imports it (the compiler's ``PolicySet.decide`` calls the evaluator).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.core.models import Visa
from broker.core.policy.language import Where
from broker.core.policy.matchers import FIELD_GETTERS, Env, FieldMatcher, TextTemplate

if TYPE_CHECKING:
    from broker.core.policy.pool import VisaPool

READ = "read"
# A requirement's exact values are looked up one by one in the request's (type, value) index up
# to this many; a longer list (a big list:NAME) is checked by scanning the visas of the type.
MAX_INDEXED_VALUES = 16


# ---------------------------------------------------------------------------- compiled rules


class Requirement:
    """One compiled visa requirement. ``id`` is its path (``read.any_of[1].rule:bona_fide``).

    Built for the hot path: when ``value`` is exact (``const:``, ``list:``, or a ``const:``
    template such as ``.../datasets/${dataset}``) the candidates are found by a dict lookup of
    ``(type, value)`` in the request's :class:`~broker.core.policy.pool.VisaPool` instead of a scan of
    the visas; exact-only fields are checked by frozenset membership. :meth:`accepts` is the
    plain definition (type, issuer and every field match) that the fast path must agree with.
    """

    __slots__ = (
        "_described",
        "_issuers_exact",
        "_rest_exact",
        "_rest_other",
        "_value_indexed",
        "_value_keys",
        "_value_templates",
        "checks",
        "id",
        "issuers",
        "label",
        "type",
        "where",
    )

    def __init__(
        self,
        id: str,
        label: str | None,
        type: str,
        checks: tuple[tuple[str, FieldMatcher], ...],
        issuers: FieldMatcher | None,
        where: Where,
    ) -> None:
        self.id = id
        self.label = label
        self.type = type
        self.checks = checks  # (field name, matcher), in the order of MATCHER_FIELDS
        self.issuers = issuers
        self.where = where
        value = dict(checks).get("value")
        self._value_indexed = (
            value is not None
            and not value.globs
            and len(value.exact) <= MAX_INDEXED_VALUES
            and all(spec.kind == "const" for spec in value.templated)
        )
        self._value_keys: tuple[str, ...] = ()
        self._value_templates: tuple[TextTemplate, ...] = ()
        if self._value_indexed:
            assert value is not None
            self._value_keys = tuple(sorted(value.exact))
            self._value_templates = tuple(spec.template for spec in value.templated)
        rest = [(name, m) for name, m in checks if not (self._value_indexed and name == "value")]
        self._rest_exact = tuple((FIELD_GETTERS[name], m.exact) for name, m in rest if m.only_exact)
        self._rest_other = tuple((FIELD_GETTERS[name], m) for name, m in rest if not m.only_exact)
        self._issuers_exact = issuers.exact if issuers is not None and issuers.only_exact else None
        self._described: str | None = None
        if all(not m.templated for _, m in checks) and (issuers is None or not issuers.templated):
            self._described = self.describe({})

    def __repr__(self) -> str:
        return f"Requirement({self.id!r}, {self.type!r})"

    def relabel(self, label: str | None) -> Requirement:
        return Requirement(self.id, label, self.type, self.checks, self.issuers, self.where)

    def candidates(self, pool: VisaPool, env: Env) -> Sequence[Visa]:
        """Live visas of the pool that may match: by value lookup when indexed (of any type: the
        type is checked by :meth:`accepts_candidate`), else the live visas of the type."""
        if not self._value_indexed:
            return pool.of_type(self.type)
        index = pool.by_value
        keys = self._value_keys
        templates = self._value_templates
        if not templates and len(keys) == 1:
            return index.get(keys[0], ())
        if not keys and len(templates) == 1:
            return index.get(templates[0].render(env), ())
        out: list[Visa] = []
        for key in keys:
            out.extend(index.get(key, ()))
        for template in templates:
            out.extend(index.get(template.render(env), ()))
        return out

    def accepts_candidate(self, visa: Visa, env: Env) -> bool:
        """For a visa from :meth:`candidates`: type, issuer and the fields not covered by the lookup."""
        if visa.visa.type != self.type:
            return False
        allowed = self._issuers_exact
        if allowed is not None:
            if visa.iss not in allowed:
                return False
        elif self.issuers is not None and not self.issuers.test(visa.iss, env):
            return False
        obj = visa.visa
        for getter, exact in self._rest_exact:
            if getter(obj) not in exact:  # an absent claim (None) is in no set of strings
                return False
        for getter, matcher in self._rest_other:
            actual = getter(obj)
            if actual is None or not matcher.test(actual, env):
                return False
        return True

    def accepts(self, visa: Visa, env: Env) -> bool:
        """True when the visa is of this type, from an accepted issuer, and every field matches."""
        if visa.visa.type != self.type:
            return False
        if self.issuers is not None and not self.issuers.test(visa.iss, env):
            return False
        obj = visa.visa
        for name, matcher in self.checks:
            actual = FIELD_GETTERS[name](obj)
            if actual is None or not matcher.test(actual, env):
                return False
        return True

    def mismatch(self, visa: Visa, env: Env) -> tuple[str, str] | None:
        """The first field that does not match, as ``(field, sentence)``; None when it matches."""
        if visa.visa.type != self.type:
            return "type", f"type {visa.visa.type!r} is not {self.type}"
        if self.issuers is not None and not self.issuers.test(visa.iss, env):
            return "issuers", f"issuer {visa.iss!r} is not {self.issuers.describe(env)}"
        for name, matcher in self.checks:
            actual = FIELD_GETTERS[name](visa.visa)
            if actual is None:
                if name == "by":
                    return name, f"has no 'by' (unknown authority), needs {matcher.describe(env)}"
                return name, f"value {visa.visa.value!r} has no '@', so it has no {name}"
            if not matcher.test(actual, env):
                return name, f"{name} {actual!r} does not match {matcher.describe(env)}"
        return None

    def describe(self, env: Env) -> str:
        """The requirement in one line, variables filled in."""
        if self._described is not None:
            return self._described
        parts = [self.type]
        for name, matcher in self.checks:
            parts.append(f"{name} {matcher.describe(env)}")
        parts.append(f"issued by {self.issuers.describe(env)}" if self.issuers else "from any trusted issuer")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class AllOfNode:
    id: str
    label: str | None
    children: tuple[Compiled, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class AnyOfNode:
    id: str
    label: str | None
    children: tuple[Compiled, ...]
    where: Where


Compiled = Requirement | AllOfNode | AnyOfNode


def requirements(node: Compiled) -> Iterable[Requirement]:
    """Every visa requirement in a compiled rule, in the order written."""
    if isinstance(node, Requirement):
        yield node
    else:
        for child in node.children:
            yield from requirements(child)
