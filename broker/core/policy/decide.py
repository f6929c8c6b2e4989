"""Decide one request: may the holder of these verified visas perform ``action`` on ``dataset``?

The cost of a decision does not depend on how many datasets the policy has: the dataset is
one dict lookup (or a few prefix probes for pattern templates) into the compiled
:class:`~broker.core.policy.compile.PolicySet`; then only the dataset's rule is evaluated. The
request's visas are indexed once by value (:class:`~broker.core.policy.pool.VisaPool`), so a
requirement with an exact value looks only at the visas with that value, and any other
requirement only at the visas of its type.

Semantics (fail closed throughout; DESIGN rule 1):

- ``all_of`` is met when every part is met, ``any_of`` when at least one is; a visa
  requirement is met by one visa of its type whose issuer and fields all match, whose ``exp``
  has not passed, which counts for the holder (same identity, or linked by trusted
  LinkedIdentities visas; conditions met), and which, with every visa it relies on, stays
  valid past ``now + valid_for`` (Passport "Visa Expiry", Option A when the dataset sets
  ``max_assertion_age``). Where several visas meet one requirement, the one valid longest is
  used; of an ``any_of``, the first alternative met in the order written is used (so a
  decision does not pay for alternatives it does not need; write the usual case first).
- A dataset with data use terms also needs a compatible declared ``purpose`` (``duo.py``);
  purpose and visas are checked separately and both must pass.
- The holder is the identity the visas must belong to (normally the passport's ``iss``/``sub``).
  When not given, it is the one identity of the visas (or of linked ones); visas of several
  unlinked identities without a holder are a deny (``holder_unknown``). ``identity_binding``
  (normally the passport's, ``PassportResult.identity_binding``) says whether visas of the
  holder's ``sub`` from other issuers count as the holder's own (``same_sub``) or need a
  trusted link like any other identity (``linked``, the default).
- Any exception while deciding is logged and becomes a deny with ``internal_error``; never an
  allow (THREAT-MODEL GA-15).
- Nothing here does I/O: URL-valued claims are compared as text, never fetched (GA-03).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, cast

from broker.core.identity_graph import IdentityGraph
from broker.core.models import IdentityBinding, Visa
from broker.core.policy.decision import Basis, Code, Decision, DenyReason, Withdrawn
from broker.core.policy.matchers import Env
from broker.core.policy.nodes import READ, AllOfNode, AnyOfNode, Compiled, Requirement
from broker.core.policy.pool import Support, VisaPool, effective_expiry
from broker.core.policy.trace import MAX_MISMATCHES_REPORTED, classify, requirement_reason

if TYPE_CHECKING:
    from broker.core.policy.compile import PolicySet

log = logging.getLogger(__name__)

Pick = tuple[Requirement, Visa, Support]
Result = tuple[int, tuple[Pick, ...]] | None


def decide(
    policy: PolicySet,
    verified_visas: Iterable[Visa],
    identity_graph: IdentityGraph | None = None,
    dataset: str = "",
    action: str = READ,
    purpose: str | None = None,
    holder: tuple[str, str] | None = None,
    *,
    now: int | None = None,
    valid_for: int = 0,
    identity_binding: IdentityBinding | str = IdentityBinding.LINKED,
    withdrawn: Sequence[Withdrawn] = (),
) -> Decision:
    """Allow or deny, with effective expiry, basis and reasons (see the module docstring).

    ``verified_visas`` are visas that passed verification (signature, trust, expiry, ...).
    ``identity_graph`` links identities (built from the LinkedIdentities visas among
    ``verified_visas`` when None). ``now`` defaults to the clock; ``valid_for`` is the number of
    seconds the access must stay valid (the requested TTL of Option A/B). ``withdrawn`` are
    visas the holder lost to revocation: they only turn a deny's ``missing_visa`` into
    ``grant_revoked`` (:class:`~broker.core.policy.decision.Withdrawn`), never allow.
    """
    try:
        binding = IdentityBinding(identity_binding)
        return _decide(
            policy,
            verified_visas,
            identity_graph,
            dataset,
            action,
            purpose,
            holder,
            now,
            valid_for,
            binding,
            tuple(withdrawn),
        )
    except Exception:
        log.exception("policy evaluation failed (dataset %r, action %r); denying", dataset, action)
        reason = DenyReason(Code.INTERNAL_ERROR, "the policy engine failed while deciding; access is denied")
        return Decision(False, str(dataset), str(action), None, (), (reason,), policy.version, purpose)


def _deny(
    policy: PolicySet, dataset: str, action: str, purpose: str | None, *reasons: DenyReason, entry: str | None = None
) -> Decision:
    return Decision(False, dataset, action, None, (), tuple(reasons), policy.version, purpose, entry)


def _decide(
    policy: PolicySet,
    visas: Iterable[Visa],
    graph: IdentityGraph | None,
    dataset: str,
    action: str,
    purpose: str | None,
    holder: tuple[str, str] | None,
    now: int | None,
    valid_for: int,
    binding: IdentityBinding = IdentityBinding.LINKED,
    withdrawn: tuple[Withdrawn, ...] = (),
) -> Decision:
    resolved, why = policy.resolve(dataset)
    if resolved is None:
        assert why is not None
        return _deny(policy, dataset, action, purpose, why)
    entry = resolved.entry
    origin = entry.origin()
    rule = entry.rules.get(action)
    if rule is None:
        actions = ", ".join(sorted(entry.rules))
        return _deny(
            policy,
            dataset,
            action,
            purpose,
            DenyReason(Code.UNKNOWN_ACTION, f"dataset {dataset} grants only: {actions}"),
            entry=origin,
        )
    if valid_for < 0:
        raise ValueError("valid_for must not be negative")
    clock = int(time.time()) if now is None else now
    pool = VisaPool(visas, graph, holder, clock, binding)
    reasons: list[DenyReason] = []
    if entry.data_use is not None:
        check = policy.terms.check(entry.data_use.render(resolved.env), purpose)
        if check.code is not None:
            reasons.append(DenyReason(check.code, check.message, "data_use"))
    if pool.holder_problem is not None:
        reasons.append(DenyReason(Code.HOLDER_UNKNOWN, pool.holder_problem))
        return _deny(policy, dataset, action, purpose, *reasons, entry=origin)
    deadline = clock + valid_for
    result = _evaluate(rule, pool, resolved.env, entry.max_assertion_age, deadline)
    if result is None:
        reasons[:0] = _reasons(rule, pool, resolved.env, entry.max_assertion_age, deadline, withdrawn)
        return _deny(policy, dataset, action, purpose, *reasons, entry=origin)
    if reasons:
        return _deny(policy, dataset, action, purpose, *reasons, entry=origin)
    expiry, picks = result
    return Decision(True, dataset, action, expiry, _basis(picks), (), policy.version, purpose, origin)


def _evaluate(node: Compiled, pool: VisaPool, env: Env, max_age: int | None, deadline: int) -> Result:
    """The fast evaluator: best (latest) effective expiry and the visas picked, or None if unmet."""
    if type(node) is Requirement:
        best_expiry = -1
        best: Pick | None = None
        for visa in node.candidates(pool, env):
            if not node.accepts_candidate(visa, env):
                continue
            support = pool.support(visa)
            if not isinstance(support, Support):
                continue
            if max_age is None and not support.links and not support.conditions:
                expiry = visa.exp
            else:
                expiry = effective_expiry(visa, support, max_age)
            if expiry > deadline and expiry > best_expiry:
                best_expiry, best = expiry, (node, visa, support)
        return None if best is None else (best_expiry, (best,))
    if type(node) is AllOfNode:
        lowest = None
        picks: tuple[Pick, ...] = ()
        for child in node.children:
            result = _evaluate(child, pool, env, max_age, deadline)
            if result is None:
                return None
            if lowest is None or result[0] < lowest:
                lowest = result[0]
            picks += result[1]
        assert lowest is not None
        return lowest, picks
    for child in cast(AnyOfNode, node).children:  # any_of: the first alternative met, in the order written
        result = _evaluate(child, pool, env, max_age, deadline)
        if result is not None:
            return result
    return None


def _reasons(
    node: Compiled,
    pool: VisaPool,
    env: Env,
    max_age: int | None,
    deadline: int,
    withdrawn: tuple[Withdrawn, ...] = (),
) -> list[DenyReason]:
    """Why an unmet rule is unmet: one reason per unmet requirement under it (deny path only).

    Met-ness of each part comes from :func:`_evaluate` itself, so reasons never contradict the
    decision; for a requirement, the visas whose fields match are found through the same value
    index as the fast path, plus expired ones (which the fast path never sees).
    """
    if type(node) is not Requirement:
        out: list[DenyReason] = []
        for child in cast(AllOfNode | AnyOfNode, node).children:
            if _evaluate(child, pool, env, max_age, deadline) is None:
                out.extend(_reasons(child, pool, env, max_age, deadline, withdrawn))
        return out
    of_type = pool.all_of_type(node.type)
    matching = [visa for visa in node.candidates(pool, env) if node.accepts_candidate(visa, env)]
    matching += [visa for visa in of_type if visa.exp <= pool.now and node.accepts(visa, env)]
    unusable = [classify(node, visa, pool, max_age, deadline) for visa in matching]
    mismatches: list[tuple[Visa, str]] = []
    if not unusable:
        for visa in of_type:
            found = node.mismatch(visa, env)
            if found is not None:
                mismatches.append((visa, found[1]))
                if len(mismatches) == MAX_MISMATCHES_REPORTED:
                    break
    return [requirement_reason(node, env, len(of_type), unusable, mismatches, withdrawn)]


def _basis(picks: tuple[Pick, ...]) -> tuple[Basis, ...]:
    out: list[Basis] = []
    for requirement, visa, support in picks:
        out.append(_one(requirement.id, "grant", visa))
        for link in support.links:
            out.append(_one(requirement.id, "link", link))
        for other in support.conditions:
            # Condition-satisfiers, with any LinkedIdentities visas linking them to the conditioned visa.
            out.append(_one(requirement.id, "condition", other))
    return tuple(out)


_new_tuple = tuple.__new__


def _one(requirement: str, use: str, visa: Visa) -> Basis:
    obj = visa.visa
    # tuple.__new__ builds the named tuple without its Python-level __new__ (hot path: one per visa used).
    return _new_tuple(Basis, (requirement, use, obj.type, visa.iss, visa.jti, obj.value, visa.exp))
