"""Compile parsed policy files into a :class:`PolicySet`: resolved names, matchers, an id index.

Everything a decision needs is prepared here, once per load:

- named rules are inlined (``with`` variables substituted; variables not given flow down from
  the dataset), lists resolved into exact sets, matchers compiled (``matchers.py``);
- every dataset id, explicit or listed under a template, goes into one dict
  ``id -> (entry, variables)``; templates with a ``dataset_pattern`` go into a
  :class:`PatternIndex` keyed by the pattern's literal prefix. A lookup is a dict hit, or a
  handful of prefix probes whose number depends on the templates, never on the datasets, so
  decision cost does not grow with 10,000 datasets;
- mistakes that would make a rule never (or wrongly) apply are errors with file and line: an
  undefined list, rule or data use term, an unbound or unused variable, a rule that uses
  itself, a dataset id defined twice, two dataset patterns that can cover the same id.

An explicit entry (a dataset, or an id listed under a template) takes precedence over a
``dataset_pattern``; ``policy check`` names each such override as a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from broker.core.conditions import GlobMatcher, Matcher, compile_matcher, compile_pattern
from broker.core.models import Visa
from broker.core.policy.decide import decide
from broker.core.policy.decision import Code, DenyReason
from broker.core.policy.duo import DataUseTerms, TermError
from broker.core.policy.errors import PolicyError, PolicyLoadError
from broker.core.policy.language import (
    DATASET_ID_RE,
    DATASET_VARIABLE,
    VARIABLE_RE,
    AccessDef,
    AllOf,
    AnyOf,
    DatasetDef,
    FieldSpec,
    FileContent,
    ListDef,
    RuleDef,
    RuleNode,
    RuleRef,
    TemplateDef,
    VisaReq,
    Where,
)
from broker.core.policy.matchers import FieldMatcher, TemplatedSpec, TextTemplate
from broker.core.policy.nodes import (
    READ,
    AllOfNode,
    AnyOfNode,
    Compiled,
    Requirement,
    requirements,
)


@dataclass(frozen=True)
class Entry:
    """A dataset or a template, compiled: its rule per action, data use term, limits, origin."""

    kind: str  # "dataset" or "template"
    name: str
    description: str
    rules: Mapping[str, Compiled]
    data_use: TextTemplate | None
    max_assertion_age: int | None
    where: Where
    dataset_pattern: str | None = None
    _origin: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        what = f"dataset {self.name}" if self.kind == "dataset" else f"template {self.name}"
        object.__setattr__(self, "_origin", f"{what} ({self.where})")

    def origin(self) -> str:
        """``dataset X (file:line)`` or ``template T (file:line)``: which entry decided."""
        return self._origin


class Resolved(NamedTuple):
    """A dataset id resolved to its entry and its variables (``dataset`` plus template bindings)."""

    dataset: str
    entry: Entry
    env: Mapping[str, str]


class PatternIndex:
    """Templates by ``dataset_pattern``, found by the pattern's literal prefix.

    Patterns must start with literal text (``EGAD*``), so a lookup probes the dict once per
    distinct prefix length among the patterns (a few), then runs the glob of the few patterns
    in that bucket: cost independent of the number of datasets the patterns cover.
    """

    def __init__(self, items: Iterable[tuple[str, Entry]]) -> None:
        self._buckets: dict[str, list[tuple[GlobMatcher | None, Entry]]] = {}
        for pattern, entry in items:
            prefix = pattern[: min(i for i in (pattern.find("*"), pattern.find("?"), len(pattern)) if i >= 0)]
            # "PREFIX*" matches exactly the ids in its bucket: no glob to run (None).
            glob = None if pattern == prefix + "*" else compile_pattern(pattern)
            self._buckets.setdefault(prefix, []).append((glob, entry))
        self._lengths = sorted({len(prefix) for prefix in self._buckets})

    def __len__(self) -> int:
        return sum(len(b) for b in self._buckets.values())

    def lookup(self, dataset_id: str) -> list[Entry]:
        found: list[Entry] = []
        for length in self._lengths:
            if length > len(dataset_id):
                break
            bucket = self._buckets.get(dataset_id[:length])
            if bucket:
                found.extend(entry for glob, entry in bucket if glob is None or glob.matches(dataset_id))
        return found


@dataclass
class PolicySet:
    """The compiled rules of one policy directory, immutable once built (swap, never edit)."""

    version: str
    directory: str
    files: tuple[str, ...]
    explicit: dict[str, tuple[Entry, Mapping[str, str]]]
    patterns: PatternIndex
    terms: DataUseTerms
    lists: dict[str, ListDef]
    rules: dict[str, RuleDef]
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...] = ()

    def resolve(self, dataset: str) -> tuple[Resolved | None, DenyReason | None]:
        """The entry for a dataset id, or the reason there is none (exact, case-sensitive lookup)."""
        if type(dataset) is not str:
            return None, DenyReason(Code.UNKNOWN_DATASET, "a dataset id is text")
        hit = self.explicit.get(dataset)
        if hit is not None:
            return Resolved(dataset, hit[0], hit[1]), None
        if not _dataset_id_ok(dataset):
            return None, DenyReason(Code.UNKNOWN_DATASET, f"no dataset {dataset[:80]!r} (not a usable dataset id)")
        found = self.patterns.lookup(dataset)
        if len(found) == 1:
            return Resolved(dataset, found[0], {DATASET_VARIABLE: dataset}), None
        if found:
            names = ", ".join(e.name for e in found)
            return None, DenyReason(Code.AMBIGUOUS_DATASET, f"templates {names} all cover this id")
        return None, DenyReason(Code.UNKNOWN_DATASET, f"no dataset {dataset!r} in policy {self.version}")

    def dataset_ids(self) -> list[str]:
        """Every explicitly listed dataset id (pattern templates cover ids that cannot be listed)."""
        return sorted(self.explicit)

    def decide(
        self,
        verified_visas: Iterable[Visa],
        identity_graph: Any = None,
        dataset: str = "",
        action: str = READ,
        purpose: str | None = None,
        holder: tuple[str, str] | None = None,
        **options: Any,
    ) -> Any:
        """See :func:`broker.core.policy.decide.decide`."""
        return decide(self, verified_visas, identity_graph, dataset, action, purpose, holder, **options)


def _dataset_id_ok(dataset: str) -> bool:
    return DATASET_ID_RE.fullmatch(dataset) is not None


# ---------------------------------------------------------------------------- the compiler


class _Compiler:
    def __init__(self, contents: list[FileContent]) -> None:
        self.errors: list[PolicyError] = []
        self.warnings: list[str] = []
        self.lists: dict[str, ListDef] = {}
        self.rules: dict[str, RuleDef] = {}
        self.used_lists: set[str] = set()
        self.used_rules: set[str] = set()
        self.contents = contents

    def fail(self, where: Where, message: str) -> None:
        self.errors.append(where.error(message))

    # --- definitions

    def collect(self) -> None:
        for content in self.contents:
            for item in content.lists:
                if item.name in self.lists:
                    self.fail(item.where, f"list {item.name!r} is already defined at {self.lists[item.name].where}")
                else:
                    self.lists[item.name] = item
            for rule in content.rules:
                if rule.name in self.rules:
                    self.fail(rule.where, f"rule {rule.name!r} is already defined at {self.rules[rule.name].where}")
                else:
                    self.rules[rule.name] = rule

    # --- rules

    def compile_rule(self, node: RuleNode, path: str, subst: Mapping[str, str], stack: tuple[str, ...]) -> Compiled:
        """Compile one rule; raises PolicyError for the first mistake in it."""
        if isinstance(node, VisaReq):
            return self._compile_visa(node, path, subst)
        if isinstance(node, AnyOf | AllOf):
            key = "any_of" if isinstance(node, AnyOf) else "all_of"
            children = tuple(
                self.compile_rule(child, f"{path}.{key}[{i}]", subst, stack) for i, child in enumerate(node.children)
            )
            cls = AnyOfNode if isinstance(node, AnyOf) else AllOfNode
            return cls(path, node.description, children, node.where)
        assert isinstance(node, RuleRef)
        definition = self.rules.get(node.name)
        if definition is None:
            close = sorted(self.rules)
            raise node.where.error(f"rule {node.name!r} is not defined (defined rules: {', '.join(close) or 'none'})")
        if node.name in stack:
            raise node.where.error(f"rule {node.name!r} uses itself ({' > '.join([*stack, node.name])})")
        self.used_rules.add(node.name)
        inner = dict(subst)
        for var, value in node.args:
            if not self._rule_uses(definition.rule, var, (node.name,)):
                raise node.where.error(f"rule {node.name!r} has no variable ${{{var}}}")
            inner[var] = _substitute(value, subst)
        compiled = self.compile_rule(definition.rule, f"{path}.rule:{node.name}", inner, (*stack, node.name))
        label = node.description or definition.description
        if isinstance(compiled, Requirement):
            return compiled.relabel(compiled.label or label)
        return type(compiled)(compiled.id, compiled.label or label, compiled.children, compiled.where)

    def _rule_uses(self, node: RuleNode, var: str, stack: tuple[str, ...]) -> bool:
        if isinstance(node, VisaReq):
            specs = [s for f in node.matchers for s in f.alternatives]
            specs += list(node.issuers.alternatives) if node.issuers else []
            return any(var in s.variables for s in specs)
        if isinstance(node, AnyOf | AllOf):
            return any(self._rule_uses(child, var, stack) for child in node.children)
        if any(var in VARIABLE_RE.findall(value) for _, value in node.args):
            return True
        if var in dict(node.args):
            return False  # the named rule gets its own value for `var`
        definition = self.rules.get(node.name)
        if definition is None or node.name in stack:
            return False
        return self._rule_uses(definition.rule, var, (*stack, node.name))

    def _compile_visa(self, node: VisaReq, path: str, subst: Mapping[str, str]) -> Requirement:
        checks = tuple((spec.name, self._matcher(spec, subst)) for spec in node.matchers)
        issuers = self._matcher(node.issuers, subst) if node.issuers is not None else None
        return Requirement(path, node.description, node.type, checks, issuers, node.where)

    def _matcher(self, spec: FieldSpec, subst: Mapping[str, str]) -> FieldMatcher:
        exact: set[str] = set()
        globs: list[tuple[str, Matcher]] = []
        templated: list[TemplatedSpec] = []
        shown: list[str] = []
        lists: list[tuple[str, tuple[str, ...]]] = []
        for alternative in spec.alternatives:
            text = _substitute(alternative.text, subst)
            shown.append(f"{alternative.kind}:{text}")
            if alternative.kind == "list":
                definition = self.lists.get(text)
                if definition is None:
                    raise alternative.where.error(
                        f"list {text!r} is not defined (defined lists: {', '.join(sorted(self.lists)) or 'none'})"
                    )
                self.used_lists.add(text)
                exact.update(definition.values)
                lists.append((text, definition.values))
            elif VARIABLE_RE.search(text):
                templated.append(TemplatedSpec(alternative.kind, TextTemplate.parse(text)))
            elif alternative.kind == "const":
                exact.add(text)
            else:
                matcher = compile_matcher(f"{alternative.kind}:{text}")
                if matcher is None:  # pragma: no cover - the parser only lets known kinds through
                    raise alternative.where.error(f"cannot compile {alternative.kind}:{text}")
                globs.append((f"{alternative.kind}:{text}", matcher))
        return FieldMatcher(frozenset(exact), tuple(globs), tuple(templated), tuple(shown), tuple(lists))

    # --- datasets and templates

    def compile_access(self, access: AccessDef) -> tuple[dict[str, Compiled], set[str], set[str]]:
        """Compile an entry's rules; returns (rules, variables used, variables used inside globs)."""
        read = self.compile_rule(access.read, READ, {}, ())
        used: set[str] = set()
        glob_used: set[str] = set()
        for requirement in requirements(read):
            for _, matcher in requirement.checks:
                used |= matcher.variables()
                glob_used |= matcher.glob_variables()
            if requirement.issuers:
                used |= requirement.issuers.variables()
        if access.data_use is not None:
            used.update(access.data_use.variables)
        return {READ: read}, used, glob_used


