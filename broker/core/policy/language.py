"""The policy language: what a policy file may say, parsed into plain records.

The full reference, with examples, is ``policies/README.md``. In short, a file in the policy
directory holds any of these top-level sections (each name is defined once across all files):

``lists``
    Named lists of exact strings (trusted DACs, trusted sources, issuers, institutions).
``rules``
    Reusable named rules: ``{description, rule}``.
``datasets``
    ``{<dataset id>: {description, read, data_use?, max_assertion_age?}}``.
``templates``
    One rule for many datasets: ``{description, datasets | dataset_pattern, read, ...}``;
    ``${dataset}`` (and per-dataset variables) are filled in per dataset.
``data_use_terms``
    The DUO terms datasets and purposes may name, each with its ``parent`` (section 10.1).

A rule is one mapping with exactly one of: ``visa`` (one visa requirement), ``any_of`` /
``all_of`` (lists of rules), ``rule`` (a named rule, optional ``with`` variables),
``registered_access`` (the GA4GH bona fide shorthand); any of them may carry a
``description``. A visa requirement names the visa ``type`` and matchers on ``value``,
``source``, ``by`` (and ``role`` / ``affiliation`` for AffiliationAndRole), plus the
``issuers`` it is trusted from.

A matcher is one or a list (any of) of: ``const:X`` (exact), ``pattern:G`` (Passport glob),
``split_pattern:G``, ``list:NAME`` (exactly one of a named list), or bare text without a
``:`` (exact). Text containing ``:`` must carry a prefix, so ``value: https://x`` is an error
that suggests ``const:https://x`` rather than a rule that never matches. ``issuers`` takes
exact strings and ``list:NAME`` only: an issuer is never matched by pattern.

This module only parses and checks shape; names are resolved and matchers built in
``compile.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from broker.core.conditions import MAX_PATTERN_LENGTH
from broker.core.models import (
    AFFILIATION_AND_ROLE,
    BY_VALUES,
    LINKED_IDENTITIES,
    REGISTERED_ACCESS_DOI,
    STANDARD_TYPES,
)
from broker.core.policy.errors import PolicyError
from broker.core.policy.yaml_nodes import Node

TOP_LEVEL = ("description", "lists", "rules", "datasets", "templates", "data_use_terms")
RULE_KINDS = ("visa", "any_of", "all_of", "rule", "registered_access")
VISA_FIELDS = ("type", "value", "source", "by", "role", "affiliation", "issuers", "description")
MATCHER_FIELDS = ("value", "source", "by", "role", "affiliation")
ACTIONS = ("read",)

MATCH_KINDS = ("const", "pattern", "split_pattern")
LIST_PREFIX = "list"

NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,127}")
VARIABLE_RE = re.compile(r"\$\{([^}]*)\}")
VARIABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
DATASET_VARIABLE = "dataset"
# Dataset ids: letters, digits and . _ : - (no '/', no glob characters, no whitespace), so an
# id can be put into a pattern matcher through ${dataset} without widening it.
DATASET_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,254}")
TERM_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*:[A-Za-z0-9_.-]+")
DURATION_RE = re.compile(r"([0-9]{1,9})\s*(s|m|h|d|y)?")
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400, None: 1}


@dataclass(frozen=True, slots=True)
class Where:
    """Where something was written: file, line, column and field path."""

    file: str
    line: int
    column: int
    field: str

    @classmethod
    def of(cls, node: Node) -> Where:
        return cls(node.file, node.line, node.column, node.path)

    def error(self, message: str) -> PolicyError:
        return PolicyError(self.file, self.line, self.column, self.field, message)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Spec:
    """One matcher alternative as written: kind (const, pattern, split_pattern, list) and text."""

    kind: str
    text: str
    where: Where

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(VARIABLE_RE.findall(self.text))

    def __str__(self) -> str:
        return f"{self.kind}:{self.text}"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """A matcher field: it matches when any of its alternatives does."""

    name: str
    alternatives: tuple[Spec, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class VisaReq:
    """One visa requirement: a visa of ``type`` whose fields all match, from an accepted issuer."""

    type: str
    matchers: tuple[FieldSpec, ...]
    issuers: FieldSpec | None
    description: str | None
    where: Where


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[RuleNode, ...]
    description: str | None
    where: Where


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[RuleNode, ...]
    description: str | None
    where: Where


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A use of a named rule; ``args`` fill its variables (values may use the caller's variables)."""

    name: str
    args: tuple[tuple[str, str], ...]
    description: str | None
    where: Where


