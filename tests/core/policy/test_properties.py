"""Property tests: any_of / all_of are boolean OR / AND; the fast path, the reasons and the
explanation agree with the plain definition of a match."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.policy.compile import PolicySet, compile_policy
from broker.core.policy.explain import explain
from broker.core.policy.language import parse_file
from broker.core.policy.nodes import requirements
from broker.core.policy.pool import VisaPool
from broker.core.policy.yaml_nodes import compose_text
from tests.core.policy.support import BROKER, DAY, HOLDER, NOW, visa

LEAVES = 6

# A rule tree: a leaf number, or ("any_of" | "all_of", [children]).
trees = st.recursive(
    st.integers(min_value=0, max_value=LEAVES - 1),
    lambda children: st.tuples(st.sampled_from(["any_of", "all_of"]), st.lists(children, min_size=1, max_size=4)),
    max_leaves=12,
)


def to_rule(tree: Any) -> dict[str, Any]:
    if isinstance(tree, int):
        return {"visa": {"type": "ResearcherStatus", "value": f"const:urn:leaf:{tree}", "by": ["so", "system"]}}
    kind, children = tree
    return {kind: [to_rule(child) for child in children]}


def truth(tree: Any, present: set[int]) -> bool:
    if isinstance(tree, int):
        return tree in present
    kind, children = tree
    results = [truth(child, present) for child in children]
    return any(results) if kind == "any_of" else all(results)


def compile_text(text: str) -> PolicySet:
    errors: list = []
    node = compose_text(text, "memory.yaml")
    assert node is not None
    content = parse_file(node, errors)
    return compile_policy([content], version="test", directory="memory", files=(), errors=errors)


def policy_for(tree: Any) -> PolicySet:
    # JSON is YAML: the generated rule is written as one flow mapping.
    return compile_text(json.dumps({"datasets": {"D": {"description": "generated", "read": to_rule(tree)}}}))


@settings(max_examples=120, deadline=None)
@given(
    tree=trees,
    present=st.sets(st.integers(min_value=0, max_value=LEAVES - 1)),
    decoys=st.sets(st.integers(min_value=0, max_value=LEAVES - 1)),
)
def test_any_of_and_all_of_behave_as_boolean_or_and(tree: Any, present: set[int], decoys: set[int]) -> None:
    policy = policy_for(tree)
    visas = [visa("ResearcherStatus", f"urn:leaf:{n}", "https://s/", "so", jti=f"v{n}") for n in sorted(present)]
    # Decoys: the right value but a refused `by`, or another identity: they must never count.
    visas += [visa("ResearcherStatus", f"urn:leaf:{n}", "https://s/", "self", jti=f"d{n}") for n in sorted(decoys)]
    visas += [visa("ResearcherStatus", f"urn:leaf:{n}", "https://s/", "so", sub="mallory") for n in sorted(decoys)]
    decision = policy.decide(visas, None, "D", holder=HOLDER, now=NOW)
    assert decision.allow is truth(tree, present)
    if decision.allow:
        assert {b.jti for b in decision.basis} <= {f"v{n}" for n in present}
        assert decision.reasons == ()
    else:
        assert decision.reasons and decision.basis == ()
        # Every reason names a leaf requirement that really is unmet.
        unmet = {f"urn:leaf:{n}" for n in range(LEAVES) if n not in present}
        assert all(any(leaf in r.message for leaf in unmet) for r in decision.reasons)
    explanation = explain(policy, visas, None, "D", holder=HOLDER, now=NOW)
    assert explanation.trace is not None and explanation.trace.met is decision.allow


@settings(max_examples=120, deadline=None)
@given(
    value=st.sampled_from(
        ["urn:a", "urn:b", "urn:ab", "https://x/EGADD", "https://x/EGAD", "faculty@ki.se", "a@b@c", "", "urn:A"]
    ),
    source=st.sampled_from(["https://s/", "https://S/", "https://s"]),
    by=st.sampled_from([None, "so", "self", "dac"]),
    iss=st.sampled_from([BROKER, "https://other/"]),
    visa_type=st.sampled_from(["ResearcherStatus", "AffiliationAndRole", "ControlledAccessGrants"]),
    exp_days=st.integers(min_value=-1, max_value=3),
)
def test_fast_candidate_path_agrees_with_the_plain_definition(
    value: str, source: str, by: str | None, iss: str, visa_type: str, exp_days: int
) -> None:
    policy = compile_text(f"""
lists:
  sources: ["https://s/"]
datasets:
  D:
    description: several requirement shapes
    read:
      any_of:
        - visa: {{type: ResearcherStatus, value: [const:urn:a, list:sources], by: so, issuers: "{BROKER}"}}
        - visa: {{type: ResearcherStatus, value: "pattern:urn:?", source: list:sources}}
        - visa: {{type: AffiliationAndRole, role: faculty, affiliation: [ki.se, "pattern:*@c"]}}
        - visa: {{type: ControlledAccessGrants, value: "const:https://x/EGAD${{dataset}}", by: [dac, so]}}
""")
    v = visa(visa_type, value, source, by, iss=iss, sub="alice", exp=NOW + exp_days * DAY)
    pool = VisaPool([v], None, (iss, "alice"), NOW)
    resolved, _ = policy.resolve("D")
    assert resolved is not None
    for requirement in requirements(resolved.entry.rules["read"]):
        fast = any(
            c is v and requirement.accepts_candidate(c, resolved.env)
            for c in requirement.candidates(pool, resolved.env)
        )
        plain = v.exp > NOW and requirement.accepts(v, resolved.env)
        assert fast is plain
        assert (requirement.mismatch(v, resolved.env) is None) is requirement.accepts(v, resolved.env)