def _substitute(text: str, subst: Mapping[str, str]) -> str:
    if not subst or "${" not in text:
        return text
    return VARIABLE_RE.sub(lambda m: subst.get(m.group(1), m.group(0)), text)


def globs_overlap(a: str, b: str) -> bool:
    """True when some text matches both Passport globs (``*``, ``?``; every other character literal).

    A dynamic program over positions of both patterns: from ``(i, j)`` a ``*`` may be skipped
    or consume one character the other side produces; two non-stars advance together when
    they are compatible (equal, or either is ``?``). O(len(a) * len(b)).
    """
    n, m = len(a), len(b)
    reach = [[False] * (m + 1) for _ in range(n + 1)]
    reach[0][0] = True
    for i in range(n + 1):
        for j in range(m + 1):
            if not reach[i][j]:
                continue
            if i < n and a[i] == "*":
                reach[i + 1][j] = True
                if j < m:
                    reach[i][j + 1] = True  # the star consumes b's next symbol (or b's star skips)
            if j < m and b[j] == "*":
                reach[i][j + 1] = True
                if i < n:
                    reach[i + 1][j] = True
            if i < n and j < m and a[i] != "*" and b[j] != "*" and (a[i] == b[j] or "?" in (a[i], b[j])):
                reach[i + 1][j + 1] = True
    return reach[n][m]


