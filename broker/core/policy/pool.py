"""The verified visas of one request, prepared for evaluation against a rule.

What is done once per request rather than once per requirement: drop visas whose ``exp`` has
passed, index the rest by value (a requirement with an exact value looks only at the visas with
that value; others at the visas of their type, grouped on first use), build the identity graph
from the LinkedIdentities visas when the caller did not pass one, and settle who the holder is.
Per visa and on demand (then cached), :meth:`VisaPool.support` says whether the visa may count
for the holder and which other visas that relies on:

- identity (Passport 1.2, General Requirements 8.4): a visa of another identity than the
  holder's counts only when trusted LinkedIdentities visas link the two; those link visas
  are then *used* too. With the ``same_sub`` identity binding (the passport's broker vouches
  for its ``sub`` across issuers, :class:`~broker.core.models.IdentityBinding`), a visa whose
  ``sub`` is exactly the holder's counts as the holder's own, whatever its ``iss``;
- conditions: a visa carrying ``conditions`` counts only when they are met by the other valid
  visas of the passport (``broker.core.conditions.evaluate_conditions``), which are then used.
  Visas handed to us have normally passed this check in the verifier already; doing it again
  here costs nothing when there are no conditions and keeps the engine closed when a caller
  builds visas by hand, and it tells us which visas the condition relied on, for the expiry.

The effective expiry of anything granted is the minimum ``exp`` over every visa used (grants,
links, condition-satisfiers; SPEC-DIGEST 7.6), optionally also bounded by
``asserted + max_assertion_age`` (Option A's maxAuthzTTL).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from broker.core.conditions import evaluate_conditions
from broker.core.identity_graph import IdentityGraph
from broker.core.models import LINKED_IDENTITIES, IdentityBinding, Visa
from broker.core.policy.decision import Code

Identity = tuple[str, str]


class Support(NamedTuple):
    """What a usable visa relies on: LinkedIdentities visas to the holder, condition-satisfiers."""

    links: tuple[Visa, ...]
    conditions: tuple[Visa, ...]


NO_SUPPORT = Support((), ())


class Unusable(NamedTuple):
    """Why a visa whose fields match cannot count for the holder."""

    code: str
    message: str


class VisaPool:
    """One request's visas: live ones by value (types on demand), the identity graph, the holder,
    and per-visa support, computed once per request."""

    __slots__ = (
        "_all_by_type",
        "_by_type",
        "_links",
        "_live",
        "_support",
        "by_value",
        "graph",
        "holder",
        "holder_problem",
        "now",
        "same_sub",
        "visas",
    )

    def __init__(
        self,
        visas: Iterable[Visa],
        graph: IdentityGraph | None,
        holder: Identity | None,
        now: int,
        binding: IdentityBinding = IdentityBinding.LINKED,
    ) -> None:
        self.visas: tuple[Visa, ...] = visas if type(visas) is tuple else tuple(visas)
        self.now = now
        # Live visas by their value (any type): an exact requirement finds its candidates with one
        # dict lookup. Keyed by the value string alone (its hash is cached), so no tuple per visa.
        by_value: dict[str, list[Visa]] = {}
        for visa in self.visas:
            if visa.exp > now:
                by_value.setdefault(visa.visa.value, []).append(visa)
        self.by_value = by_value
        self._live: list[Visa] | None = None
        self._by_type: dict[str, list[Visa]] | None = None
        self._all_by_type: dict[str, list[Visa]] | None = None
        if graph is None:
            linked = [visa for visa in self.visas if visa.exp > now and visa.visa.type == LINKED_IDENTITIES]
            if linked:
                graph = IdentityGraph.from_visas(linked)
        self.graph = graph
        self.holder_problem: str | None = None
        if holder is None:
            holder = self._infer_holder()
        self.holder = holder
        # The holder's sub when visas of that sub count as the holder's own (binding same_sub).
        self.same_sub: str | None = (
            holder[1] if holder is not None and IdentityBinding(binding) is IdentityBinding.SAME_SUB else None
        )
        self._support: dict[int, Support | Unusable] = {}
        self._links: dict[Identity, tuple[Visa, ...] | None] = {}

    @property
    def live(self) -> list[Visa]:
        """The visas whose ``exp`` has not passed, in order."""
        if self._live is None:
            now = self.now
            self._live = [visa for visa in self.visas if visa.exp > now]
        return self._live

    def of_type(self, visa_type: str) -> list[Visa]:
        """Live visas of one type (built per type on first use: value-indexed requirements never ask)."""
        by_type = self._by_type
        if by_type is None:
            by_type = self._by_type = {}
        found = by_type.get(visa_type)
        if found is None:
            now = self.now
            found = by_type[visa_type] = [v for v in self.visas if v.exp > now and v.visa.type == visa_type]
        return found

    def all_of_type(self, visa_type: str) -> list[Visa]:
        """Every visa of one type, expired ones included (for reasons and explanations)."""
        all_by_type = self._all_by_type
        if all_by_type is None:
            all_by_type = self._all_by_type = {}
        found = all_by_type.get(visa_type)
        if found is None:
            found = all_by_type[visa_type] = [visa for visa in self.visas if visa.visa.type == visa_type]
        return found

    def _infer_holder(self) -> Identity | None:
        identities = list(dict.fromkeys(v.identity for v in self.live))
        if not identities:
            return None
        first = identities[0]
        if all(self.graph is not None and self.graph.linked(first, other) for other in identities[1:]):
            return first
        self.holder_problem = (
            f"the visas belong to {len(identities)} identities that are not linked, and no "
            "holder was given: pass the passport's holder identity"
        )
        return None

    def support(self, visa: Visa) -> Support | Unusable:
        """Whether ``visa`` counts for the holder, and the visas that relies on (cached per visa)."""
        holder = self.holder
        if (
            not visa.visa.conditions
            and holder is not None
            and visa.sub == holder[1]
            and (visa.iss == holder[0] or self.same_sub is not None)
        ):
            return NO_SUPPORT
        key = id(visa)
        known = self._support.get(key)
        if known is None:
            known = self._support[key] = self._compute(visa)
        return known

    def _compute(self, visa: Visa) -> Support | Unusable:
        holder = self.holder
        if holder is None:
            return Unusable(Code.NOT_LINKED, "no holder identity to link it to")
        links = self.links(visa.identity)
        if links is None:
            return Unusable(
                Code.NOT_LINKED,
                f"its identity {_show(visa.identity)} is not linked to the holder {_show(holder)} "
                "by a trusted LinkedIdentities visa",
            )
        conditions: tuple[Visa, ...] = ()
        if visa.visa.conditions:
            # Always with a graph: without one, evaluate_conditions would take candidates of any
            # identity (it expects the caller to have filtered them); an empty graph links nobody.
            graph = self.graph if self.graph is not None else IdentityGraph.from_visas(())
            met, used = evaluate_conditions(visa, self.live, graph=graph, same_sub=self.same_sub)
            if not met:
                return Unusable(Code.CONDITIONS_UNMET, "its conditions are not met by the other valid visas")
            conditions = used
        return Support(links, conditions)

    def links(self, identity: Identity) -> tuple[Visa, ...] | None:
        """The LinkedIdentities visas linking ``identity`` to the holder; None if not linked (cached)."""
        holder = self.holder
        if identity == holder or (self.same_sub is not None and identity[1] == self.same_sub):
            return ()
        if identity in self._links:
            return self._links[identity]
        found: tuple[Visa, ...] | None = None
        if holder is not None and self.graph is not None and self.graph.linked(holder, identity):
            found = self.graph.link_visas(holder, identity)
        self._links[identity] = found
        return found


def effective_expiry(visa: Visa, support: Support, max_age: int | None) -> int:
    """Minimum over the visa and what it relies on of ``exp`` (and ``asserted + max_age``)."""
    expiry = visa.exp
    if max_age is not None:
        expiry = min(expiry, visa.visa.asserted + max_age)
    for other in (*support.links, *support.conditions):
        expiry = min(expiry, other.exp)
        if max_age is not None:
            expiry = min(expiry, other.visa.asserted + max_age)
    return expiry


def _show(identity: Identity | None) -> str:
    return "(none)" if identity is None else f"(iss {identity[0]!r}, sub {identity[1]!r})"
