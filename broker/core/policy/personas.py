"""Policy tests as data: persona files, test case files, the test runner and the dry-run diff.

A **persona** (``personas/<name>.yaml``, the name is the file name) is a researcher as the
policy engine sees them: a holder identity and the visas they would present, written as
plain visa objects (no signing: the engine is tested on what verification hands it)::

    description: Alice, granted EGAD00001000001 by the breast cancer DAC
    holder: {iss: https://broker.example.org/, sub: alice}
    purpose: MONDO:0007254          # optional: the purpose this persona usually declares
    visas:
      - type: ControlledAccessGrants
        iss: https://broker.example.org/
        sub: alice
        value: https://ega-archive.org/datasets/EGAD00001000001
        source: https://ega-archive.org/dacs/EGAC00001000001
        by: dac
        asserted: -30d              # relative to the moment the test runs
        exp: +30d
        jti: alice-grant            # optional (default <persona>#<position>)

Times are ``+30d`` / ``-1h`` (relative to now, so a test never rots) or a plain integer (epoch
seconds). ``conditions`` takes the claim's JSON shape. A LinkedIdentities visa may give
``links: [{iss, sub}, ...]`` instead of ``value`` (encoded canonically).

A **test file** (``tests/*.yaml``) lists cases::

    tests:
      - name: alice reads the breast cancer dataset
        persona: alice
        dataset: EGAD00001000001
        purpose: MONDO:0007254      # optional; default the persona's purpose; null: none declared
        valid_for: 1h               # optional: access needed for this long
        expect: allow               # or deny
        reasons: [purpose_missing]  # optional, deny only: codes that must be among the reasons

:func:`run_tests` decides each case and reports pass or fail, with the full explanation of
each failure; :func:`diff_policies` decides every persona against every dataset under two
policy sets and lists the decisions that flip.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.core.conditions import conditions_from_claim
from broker.core.linked_identities import format_linked_identities
from broker.core.models import BY_REQUIRED_TYPES, BY_VALUES, LINKED_IDENTITIES, STANDARD_TYPES, Visa, VisaObject
from broker.core.policy.compile import PolicySet
from broker.core.policy.decide import decide
from broker.core.policy.decision import Decision
from broker.core.policy.errors import PolicyError, PolicyLoadError
from broker.core.policy.explain import explain, render_text
from broker.core.policy.language import DURATION_RE, parse_duration
from broker.core.policy.loader import POLICY_SUFFIXES
from broker.core.policy.nodes import READ
from broker.core.policy.yaml_nodes import Node, compose_file

PERSONA_FIELDS = ("description", "holder", "purpose", "visas")
VISA_FIELDS = ("type", "iss", "sub", "value", "links", "source", "by", "asserted", "iat", "exp", "jti", "conditions")
CASE_FIELDS = ("name", "persona", "dataset", "action", "purpose", "valid_for", "expect", "reasons")
_ABSOLUTE = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class Persona:
    name: str
    description: str | None
    holder: tuple[str, str]
    visas: tuple[Visa, ...]
    purpose: str | None
    file: str


@dataclass(frozen=True)
class Case:
    name: str
    persona: str
    dataset: str
    action: str
    purpose: str | None
    valid_for: int
    expect_allow: bool
    reasons: tuple[str, ...]
    file: str
    line: int
    purpose_given: bool = False  # True when the case sets purpose (possibly to null: none declared)

    def purpose_for(self, persona: Persona) -> str | None:
        """The purpose this case declares: its own if it sets one (null = none), else the persona's."""
        return self.purpose if self.purpose_given else persona.purpose


@dataclass
class CaseResult:
    case: Case
    decision: Decision
    passed: bool
    problem: str = ""
    explanation: str = ""


@dataclass
class Flip:
    persona: str
    dataset: str
    purpose: str | None
    old: Decision
    new: Decision


@dataclass
class Suite:
    personas: dict[str, Persona] = field(default_factory=dict)
    cases: list[Case] = field(default_factory=list)


# ---------------------------------------------------------------------------- reading


def _files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in POLICY_SUFFIXES)


def load_personas(directory: str | Path, *, now: int | None = None) -> dict[str, Persona]:
    """Every persona file of a directory, by name; raises :class:`PolicyLoadError`."""
    clock = int(time.time()) if now is None else now
    root = Path(directory)
    if not root.is_dir():
        raise PolicyLoadError([PolicyError(str(root), 0, 0, "", "persona directory not found")])
    errors: list[PolicyError] = []
    personas: dict[str, Persona] = {}
    for path in _files(root):
        try:
            personas[path.stem] = load_persona(path, now=clock)
        except PolicyError as exc:
            errors.append(exc)
    if errors:
        raise PolicyLoadError(errors)
    return personas