def compile_policy(
    contents: list[FileContent],
    *,
    version: str,
    directory: str,
    files: tuple[str, ...],
    errors: list[PolicyError] | None = None,
) -> PolicySet:
    """Build the :class:`PolicySet`; raises :class:`PolicyLoadError` with every mistake found."""
    c = _Compiler(contents)
    if errors:
        c.errors.extend(errors)
    c.collect()

    # Data use terms: one hierarchy across files.
    term_defs: dict[str, tuple[str, str | None]] = {}
    term_where: dict[str, Where] = {}
    for content in contents:
        for term in content.terms:
            if term.id in term_defs:
                c.fail(term.where, f"term {term.id} is already defined at {term_where[term.id]}")
                continue
            term_defs[term.id] = (term.label, term.parent)
            term_where[term.id] = term.where
    try:
        terms = DataUseTerms.build(term_defs)
    except TermError as exc:
        c.fail(term_where[exc.term], str(exc))
        terms = DataUseTerms({})

    explicit: dict[str, tuple[Entry, Mapping[str, str]]] = {}
    defined_at: dict[str, Where] = {}
    entries: list[Entry] = []
    pattern_items: list[tuple[str, Entry, Where]] = []

    def check_term(access: AccessDef, env: Mapping[str, str], where: Where) -> None:
        if access.data_use is None:
            return
        term = _substitute(access.data_use.text, env)
        if term not in terms:
            c.fail(
                where if VARIABLE_RE.search(access.data_use.text) else access.data_use.where,
                f"data use term {term} is not defined under data_use_terms",
            )

    def add(dataset_id: str, entry: Entry, env: Mapping[str, str], where: Where) -> None:
        if dataset_id in defined_at:
            c.fail(where, f"dataset {dataset_id} is already defined at {defined_at[dataset_id]}")
            return
        defined_at[dataset_id] = where
        explicit[dataset_id] = (entry, env)

    for content in contents:
        for dataset in content.datasets:
            entry = _attempt(c, _compile_dataset, c, dataset)
            if entry is None:
                continue
            entries.append(entry)
            add(dataset.id, entry, {DATASET_VARIABLE: dataset.id}, dataset.where)
            check_term(dataset.access, {DATASET_VARIABLE: dataset.id}, dataset.where)
        for template in content.templates:
            compiled = _attempt(c, _compile_template, c, template)
            if compiled is None:
                continue
            entry, used, glob_used = compiled
            entries.append(entry)
            if template.dataset_pattern is not None:
                pattern_items.append((template.dataset_pattern, entry, template.where))
                continue
            for dataset_id, bindings, where in template.datasets:
                env = {DATASET_VARIABLE: dataset_id, **dict(bindings)}
                missing = sorted(used - env.keys())
                unused = sorted(env.keys() - used - {DATASET_VARIABLE})
                if missing:
                    c.fail(
                        where,
                        f"dataset {dataset_id} gives no value for ${{{missing[0]}}}, which template "
                        f"{template.name} uses",
                    )
                    continue
                if unused:
                    c.fail(where, f"template {template.name} does not use ${{{unused[0]}}}")
                    continue
                widening = [v for v in glob_used if v != DATASET_VARIABLE and ("*" in env[v] or "?" in env[v])]
                if widening:
                    c.fail(where, f"${{{widening[0]}}} is used in a pattern, so its value cannot contain * or ?")
                    continue
                add(dataset_id, entry, env, where)
                check_term(template.access, env, where)

    # Pattern templates: no two may cover the same id; explicit ids they cover take precedence.
    for index, (pattern, _, where) in enumerate(pattern_items):
        for other_pattern, other, _ in pattern_items[:index]:
            if globs_overlap(pattern, other_pattern):
                c.fail(
                    where,
                    f"dataset_pattern {pattern!r} can cover the same ids as {other_pattern!r} of template "
                    f"{other.name} ({other.where}); make them disjoint",
                )
    patterns = PatternIndex((pattern, entry) for pattern, entry, _ in pattern_items)
    for dataset_id, (entry, _) in sorted(explicit.items()):
        for shadowed in patterns.lookup(dataset_id):
            c.warnings.append(
                f"{defined_at[dataset_id]}: {entry.origin()} takes precedence over "
                f"template {shadowed.name} for {dataset_id}"
            )

    for name, definition in sorted(c.lists.items()):
        if name not in c.used_lists:
            c.warnings.append(f"{definition.where}: list {name!r} is not used by any rule")
    for name, rule in sorted(c.rules.items()):
        if name not in c.used_rules:
            c.warnings.append(f"{rule.where}: rule {name!r} is not used by any dataset or template")

    if c.errors:
        raise PolicyLoadError(sorted(c.errors, key=lambda e: (e.file, e.line, e.column)))
    return PolicySet(
        version=version,
        directory=directory,
        files=files,
        explicit=explicit,
        patterns=patterns,
        terms=terms,
        lists=c.lists,
        rules=c.rules,
        entries=tuple(entries),
        warnings=tuple(c.warnings),
    )


