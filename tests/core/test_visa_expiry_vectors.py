"""Passport 1.2 "Visa Expiry" (THREAT-MODEL GA-05, SPEC-DIGEST C12/C21), driven by the vectors.

``visa-expiry-vectors``: each numeric row decides through the real policy engine (Option A: a
dataset with ``max_assertion_age`` = maxAuthzTTL and ``valid_for`` = requestedTTL; Option B: no
``max_assertion_age``, ``valid_for`` = accessTokenTTL; "multi": the effective expiry over several
visas used is their minimum). ``visa-expiry-formulas``: the spec's formulas, as written, are
evaluated by a tiny interpreter and must agree with the engine for every value hypothesis tries.
"""

from __future__ import annotations

import ast
import functools
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.models import Visa
from broker.core.policy.compile import PolicySet
from tests.core.policy.support import load, visa
from tests.core.vectors import data

GRANT = "https://ega.example/datasets/EGAD0001"
HOLDER = ("https://broker.example.org/", "alice")


def policy_text(max_age: int | None) -> str:
    extra = f"    max_assertion_age: {max_age}s\n" if max_age is not None else ""
    return (
        "datasets:\n"
        "  EGAD0001:\n"
        "    description: one controlled-access dataset\n"
        "    read:\n"
        "      visa: {type: ControlledAccessGrants, value: const:" + GRANT + "}\n" + extra + "  MULTI:\n"
        "    description: needs three visas at once\n"
        "    read:\n"
        "      all_of:\n"
        "        - visa: {type: ControlledAccessGrants, value: const:" + GRANT + "}\n"
        "        - visa: {type: AffiliationAndRole, value: const:faculty@uio.no}\n"
        "        - visa: {type: ResearcherStatus, value: 'const:https://doi.org/10.1038/s41431-018-0219-y'}\n"
    )


@functools.lru_cache(maxsize=64)
def policy_for(max_age: int | None) -> PolicySet:
    directory = Path(tempfile.mkdtemp(prefix="expiry-policy-"))
    return load(directory, {"policy.yaml": policy_text(max_age)})


def grant(exp: int, asserted: int) -> Visa:
    return visa(value=GRANT, source="https://ega.example/dacs/1", by="dac", exp=exp, asserted=asserted, jti="g")


ROWS = data("visa-expiry-vectors")


@pytest.mark.parametrize("row", ROWS, ids=[f"visa-expiry-vectors-{i}" for i in range(len(ROWS))])
def test_visa_expiry_vector(row: dict[str, Any]) -> None:
    if row["option"] == "A":
        decision = policy_for(row["maxAuthzTTL"]).decide(
            [grant(row["exp"], row["asserted"])],
            dataset="EGAD0001",
            holder=HOLDER,
            now=row["now"],
            valid_for=row["requestedTTL"],
        )
        assert decision.allow is row["valid"], decision.reasons
        if decision.allow:
            assert decision.expires_at == row["rhs"]  # min(exp, asserted + maxAuthzTTL)
        else:
            assert decision.reasons[0].code in ("expires_too_soon", "assertion_too_old")
    elif row["option"] == "B":
        decision = policy_for(None).decide(
            [grant(row["exp"], row["now"] - 10)],
            dataset="EGAD0001",
            holder=HOLDER,
            now=row["now"],
            valid_for=row["accessTokenTTL"],
        )
        assert decision.allow is row["valid"], decision.reasons
        if decision.allow:
            assert decision.expires_at == row["exp"]
    else:
        assert row["option"] == "multi"
        exps = row["visa_exps"]
        now = min(exps) - 3600
        used = [
            grant(exps[0], now - 60),
            visa("AffiliationAndRole", "faculty@uio.no", "https://www.uio.no", "system", exp=exps[1], jti="a"),
            visa(
                "ResearcherStatus",
                "https://doi.org/10.1038/s41431-018-0219-y",
                "https://www.uio.no",
                "so",
                exp=exps[2],
                jti="r",
            ),
        ]
        decision = policy_for(None).decide(used, dataset="MULTI", holder=HOLDER, now=now)
        assert decision.allow and decision.expires_at == row["effective_exp"]
        assert {b.jti for b in decision.basis} == {"g", "a", "r"}


# ---------------------------------------------------------------------- the formulas, as written


_ALLOWED_CALLS = {"now", "min"}


def formula(text: str) -> Callable[[Mapping[str, Any]], bool]:
    """The spec's formula as a function of named values; only + < min() now() and dotted names."""
    tree = ast.parse(text, mode="eval")

    def value(node: ast.AST, env: Mapping[str, Any]) -> Any:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left, env) + value(node.right, env)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], ast.Lt):
            return value(node.left, env) < value(node.comparators[0], env)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ALLOWED_CALLS:
            args = [value(arg, env) for arg in node.args]
            return env["now"] if node.func.id == "now" else min(args)
        if isinstance(node, ast.Attribute):
            return getattr(value(node.value, env), node.attr)
        if isinstance(node, ast.Name):
            return env[node.id]
        raise AssertionError(f"unexpected syntax in the formula: {ast.dump(node)}")

    return lambda env: bool(value(tree.body, env))


FORMULAS = data("visa-expiry-formulas")


@pytest.mark.parametrize("option", ["optionA"], ids=["visa-expiry-formulas-optionA"])
@settings(max_examples=150, deadline=None)
@given(
    now=st.integers(10_000, 20_000),
    ttl=st.integers(0, 5_000),
    exp_offset=st.integers(-100, 8_000),
    asserted_offset=st.integers(-8_000, 0),
    max_age=st.sampled_from([1, 60, 500, 700, 3_600, 10_000]),
)
def test_visa_expiry_formula_option_a_agrees_with_the_engine(
    option: str, now: int, ttl: int, exp_offset: int, asserted_offset: int, max_age: int
) -> None:
    exp, asserted = now + exp_offset, now + asserted_offset
    token = SimpleNamespace(exp=exp, ga4gh_visa_v1=SimpleNamespace(asserted=asserted))
    expected = formula(FORMULAS[option])({"now": now, "requestedTTL": ttl, "token": token, "maxAuthzTTL": max_age})
    decision = policy_for(max_age).decide(
        [grant(exp, asserted)], dataset="EGAD0001", holder=HOLDER, now=now, valid_for=ttl
    )
    assert decision.allow is expected


@pytest.mark.parametrize("option", ["optionB"], ids=["visa-expiry-formulas-optionB"])
@settings(max_examples=150, deadline=None)
@given(now=st.integers(10_000, 20_000), ttl=st.integers(0, 5_000), exp_offset=st.integers(-100, 8_000))
def test_visa_expiry_formula_option_b_agrees_with_the_engine(option: str, now: int, ttl: int, exp_offset: int) -> None:
    exp = now + exp_offset
    token = SimpleNamespace(exp=exp)
    expected = formula(FORMULAS[option])({"now": now, "accessTokenTTL": ttl, "token": token})
    decision = policy_for(None).decide(
        [grant(exp, now - 10)], dataset="EGAD0001", holder=HOLDER, now=now, valid_for=ttl
    )
    assert decision.allow is expected
