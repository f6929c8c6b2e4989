"""The explaining evaluator: for each requirement, every visa considered and why it did or did not count.

``decide`` runs the fast evaluator and asks this one only on a deny, for the reasons; ``policy
explain`` always runs it. Both follow the same definition of "a visa meets a requirement":
its type, issuer and fields match (``Requirement.accepts``), its ``exp`` has not passed, it may
count for the holder (linked identity, conditions met: ``VisaPool.support``), and everything it
relies on stays valid past the deadline (now + the requested duration, and
``asserted + max_assertion_age`` when the dataset sets one). A test holds the two evaluators to
the same answer.

Reasons for an unmet requirement, most useful first: a visa that matches but cannot count
(``not_linked``, ``conditions_unmet``, ``assertion_too_old``, ``expires_too_soon``, ``expired``);
else, when a visa the holder had from a since-revoked decision would have met it
(:class:`~broker.core.policy.decision.Withdrawn`), ``grant_revoked``; else visas of the type that
do not match (``no_matching_visa``, with the first mismatches); else ``missing_visa``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.core.models import Visa
from broker.core.policy.decision import Code, DenyReason, Withdrawn, duration, when
from broker.core.policy.matchers import Env
from broker.core.policy.nodes import AllOfNode, AnyOfNode, Compiled, Requirement
from broker.core.policy.pool import Unusable, VisaPool, effective_expiry

MATCHED = "matched"
MISMATCH = "mismatch"
# Which unusable verdict to report when several visas match but none counts.
_PRIORITY = (Code.NOT_LINKED, Code.CONDITIONS_UNMET, Code.ASSERTION_TOO_OLD, Code.EXPIRES_TOO_SOON, Code.EXPIRED)
MAX_MISMATCHES_REPORTED = 1  # in a deny reason; explanations show every visa


@dataclass(frozen=True)
class Verdict:
    """One visa considered for one requirement: ``outcome`` is ``matched``, ``mismatch`` or a Code."""

    visa: Visa
    outcome: str
    message: str
    field: str | None = None
    expires_at: int | None = None

    def to_json(self, index: dict[int, int]) -> dict[str, Any]:
        v = self.visa
        out: dict[str, Any] = {
            "index": index.get(id(v)),
            "jti": v.jti,
            "iss": v.iss,
            "sub": v.sub,
            "value": v.visa.value,
            "source": v.visa.source,
            "by": v.visa.by,
            "exp": v.exp,
            "outcome": self.outcome,
            "message": self.message,
        }
        if self.field is not None:
            out["field"] = self.field
        if self.expires_at is not None:
            out["expires_at"] = self.expires_at
        return out


@dataclass
class Trace:
    """One rule node evaluated with explanations (``kind`` is ``visa``, ``all_of`` or ``any_of``)."""

    id: str
    kind: str
    label: str | None
    where: str
    text: str
    met: bool
    expires_at: int | None
    verdicts: list[Verdict] = field(default_factory=list)
    children: list[Trace] = field(default_factory=list)
    reasons: list[DenyReason] = field(default_factory=list)

    def to_json(self, index: dict[int, int]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "where": self.where,
            "met": self.met,
            "expires_at": self.expires_at,
        }
        if self.kind == "visa":
            out["requirement"] = self.text
            out["visas"] = [v.to_json(index) for v in self.verdicts]
        else:
            out["children"] = [c.to_json(index) for c in self.children]
        if not self.met:
            out["reasons"] = [r.to_json() for r in self.reasons]
        return out


def trace_rule(
    node: Compiled,
    pool: VisaPool,
    env: Env,
    max_age: int | None,
    deadline: int,
    withdrawn: Sequence[Withdrawn] = (),
) -> Trace:
    """Evaluate ``node`` recording every verdict; ``deadline`` = now + requested duration."""
    if isinstance(node, Requirement):
        return _trace_requirement(node, pool, env, max_age, deadline, withdrawn)
    children = [trace_rule(child, pool, env, max_age, deadline, withdrawn) for child in node.children]
    if isinstance(node, AllOfNode):
        met = all(c.met for c in children)
        expiry = min((c.expires_at for c in children if c.expires_at is not None), default=None) if met else None
        kind, text = "all_of", "all of"
    else:
        assert isinstance(node, AnyOfNode)
        met = any(c.met for c in children)
        expiry = next((c.expires_at for c in children if c.met), None)  # the first met is used
        kind, text = "any_of", "any of"
    reasons = [] if met else [r for c in children if not c.met for r in c.reasons]
    return Trace(node.id, kind, node.label, str(node.where), text, met, expiry, children=children, reasons=reasons)


def _trace_requirement(
    req: Requirement, pool: VisaPool, env: Env, max_age: int | None, deadline: int, withdrawn: Sequence[Withdrawn]
) -> Trace:
    verdicts: list[Verdict] = []
    best: int | None = None
    for visa in pool.all_of_type(req.type):
        mismatch = req.mismatch(visa, env)
        if mismatch is not None:
            verdict = Verdict(visa, MISMATCH, mismatch[1], mismatch[0])
        else:
            verdict = classify(req, visa, pool, max_age, deadline)
        verdicts.append(verdict)
        expiry = verdict.expires_at
        if verdict.outcome == MATCHED and expiry is not None and (best is None or expiry > best):
            best = expiry
    text = req.describe(env)
    met = best is not None
    reasons: list[DenyReason] = []
    if not met:
        unusable = [v for v in verdicts if v.outcome != MISMATCH]
        mismatches = [(v.visa, v.message) for v in verdicts if v.outcome == MISMATCH][:MAX_MISMATCHES_REPORTED]
        reasons.append(requirement_reason(req, env, len(verdicts), unusable, mismatches, withdrawn))
    return Trace(req.id, "visa", req.label, str(req.where), text, met, best, verdicts=verdicts, reasons=reasons)


def classify(req: Requirement, visa: Visa, pool: VisaPool, max_age: int | None, deadline: int) -> Verdict:
    """For a visa whose type, issuer and fields match ``req``: does it count, and until when?"""
    if visa.exp <= pool.now:
        return Verdict(visa, Code.EXPIRED, f"matches, but expired at {when(visa.exp)}")
    support = pool.support(visa)
    if isinstance(support, Unusable):
        return Verdict(visa, support.code, f"matches, but {support.message}")
    expiry = effective_expiry(visa, support, max_age)
    if max_age is not None and visa.visa.asserted + max_age <= deadline:
        return Verdict(
            visa,
            Code.ASSERTION_TOO_OLD,
            f"matches, but was asserted at {when(visa.visa.asserted)}, longer ago than the dataset's "
            f"max_assertion_age ({duration(max_age)})",
        )
    if expiry <= deadline:
        relied = " (with the visas it relies on)" if support.links or support.conditions else ""
        return Verdict(
            visa,
            Code.EXPIRES_TOO_SOON,
            f"matches, but{relied} stays valid only until {when(expiry)}, not past {when(deadline)}",
            None,
            expiry,
        )
    how = []
    if support.links:
        how.append(f"linked to the holder by {len(support.links)} LinkedIdentities visa(s)")
    if support.conditions:
        how.append(f"conditions met by {len(support.conditions)} visa(s)")
    detail = f" ({'; '.join(how)})" if how else ""
    return Verdict(visa, MATCHED, f"matches{detail}, valid until {when(expiry)}", None, expiry)


def requirement_reason(
    req: Requirement,
    env: Env,
    considered: int,
    unusable: list[Verdict],
    mismatches: list[tuple[Visa, str]],
    withdrawn: Sequence[Withdrawn] = (),
) -> DenyReason:
    """The reason for an unmet requirement, from the visas of its type: ``considered`` of them,
    the ``unusable`` verdicts of those whose fields match, (the first) ``mismatches``, and the
    visas ``withdrawn`` from the holder by revoked decisions."""
    if not unusable:
        for gone in withdrawn:
            if req.accepts(gone.visa, env):
                who = req.label or req.describe(env)
                return DenyReason(
                    Code.GRANT_REVOKED,
                    f"{who}: {gone.what} was revoked at {when(gone.revoked_at)}; apply for access again",
                    req.id,
                )
    if not considered:
        return DenyReason(Code.MISSING_VISA, f"no {req.type} visa in the passport; needs {req.describe(env)}", req.id)
    who = req.label or req.describe(env)
    for code in _PRIORITY:
        for verdict in unusable:
            if verdict.outcome == code:
                return DenyReason(code, f"{who}: {req.type} visa {_name(verdict.visa)} {verdict.message}", req.id)
    shown = "; ".join(f"{_name(visa)}: {message}" for visa, message in mismatches[:MAX_MISMATCHES_REPORTED])
    first = " (first: " if considered > 1 else " ("
    return DenyReason(
        Code.NO_MATCHING_VISA, f"{who}: none of the {considered} {req.type} visa(s) matches{first}{shown})", req.id
    )


def _name(visa: Visa) -> str:
    return f"jti {visa.jti!r} from {visa.iss!r}" if visa.jti else f"from {visa.iss!r} (no jti)"