def load_persona(path: str | Path, *, now: int | None = None) -> Persona:
    """One persona file; raises :class:`PolicyError` at the first mistake."""
    clock = int(time.time()) if now is None else now
    file = Path(path)
    node = compose_file(file, str(file))
    if node is None:
        raise PolicyError(str(file), 0, 0, "", "empty persona file")
    fields = node.fields(PERSONA_FIELDS, ("holder", "visas"), "a persona (description, holder, visas)")
    holder = _identity(fields["holder"])
    visas = tuple(_visa(item, file.stem, index, clock) for index, item in enumerate(fields["visas"].items()))
    description = fields["description"].text("a description") if "description" in fields else None
    purpose = fields["purpose"].text("a data use term id") if "purpose" in fields else None
    return Persona(file.stem, description, holder, visas, purpose, str(file))


def _identity(node: Node) -> tuple[str, str]:
    fields = node.fields(("iss", "sub"), ("iss", "sub"), "an identity (iss, sub)")
    return fields["iss"].text("an issuer"), fields["sub"].text("a subject")


def _time(node: Node, now: int) -> int:
    text = node.text("a time such as +30d, -1h or epoch seconds").strip()
    if _ABSOLUTE.fullmatch(text):
        return int(text)
    if text[:1] not in "+-" or not DURATION_RE.fullmatch(text[1:]):
        raise node.error(f"expected +DURATION, -DURATION (units s, m, h, d, y) or epoch seconds, got {text!r}")
    return now + parse_duration(node, signed=True)


def _visa(node: Node, persona: str, index: int, now: int) -> Visa:
    fields = node.fields(VISA_FIELDS, ("type", "iss", "sub", "source", "exp"), "a visa")
    visa_type = fields["type"].text("a visa type")
    if "links" in fields:
        if visa_type != LINKED_IDENTITIES:
            raise fields["links"].error("links is for LinkedIdentities visas")
        if "value" in fields:
            raise fields["links"].error("give either value or links")
        try:
            value = format_linked_identities(_identity(item) for item in fields["links"].items())
        except ValueError as exc:
            raise fields["links"].error(str(exc)) from None
    elif "value" in fields:
        value = fields["value"].text("the visa value")
    else:
        raise node.error("missing required field 'value'")
    by = fields["by"].text("a by value") if "by" in fields else None
    # A persona holds visas as verification hands them over: refuse what it would refuse.
    if by is not None and by not in BY_VALUES:
        raise fields["by"].error(f"{by!r} is not a 'by' value (expected one of: {', '.join(sorted(BY_VALUES))})")
    if by is None and visa_type in BY_REQUIRED_TYPES:
        raise node.error(f"a {visa_type} visa must have 'by' (verification refuses it otherwise)")
    if visa_type not in STANDARD_TYPES and not visa_type.startswith(("https://", "http://")):
        raise fields["type"].error(f"unknown visa type {visa_type!r} (a standard type, or a URL for a custom type)")
    conditions = None
    if "conditions" in fields:
        try:
            conditions = conditions_from_claim(_plain(fields["conditions"]))
        except ValueError as exc:
            raise fields["conditions"].error(str(exc)) from None
    obj = VisaObject(
        type=visa_type,
        asserted=_time(fields["asserted"], now) if "asserted" in fields else now - 86400,
        value=value,
        source=fields["source"].text("the source URL"),
        by=by,
        conditions=conditions,
    )
    return Visa(
        iss=fields["iss"].text("an issuer"),
        sub=fields["sub"].text("a subject"),
        iat=_time(fields["iat"], now) if "iat" in fields else now - 60,
        exp=_time(fields["exp"], now),
        visa=obj,
        jti=fields["jti"].text("a jti") if "jti" in fields else f"{persona}#{index}",
    )


def _plain(node: Node) -> Any:
    """A node as plain JSON-like data (text scalars) for claim-shaped fields."""
    if node.is_mapping:
        return {key: _plain(value) for key, _, value in node.entries()}
    if node.is_list:
        return [_plain(item) for item in node.items()]
    return node.text()


def load_cases(directory: str | Path) -> list[Case]:
    """Every test case of every test file of a directory; raises :class:`PolicyLoadError`."""
    errors: list[PolicyError] = []
    cases: list[Case] = []
    for path in _files(Path(directory)):
        try:
            node = compose_file(path, str(path))
            if node is None:
                continue
            fields = node.fields(("description", "tests"), ("tests",), "a test file (description, tests)")
            for item in fields["tests"].items():
                try:
                    cases.append(_case(item))
                except PolicyError as exc:
                    errors.append(exc)
        except PolicyError as exc:
            errors.append(exc)
    if errors:
        raise PolicyLoadError(errors)
    return cases


