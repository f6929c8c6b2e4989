"""``policy explain``: the decision, and for each requirement every visa considered and why.

:func:`explain` returns an :class:`Explanation` (the decision from ``decide``, the full trace
from the explaining evaluator, the required-visas document, the purpose check and any visas
the verifier ignored); :func:`render_text` prints it for a person, :meth:`Explanation.to_json`
for a program. Times are shown as UTC dates with the epoch seconds next to them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker.core.identity_graph import IdentityGraph
from broker.core.models import IdentityBinding, Visa
from broker.core.policy.compile import PolicySet
from broker.core.policy.decide import decide
from broker.core.policy.decision import Decision, Withdrawn, when
from broker.core.policy.nodes import READ
from broker.core.policy.pool import VisaPool
from broker.core.policy.required import required_visas
from broker.core.policy.trace import MATCHED, MISMATCH, Trace, trace_rule


@dataclass
class Explanation:
    decision: Decision
    trace: Trace | None
    holder: tuple[str, str] | None
    visas: tuple[Visa, ...]
    required: dict[str, Any] | None
    purpose_note: str | None
    ignored: tuple[str, ...] = ()  # visas the verifier refused, one sentence each
    now: int = 0
    valid_for: int = 0
    _index: dict[int, int] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision.to_json(),
            "holder": list(self.holder) if self.holder else None,
            "now": self.now,
            "valid_for": self.valid_for,
            "purpose": self.purpose_note,
            "rule": self.trace.to_json(self._index) if self.trace else None,
            "required": self.required,
            "ignored_by_verification": list(self.ignored),
        }


def explain(
    policy: PolicySet,
    visas: Iterable[Visa],
    identity_graph: IdentityGraph | None = None,
    dataset: str = "",
    action: str = READ,
    purpose: str | None = None,
    holder: tuple[str, str] | None = None,
    *,
    now: int | None = None,
    valid_for: int = 0,
    ignored: Sequence[str] = (),
    identity_binding: IdentityBinding | str = IdentityBinding.LINKED,
    withdrawn: Sequence[Withdrawn] = (),
) -> Explanation:
    """Decide and explain (both from the same inputs and clock, identity binding and revoked decisions)."""
    visa_list = tuple(visas)
    clock = int(time.time()) if now is None else now
    binding = IdentityBinding(identity_binding)
    decision = decide(
        policy,
        visa_list,
        identity_graph,
        dataset,
        action,
        purpose,
        holder,
        now=clock,
        valid_for=valid_for,
        identity_binding=binding,
        withdrawn=withdrawn,
    )
    pool = VisaPool(visa_list, identity_graph, holder, clock, binding)
    trace = None
    required = None
    purpose_note = None
    resolved, _ = policy.resolve(dataset)
    if resolved is not None and action in resolved.entry.rules:
        entry = resolved.entry
        deadline = clock + valid_for
        trace = trace_rule(entry.rules[action], pool, resolved.env, entry.max_assertion_age, deadline, withdrawn)
        required = required_visas(policy, dataset, action)
        if entry.data_use is not None:
            purpose_note = policy.terms.check(entry.data_use.render(resolved.env), purpose).message
    index = {id(v): i for i, v in enumerate(visa_list)}
    return Explanation(
        decision, trace, pool.holder, visa_list, required, purpose_note, tuple(ignored), clock, valid_for, index
    )


def render_text(ex: Explanation) -> str:
    """The explanation for a person: verdict, rule tree with every visa considered, reasons, basis."""
    d = ex.decision
    lines = [
        f"dataset {d.dataset} ({d.action}): {'ALLOW' if d.allow else 'DENY'}",
        f"  policy {d.policy_version}" + (f", {d.entry}" if d.entry else ""),
        f"  holder {_identity(ex.holder)}",
        f"  evaluated at {when(ex.now)}" + (f", access needed for {ex.valid_for} s" if ex.valid_for else ""),
    ]
    if d.allow:
        lines.append(f"  access valid until {when(d.expires_at)}")
    if ex.purpose_note:
        lines.append(f"  data use: {ex.purpose_note}")
    if ex.trace is not None:
        lines.append("")
        lines.append("rule:")
        _render_trace(ex.trace, ex._index, lines, "  ")
    if d.reasons:
        lines.append("")
        lines.append("reasons:")
        lines.extend(f"  - {r.code}: {r.message}" + (f" [{r.requirement}]" if r.requirement else "") for r in d.reasons)
    if d.basis:
        lines.append("")
        lines.append("basis (visas used):")
        lines.extend(
            f"  - {b.requirement}: {b.use} {b.type} jti {b.jti!r} from {b.iss!r}, exp {when(b.exp)}" for b in d.basis
        )
    if ex.ignored:
        lines.append("")
        lines.append("visas ignored by verification:")
        lines.extend(f"  - {line}" for line in ex.ignored)
    return "\n".join(lines)


def _render_trace(trace: Trace, index: dict[int, int], lines: list[str], indent: str) -> None:
    mark = "[met]  " if trace.met else "[unmet]"
    label = f" \u2014 {trace.label}" if trace.label else ""
    if trace.kind == "visa":
        lines.append(f"{indent}{mark} {trace.text}{label}")
        lines.append(f"{indent}        ({trace.id}, {trace.where})")
        if not trace.verdicts:
            lines.append(f"{indent}        no visa of this type in the passport")
        for verdict in trace.verdicts:
            symbol = "+" if verdict.outcome == MATCHED else ("x" if verdict.outcome == MISMATCH else "!")
            v = verdict.visa
            name = f"#{index.get(id(v), '?')} jti {v.jti!r}" if v.jti else f"#{index.get(id(v), '?')}"
            lines.append(f"{indent}        {symbol} {name} from {v.iss!r}: {verdict.message}")
        return
    lines.append(f"{indent}{mark} {trace.text}{label} ({trace.id})")
    for child in trace.children:
        _render_trace(child, index, lines, indent + "    ")


def _identity(identity: tuple[str, str] | None) -> str:
    return "(unknown)" if identity is None else f"iss {identity[0]!r}, sub {identity[1]!r}"