def _attempt(c: _Compiler, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except PolicyError as exc:
        c.errors.append(exc)
        return None


def _compile_dataset(c: _Compiler, dataset: DatasetDef) -> Entry:
    rules, used, _ = c.compile_access(dataset.access)
    unbound = sorted(used - {DATASET_VARIABLE})
    if unbound:
        raise _variable_site(rules, unbound[0], dataset.where).error(
            f"${{{unbound[0]}}} has no value for dataset {dataset.id} (only ${{dataset}} is defined here)"
        )
    access = dataset.access
    data_use = TextTemplate.parse(access.data_use.text) if access.data_use else None
    return Entry("dataset", dataset.id, access.description, rules, data_use, access.max_assertion_age, dataset.where)


def _compile_template(c: _Compiler, template: TemplateDef) -> tuple[Entry, set[str], set[str]]:
    rules, used, glob_used = c.compile_access(template.access)
    if template.dataset_pattern is not None:
        unbound = sorted(used - {DATASET_VARIABLE})
        if unbound:
            raise _variable_site(rules, unbound[0], template.where).error(
                f"${{{unbound[0]}}} has no value: template {template.name} covers a dataset_pattern, which "
                "defines only ${dataset}"
            )
    access = template.access
    data_use = TextTemplate.parse(access.data_use.text) if access.data_use else None
    entry = Entry(
        "template",
        template.name,
        access.description,
        rules,
        data_use,
        access.max_assertion_age,
        template.where,
        template.dataset_pattern,
    )
    return entry, used, glob_used


def _variable_site(rules: Mapping[str, Compiled], var: str, default: Where) -> Where:
    for rule in rules.values():
        for requirement in requirements(rule):
            for _, matcher in requirement.checks:
                if var in matcher.variables():
                    return requirement.where
    return default