RuleNode = VisaReq | AnyOf | AllOf | RuleRef


@dataclass(frozen=True, slots=True)
class ListDef:
    name: str
    description: str | None
    values: tuple[str, ...]
    where: Where


@dataclass(frozen=True, slots=True)
class RuleDef:
    name: str
    description: str
    rule: RuleNode
    where: Where


@dataclass(frozen=True, slots=True)
class AccessDef:
    """What a dataset or a template says about access (shared by both)."""

    description: str
    read: RuleNode
    data_use: Spec | None
    max_assertion_age: int | None


@dataclass(frozen=True, slots=True)
class DatasetDef:
    id: str
    access: AccessDef
    where: Where


@dataclass(frozen=True, slots=True)
class TemplateDef:
    """One rule for many datasets: listed ids (with per-dataset variables) or an id pattern."""

    name: str
    access: AccessDef
    datasets: tuple[tuple[str, tuple[tuple[str, str], ...], Where], ...]
    dataset_pattern: str | None
    where: Where


@dataclass(frozen=True, slots=True)
class TermDef:
    id: str
    label: str
    parent: str | None
    where: Where


@dataclass
class FileContent:
    """Everything one policy file defines."""

    file: str
    lists: list[ListDef] = field(default_factory=list)
    rules: list[RuleDef] = field(default_factory=list)
    datasets: list[DatasetDef] = field(default_factory=list)
    templates: list[TemplateDef] = field(default_factory=list)
    terms: list[TermDef] = field(default_factory=list)


