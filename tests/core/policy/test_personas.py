"""Persona and test-case files: what they mean and how mistakes in them are reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.core.identity_graph import IdentityGraph
from broker.core.policy.errors import PolicyError, PolicyLoadError
from broker.core.policy.personas import diff_policies, load_cases, load_persona, load_personas, run_tests
from tests.core.policy.support import GRANT_DATASET, LISTS, NOW, load, write

PERSONA = """
description: someone with a grant and a link
holder: {iss: https://broker.example.org/, sub: alice}
purpose: DUO:0000042
visas:
  - type: ControlledAccessGrants
    iss: https://broker.example.org/
    sub: alice-2
    value: https://ega.example/datasets/EGAD0001
    source: https://ega-archive.org/dacs/EGAC00001000001
    by: dac
    asserted: -2d
    exp: +1h
  - type: LinkedIdentities
    iss: https://broker.example.org/
    sub: alice
    links: [{iss: https://broker.example.org/, sub: alice-2}]
    source: https://broker.example.org/
    exp: 1900003600
    jti: the-link
"""


def test_persona_file_becomes_visas_with_relative_and_absolute_times(tmp_path: Path) -> None:
    write(tmp_path, {"alice.yaml": PERSONA})
    persona = load_persona(tmp_path / "alice.yaml", now=NOW)
    assert persona.name == "alice" and persona.holder == ("https://broker.example.org/", "alice")
    grant, linker = persona.visas
    assert grant.exp == NOW + 3600 and grant.visa.asserted == NOW - 2 * 86400 and grant.jti == "alice#0"
    assert linker.exp == 1_900_003_600 and linker.jti == "the-link"
    graph = IdentityGraph.from_visas([linker])
    assert graph.linked(persona.holder, grant.identity)


@pytest.mark.parametrize(
    ("replace", "by", "line", "expected"),
    [
        ("    exp: +1h\n", "    exp: 1h\n", 12, "expected +DURATION, -DURATION"),
        ("    by: dac\n", "    by: dac\n    colour: red\n", 11, "unknown field 'colour'"),
        ("    by: dac\n", "    by: dacs\n", 10, "'dacs' is not a 'by' value"),
        ("    by: dac\n", "", 5, "must have 'by'"),
        ("  - type: ControlledAccessGrants\n", "  - type: ControlledAccessGrant\n", 5, "unknown visa type"),
        (
            "holder: {iss: https://broker.example.org/, sub: alice}\n",
            "holder: {iss: https://broker.example.org/}\n",
            2,
            "missing required field 'sub'",
        ),
        (
            "    links: [{iss: https://broker.example.org/, sub: alice-2}]\n",
            "    links: [{iss: https://broker.example.org/, sub: alice-2}]\n    value: x\n",
            16,
            "either value or links",
        ),
    ],
)
def test_persona_mistakes_have_lines(tmp_path: Path, replace: str, by: str, line: int, expected: str) -> None:
    assert replace in PERSONA
    write(tmp_path, {"p.yaml": PERSONA.replace(replace, by)})
    with pytest.raises(PolicyError) as caught:
        load_persona(tmp_path / "p.yaml", now=NOW)
    assert expected in caught.value.message and caught.value.line == line, str(caught.value)


def test_persona_conditions_are_checked_like_a_claim(tmp_path: Path) -> None:
    text = PERSONA.replace("    exp: +1h\n", "    exp: +1h\n    conditions: [[]]\n")
    write(tmp_path, {"p.yaml": text})
    with pytest.raises(PolicyError, match="empty array"):
        load_persona(tmp_path / "p.yaml", now=NOW)


def test_cases_and_their_mistakes(tmp_path: Path) -> None:
    write(
        tmp_path / "tests",
        {
            "a.yaml": """
        tests:
          - {name: ok, persona: alice, dataset: EGAD0001, expect: allow}
          - {name: bad expect, persona: alice, dataset: EGAD0001, expect: maybe}
          - {name: reasons on allow, persona: alice, dataset: EGAD0001, expect: allow, reasons: [x]}
        """
        },
    )
    with pytest.raises(PolicyLoadError) as caught:
        load_cases(tmp_path / "tests")
    assert [(e.line, e.message.split(",")[0]) for e in caught.value.errors] == [
        (3, "expected allow or deny"),
        (4, "reasons are checked only for expect: deny"),
    ]


def test_run_tests_and_diff_in_code(tmp_path: Path) -> None:
    policy = load(tmp_path / "rules", {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET})
    write(tmp_path / "personas", {"alice.yaml": PERSONA})
    write(
        tmp_path / "tests",
        {
            "t.yaml": """
        tests:
          - {name: linked grant, persona: alice, dataset: EGAD0001, expect: allow}
          - {name: needs two hours, persona: alice, dataset: EGAD0001, valid_for: 2h, expect: deny,
             reasons: [expires_too_soon]}
        """
        },
    )
    from broker.core.policy.personas import load_suite

    suite = load_suite(tmp_path / "personas", tmp_path / "tests", now=NOW)
    results = run_tests(policy, suite, now=NOW)
    assert [r.passed for r in results] == [True, True]
    other = load(tmp_path / "other", {"lists.yaml": LISTS, "datasets.yaml": GRANT_DATASET.replace("by: dac", "by: so")})
    flips = diff_policies(policy, other, load_personas(tmp_path / "personas", now=NOW).values(), now=NOW)
    assert [(f.persona, f.dataset, f.old.allow, f.new.allow) for f in flips] == [("alice", "EGAD0001", True, False)]