def _case(node: Node) -> Case:
    fields = node.fields(CASE_FIELDS, ("name", "persona", "dataset", "expect"), "a test case")
    expect = fields["expect"].text("allow or deny")
    if expect not in ("allow", "deny"):
        raise fields["expect"].error(f"expected allow or deny, got {expect!r}")
    reasons: tuple[str, ...] = ()
    if "reasons" in fields:
        if expect == "allow":
            raise fields["reasons"].error("reasons are checked only for expect: deny")
        reasons = tuple(text for text, _ in fields["reasons"].texts("a reason code"))
    return Case(
        name=fields["name"].text("a name"),
        persona=fields["persona"].text("a persona name"),
        dataset=fields["dataset"].text("a dataset id"),
        action=fields["action"].text("an action") if "action" in fields else READ,
        purpose=None
        if "purpose" not in fields or fields["purpose"].is_null
        else fields["purpose"].text("a data use term id"),
        valid_for=parse_duration(fields["valid_for"], signed=False) if "valid_for" in fields else 0,
        expect_allow=expect == "allow",
        reasons=reasons,
        file=node.file,
        line=node.line,
        purpose_given="purpose" in fields,
    )


def load_suite(personas_dir: str | Path, tests_dir: str | Path, *, now: int | None = None) -> Suite:
    """Personas and cases, with every case's persona checked to exist."""
    personas = load_personas(personas_dir, now=now)
    cases = load_cases(tests_dir)
    missing = [
        PolicyError(
            c.file,
            c.line,
            0,
            "persona",
            f"no persona {c.persona!r} in {personas_dir} (known: {', '.join(sorted(personas)) or 'none'})",
        )
        for c in cases
        if c.persona not in personas
    ]
    if missing:
        raise PolicyLoadError(missing)
    return Suite(personas, cases)


# ---------------------------------------------------------------------------- running


def run_case(policy: PolicySet, persona: Persona, case: Case, *, now: int) -> CaseResult:
    purpose = case.purpose_for(persona)
    decision = decide(
        policy,
        persona.visas,
        None,
        case.dataset,
        case.action,
        purpose,
        persona.holder,
        now=now,
        valid_for=case.valid_for,
    )
    problem = ""
    if decision.allow != case.expect_allow:
        problem = f"expected {'allow' if case.expect_allow else 'deny'}, got {'allow' if decision.allow else 'deny'}"
    elif case.reasons:
        missing = [code for code in case.reasons if code not in decision.codes]
        if missing:
            problem = f"expected reason(s) {', '.join(missing)}; got {', '.join(decision.codes) or 'none'}"
    if not problem:
        return CaseResult(case, decision, True)
    text = render_text(
        explain(
            policy,
            persona.visas,
            None,
            case.dataset,
            case.action,
            purpose,
            persona.holder,
            now=now,
            valid_for=case.valid_for,
        )
    )
    return CaseResult(case, decision, False, problem, text)


def run_tests(policy: PolicySet, suite: Suite, *, now: int | None = None) -> list[CaseResult]:
    clock = int(time.time()) if now is None else now
    return [run_case(policy, suite.personas[case.persona], case, now=clock) for case in suite.cases]


def diff_policies(
    old: PolicySet,
    new: PolicySet,
    personas: Iterable[Persona],
    *,
    datasets: Sequence[str] = (),
    cases: Sequence[Case] = (),
    now: int | None = None,
) -> list[Flip]:
    """Decisions that differ (allow vs deny) between ``old`` and ``new``.

    Checked: every persona (with its own purpose) against every dataset listed explicitly in
    either policy plus ``datasets``; and every case in ``cases`` (its own purpose, duration).
    """
    clock = int(time.time()) if now is None else now
    ids = sorted(set(old.dataset_ids()) | set(new.dataset_ids()) | set(datasets))
    people = list(personas)
    by_name = {p.name: p for p in people}
    combos: list[tuple[Persona, str, str | None, str, int]] = [(p, d, p.purpose, READ, 0) for p in people for d in ids]
    combos += [
        (by_name[c.persona], c.dataset, c.purpose_for(by_name[c.persona]), c.action, c.valid_for)
        for c in cases
        if c.persona in by_name
    ]
    flips: list[Flip] = []
    seen: set[tuple[str, str, str | None, str, int]] = set()
    for persona, dataset, purpose, action, valid_for in combos:
        key = (persona.name, dataset, purpose, action, valid_for)
        if key in seen:
            continue
        seen.add(key)
        before = decide(
            old, persona.visas, None, dataset, action, purpose, persona.holder, now=clock, valid_for=valid_for
        )
        after = decide(
            new, persona.visas, None, dataset, action, purpose, persona.holder, now=clock, valid_for=valid_for
        )
        if before.allow != after.allow:
            flips.append(Flip(persona.name, dataset, purpose, before, after))
    return flips