class _Errors:
    """Collects mistakes so one run reports all of them; ``attempt`` runs a part and keeps going."""

    def __init__(self, sink: list[PolicyError]) -> None:
        self.sink = sink

    def attempt(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except PolicyError as exc:
            self.sink.append(exc)
            return None


def parse_file(root: Node, errors: list[PolicyError]) -> FileContent:
    """Parse one composed policy file; mistakes go to ``errors``, the rest is returned."""
    content = FileContent(root.file)
    collect = _Errors(errors)
    sections = collect.attempt(root.fields, TOP_LEVEL, (), "a mapping of sections (lists, rules, datasets, ...)")
    if sections is None:
        return content
    if "description" in sections:
        collect.attempt(sections["description"].text, "a description")
    if "lists" in sections:
        for name, key_node, node in _named_entries(sections["lists"], collect, "lists"):
            item = collect.attempt(_parse_list, name, key_node, node)
            if item is not None:
                content.lists.append(item)
    if "rules" in sections:
        for name, key_node, node in _named_entries(sections["rules"], collect, "named rules"):
            item = collect.attempt(_parse_rule_def, name, key_node, node)
            if item is not None:
                content.rules.append(item)
    if "datasets" in sections:
        entries = collect.attempt(lambda: list(sections["datasets"].entries("a mapping of dataset ids")))
        for dataset_id, key_node, node in entries or ():
            item = collect.attempt(_parse_dataset, dataset_id, key_node, node)
            if item is not None:
                content.datasets.append(item)
    if "templates" in sections:
        for name, key_node, node in _named_entries(sections["templates"], collect, "templates"):
            item = collect.attempt(_parse_template, name, key_node, node)
            if item is not None:
                content.templates.append(item)
    if "data_use_terms" in sections:
        entries = collect.attempt(lambda: list(sections["data_use_terms"].entries("a mapping of term ids")))
        for term_id, key_node, node in entries or ():
            item = collect.attempt(_parse_term, term_id, key_node, node)
            if item is not None:
                content.terms.append(item)
    return content


def _named_entries(node: Node, collect: _Errors, what: str) -> list[tuple[str, Node, Node]]:
    entries = collect.attempt(lambda: list(node.entries(f"a mapping of {what} by name")))
    out = []
    for name, key_node, value in entries or ():
        if not NAME_RE.fullmatch(name):
            collect.sink.append(
                key_node.error(
                    f"{name!r} is not a usable name (a letter, then letters, digits, '_', '.', '-')", field=value.path
                )
            )
            continue
        out.append((name, key_node, value))
    return out


# ---------------------------------------------------------------------------- sections


def _parse_list(name: str, key_node: Node, node: Node) -> ListDef:
    description = None
    if node.is_mapping:
        fields = node.fields(("description", "values"), ("values",))
        description = fields["description"].text("a description") if "description" in fields else None
        values_node = fields["values"]
    else:
        values_node = node
    values: list[str] = []
    seen: set[str] = set()
    for item in values_node.items():
        value = item.text("an exact value")
        if value in seen:
            raise item.error(f"{value!r} is listed twice")
        seen.add(value)
        values.append(value)
    if not values:
        raise values_node.error("a list needs at least one value (an empty list could never be met)")
    return ListDef(name, description, tuple(values), Where.of(key_node.child(key_node.raw, name)))


def _parse_rule_def(name: str, key_node: Node, node: Node) -> RuleDef:
    fields = node.fields(("description", "rule"), ("description", "rule"))
    return RuleDef(name, fields["description"].text("a description"), parse_rule(fields["rule"]), Where.of(node))


def _parse_access(fields: dict[str, Node]) -> AccessDef:
    data_use = None
    if "data_use" in fields:
        text = fields["data_use"].text("a data use term id, e.g. DUO:0000006")
        _check_variables(text, fields["data_use"])
        if not VARIABLE_RE.search(text) and not TERM_ID_RE.fullmatch(text):
            raise fields["data_use"].error(f"expected a term id such as DUO:0000006, got {text!r}")
        data_use = Spec("const", text, Where.of(fields["data_use"]))
    max_age = parse_duration(fields["max_assertion_age"], signed=False) if "max_assertion_age" in fields else None
    if max_age is not None and max_age <= 0:
        raise fields["max_assertion_age"].error("expected a duration greater than 0, e.g. 365d")
    return AccessDef(fields["description"].text("a description"), parse_rule(fields["read"]), data_use, max_age)


_ACCESS_FIELDS = ("description", "read", "data_use", "max_assertion_age")


def _parse_dataset(dataset_id: str, key_node: Node, node: Node) -> DatasetDef:
    if not DATASET_ID_RE.fullmatch(dataset_id):
        raise key_node.error(
            f"{dataset_id!r} is not a usable dataset id (letters, digits and . _ : - only, at most 255)",
            field=node.path,
        )
    fields = node.fields(_ACCESS_FIELDS, ("description", "read"), "a dataset (description, read, ...)")
    access = _parse_access(fields)
    used = set(_rule_variables(access.read)) | set(access.data_use.variables if access.data_use else ())
    extra = sorted(used - {DATASET_VARIABLE})
    if extra:
        # ${dataset} is allowed in datasets too, for rules shared with templates; others are not.
        raise fields["read"].error(
            f"variable ${{{extra[0]}}} is not defined for a single dataset "
            "(only ${dataset} is; use a template for per-dataset variables)"
        )
    return DatasetDef(dataset_id, access, Where.of(node))


def _parse_template(name: str, key_node: Node, node: Node) -> TemplateDef:
    fields = node.fields(
        (*_ACCESS_FIELDS, "datasets", "dataset_pattern"),
        ("description", "read"),
        "a template (description, datasets or dataset_pattern, read, ...)",
    )
    if ("datasets" in fields) == ("dataset_pattern" in fields):
        raise node.error("a template needs exactly one of 'datasets' (listed ids) or 'dataset_pattern'")
    access = _parse_access(fields)
    datasets: list[tuple[str, tuple[tuple[str, str], ...], Where]] = []
    pattern = None
    if "datasets" in fields:
        datasets_node = fields["datasets"]
        if datasets_node.is_list:
            for item in datasets_node.items():
                datasets.append((_dataset_id(item.text("a dataset id"), item), (), Where.of(item)))
        else:
            for dataset_id, id_node, bindings_node in datasets_node.entries(
                "a list of dataset ids or a mapping of dataset id to its variables"
            ):
                _dataset_id(dataset_id, id_node)
                bindings: list[tuple[str, str]] = []
                if not bindings_node.is_null:
                    for var, var_node, value_node in bindings_node.entries("a mapping of variable to value"):
                        if not VARIABLE_NAME_RE.fullmatch(var) or var == DATASET_VARIABLE:
                            raise var_node.error(f"{var!r} cannot be a variable name here", field=value_node.path)
                        value = value_node.text("the variable's value")
                        if "${" in value:
                            raise value_node.error("a variable's value cannot contain ${...}")
                        bindings.append((var, value))
                datasets.append((dataset_id, tuple(bindings), Where.of(bindings_node)))
        if not datasets:
            raise datasets_node.error("a template needs at least one dataset")
    else:
        pattern_node = fields["dataset_pattern"]
        pattern = pattern_node.text("a dataset id pattern such as EGAD*")
        if "*" not in pattern and "?" not in pattern:
            raise pattern_node.error("a dataset_pattern needs a * or ?; list single ids under 'datasets'")
        if not DATASET_ID_RE.fullmatch(pattern.replace("*", "x").replace("?", "x")):
            raise pattern_node.error(f"{pattern!r}: dataset id patterns use letters, digits, . _ : - and * ?")
        if pattern[0] in "*?":
            raise pattern_node.error(
                "a dataset_pattern must start with literal text (e.g. EGAD*), so it cannot "
                "cover every dataset by accident"
            )
        used = set(_rule_variables(access.read)) | set(access.data_use.variables if access.data_use else ())
        extra = sorted(used - {DATASET_VARIABLE})
        if extra:
            raise fields["read"].error(
                f"variable ${{{extra[0]}}} has no value: a dataset_pattern template only defines ${{dataset}}"
            )
    return TemplateDef(name, access, tuple(datasets), pattern, Where.of(node))


def _dataset_id(text: str, node: Node) -> str:
    if not DATASET_ID_RE.fullmatch(text):
        raise node.error(f"{text!r} is not a usable dataset id (letters, digits and . _ : - only, at most 255)")
    return text


def _parse_term(term_id: str, key_node: Node, node: Node) -> TermDef:
    if not TERM_ID_RE.fullmatch(term_id):
        raise key_node.error(f"{term_id!r} is not a term id such as DUO:0000006", field=node.path)
    fields = node.fields(("label", "parent"), ("label",), "a term (label, parent)")
    parent = fields["parent"].text("a parent term id") if "parent" in fields else None
    if parent is not None and not TERM_ID_RE.fullmatch(parent):
        raise fields["parent"].error(f"{parent!r} is not a term id such as DUO:0000042")
    return TermDef(term_id, fields["label"].text("a label"), parent, Where.of(node))


# ---------------------------------------------------------------------------- rules


def parse_rule(node: Node) -> RuleNode:
    """Parse one rule mapping (``visa``, ``any_of``, ``all_of``, ``rule`` or ``registered_access``)."""
    if not node.is_mapping:
        raise node.error(f"expected a rule (a mapping with one of: {', '.join(RULE_KINDS)}), got {node.describe()}")
    fields = node.fields((*RULE_KINDS, "description", "with"), (), "a rule")
    kinds = [k for k in RULE_KINDS if k in fields]
    if len(kinds) != 1:
        found = f"both {kinds[0]!r} and {kinds[1]!r}" if kinds else "none"
        raise node.error(f"a rule has exactly one of: {', '.join(RULE_KINDS)} (found {found})")
    kind = kinds[0]
    if "with" in fields and kind != "rule":
        raise fields["with"].error("'with' gives variables to a named rule; it goes next to 'rule'")
    description = fields["description"].text("a description") if "description" in fields else None
    body = fields[kind]
    if kind == "visa":
        return _parse_visa(body, description)
    if kind in ("any_of", "all_of"):
        children = tuple(parse_rule(item) for item in body.items())
        if not children:
            raise body.error(f"{kind} needs at least one rule")
        return (AnyOf if kind == "any_of" else AllOf)(children, description, Where.of(node))
    if kind == "rule":
        name = body.text("a rule name")
        if not NAME_RE.fullmatch(name):
            raise body.error(f"{name!r} is not a rule name")
        args: list[tuple[str, str]] = []
        if "with" in fields:
            for var, var_node, value_node in fields["with"].entries("a mapping of variable to value"):
                if not VARIABLE_NAME_RE.fullmatch(var):
                    raise var_node.error(f"{var!r} is not a variable name", field=value_node.path)
                value = value_node.text("the variable's value")
                _check_variables(value, value_node)
                args.append((var, value))
        return RuleRef(name, tuple(args), description, Where.of(body))
    return _parse_registered_access(body, description, Where.of(node))


def _parse_visa(
    node: Node, description: str | None, type_override: str | None = None, defaults: dict[str, FieldSpec] | None = None
) -> VisaReq:
    allowed = VISA_FIELDS if type_override is None else tuple(f for f in VISA_FIELDS if f != "type")
    fields = node.fields(allowed, ("type",) if type_override is None else (), "a visa requirement")
    if type_override is None:
        visa_type = fields["type"].text("a visa type")
        _check_type(visa_type, fields["type"])
    else:
        visa_type = type_override
    if "description" in fields:
        description = fields["description"].text("a description")
    specs: dict[str, FieldSpec] = dict(defaults or {})
    for name in MATCHER_FIELDS:
        if name in fields:
            specs[name] = parse_field(name, fields[name])
    if ("role" in specs or "affiliation" in specs) and visa_type != AFFILIATION_AND_ROLE:
        bad = fields.get("role") or fields["affiliation"]
        raise bad.error(
            f"role and affiliation are parts of an {AFFILIATION_AND_ROLE} value; this requirement is for {visa_type}"
        )
    if "value" in specs and ("role" in specs or "affiliation" in specs):
        raise node.error("use either 'value' or 'role'/'affiliation', not both")
    if not ({"value", "role", "affiliation"} & specs.keys()):
        what = "'value' (or 'role'/'affiliation')" if visa_type == AFFILIATION_AND_ROLE else "'value'"
        raise node.error(f"a visa requirement needs {what}: without it any {visa_type} visa would do")
    issuers = parse_issuers(fields["issuers"]) if "issuers" in fields else (defaults or {}).get("issuers")
    matchers = tuple(specs[name] for name in MATCHER_FIELDS if name in specs)
    return VisaReq(visa_type, matchers, issuers, description, Where.of(node))


def _parse_registered_access(node: Node, description: str | None, where: Where) -> AllOf:
    """``registered_access``: AcceptedTermsAndPolicies AND ResearcherStatus, both for the
    Registered Access document (SPEC-DIGEST 3.7, 10.2), each refinable under ``terms``/``status``."""
    fields = (
        {}
        if node.is_null
        else node.fields(
            ("issuers", "terms", "status", "document"),
            (),
            "registered access settings (issuers, terms, status, document)",
        )
    )
    document = fields["document"].text("the document URL") if "document" in fields else REGISTERED_ACCESS_DOI
    value = FieldSpec("value", (Spec("const", document, where),), where)
    shared: dict[str, FieldSpec] = {"value": value}
    if "issuers" in fields:
        shared["issuers"] = parse_issuers(fields["issuers"])
    children = []
    for part, visa_type, label in (
        ("terms", "AcceptedTermsAndPolicies", "registered access: terms accepted"),
        ("status", "ResearcherStatus", "registered access: bona fide researcher status"),
    ):
        if part in fields and not fields[part].is_null:
            children.append(_parse_visa(fields[part], label, visa_type, shared))
        else:
            matchers = (value,)
            children.append(VisaReq(visa_type, matchers, shared.get("issuers"), label, where))
    return AllOf(tuple(children), description or "registered access (GA4GH bona fide researcher)", where)


def parse_field(name: str, node: Node) -> FieldSpec:
    """A matcher field: one spec or a list of them (any of)."""
    alternatives = []
    for text, item in node.texts("a matcher such as const:..., pattern:..., list:NAME"):
        alternatives.append(parse_spec(name, text, item))
    return FieldSpec(name, tuple(alternatives), Where.of(node))


def parse_spec(name: str, text: str, node: Node) -> Spec:
    """One matcher alternative; text without ``:`` is exact, text with ``:`` needs a known prefix."""
    _check_variables(text, node)
    prefix, colon, rest = text.partition(":")
    if not colon:
        spec = Spec("const", text, Where.of(node))
    elif prefix in MATCH_KINDS:
        spec = Spec(prefix, rest, Where.of(node))
    elif prefix == LIST_PREFIX:
        if not NAME_RE.fullmatch(rest):
            raise node.error(f"{rest!r} is not a list name")
        return Spec(LIST_PREFIX, rest, Where.of(node))
    else:
        raise node.error(
            f"{text!r} does not start with const:, pattern:, split_pattern: or list:; "
            f"for an exact match write 'const:{text}'"
        )
    if spec.text == "":
        raise node.error(f"{text!r} matches only empty text, which no visa has")
    if spec.kind != "const" and len(spec.text) > MAX_PATTERN_LENGTH:
        raise node.error(f"pattern is {len(spec.text)} characters; the limit is {MAX_PATTERN_LENGTH}")
    if name == "by" and spec.kind == "const" and not spec.variables and spec.text not in BY_VALUES:
        raise node.error(f"{spec.text!r} is not a 'by' value (expected one of: {', '.join(sorted(BY_VALUES))})")
    return spec


def parse_issuers(node: Node) -> FieldSpec:
    """``issuers``: exact issuer strings and ``list:NAME``; never patterns (an issuer is a trust anchor)."""
    alternatives = []
    for text, item in node.texts("an issuer (exact text) or list:NAME"):
        _check_variables(text, item)
        if text.startswith(LIST_PREFIX + ":"):
            name = text[len(LIST_PREFIX) + 1 :]
            if not NAME_RE.fullmatch(name):
                raise item.error(f"{name!r} is not a list name")
            alternatives.append(Spec(LIST_PREFIX, name, Where.of(item)))
        elif text.startswith(("pattern:", "split_pattern:")):
            raise item.error("issuers are matched exactly; patterns are not allowed here")
        else:
            exact = text[len("const:") :] if text.startswith("const:") else text
            alternatives.append(Spec("const", exact, Where.of(item)))
    return FieldSpec("issuers", tuple(alternatives), Where.of(node))


def _check_type(visa_type: str, node: Node) -> None:
    if visa_type == LINKED_IDENTITIES:
        raise node.error(
            "LinkedIdentities visas link identities and are used automatically; they cannot be required to grant access"
        )
    if visa_type in STANDARD_TYPES:
        return
    if visa_type.startswith(("https://", "http://")) and len(visa_type) <= 255:
        return
    standard = ", ".join(sorted(STANDARD_TYPES - {LINKED_IDENTITIES}))
    raise node.error(f"unknown visa type {visa_type!r} (expected one of: {standard}; or a URL for a custom type)")


def _check_variables(text: str, node: Node) -> None:
    for name in VARIABLE_RE.findall(text):
        if not VARIABLE_NAME_RE.fullmatch(name):
            raise node.error(f"${{{name}}} is not a variable name (letters, digits, '_')")
    if text.count("${") != len(VARIABLE_RE.findall(text)):
        raise node.error("'${' starts a variable and needs a closing '}'")


def _rule_variables(node: RuleNode) -> list[str]:
    """Variables written directly in a rule (not those inside named rules it uses)."""
    if isinstance(node, VisaReq):
        out = [v for f in node.matchers for s in f.alternatives for v in s.variables]
        if node.issuers:
            out.extend(v for s in node.issuers.alternatives for v in s.variables)
        return out
    if isinstance(node, AnyOf | AllOf):
        return [v for child in node.children for v in _rule_variables(child)]
    return [v for _, value in node.args for v in VARIABLE_RE.findall(value)]


def parse_duration(node: Node, *, signed: bool) -> int:
    """``90``, ``30s``, ``15m``, ``12h``, ``30d``, ``1y`` (365 d) -> seconds; ``+``/``-`` when ``signed``."""
    text = node.text("a duration such as 30d")
    sign = 1
    body = text.strip()
    if signed and body[:1] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    match = DURATION_RE.fullmatch(body)
    if not match:
        example = "+30d, -1h" if signed else "365d, 12h"
        raise node.error(f"expected a duration such as {example} (units s, m, h, d, y), got {text!r}")
    return sign * int(match.group(1)) * DURATION_UNITS[match.group(2)]
