"""Which visa identities belong to the same person, by trusted LinkedIdentities visas.

Passport 1.2 (General Requirements 8.4; LinkedIdentities): visas of different visa identities
``(iss, sub)`` may be combined only when LinkedIdentities visas from trusted issuers assert the
identities are the same person; one visa may link them all, a superset, or a chain of visas.

The graph is undirected: nodes are identities, and each LinkedIdentities visa adds an edge from
its own identity ``(visa.iss, visa.sub)`` to every identity listed in its value. Linking is the
transitive closure, i.e. "same connected component". Identities are compared as exact strings.

Build it only from LinkedIdentities visas that passed verification and trust checks; the graph
does not judge trust. A visa whose value does not parse contributes nothing and is reported in
:attr:`IdentityGraph.ignored`, so one broken visa never blocks the rest of a passport.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from broker.core.linked_identities import parse_linked_identities
from broker.core.models import LINKED_IDENTITIES, Visa
from broker.errors import BrokerError

Identity = tuple[str, str]


class NotLinkedError(BrokerError, ValueError):
    """Asked for the visas linking two identities that no trusted visa links."""

    status = 400
    code = "not_linked"


@dataclass(frozen=True, slots=True)
class IgnoredLink:
    """A visa handed to :meth:`IdentityGraph.from_visas` that adds no edge, and why."""

    visa: Visa
    reason: str


class IdentityGraph:
    """Connected components of visa identities, with the visas behind each edge."""

    __slots__ = ("_component", "_edges", "ignored")

    def __init__(self, edges: Mapping[Identity, Mapping[Identity, Visa]], ignored: tuple[IgnoredLink, ...] = ()):
        """Prefer :meth:`from_visas`. ``edges[a][b]`` is the visa linking ``a`` and ``b`` (symmetric)."""
        self._edges = {node: dict(neighbours) for node, neighbours in edges.items()}
        self.ignored = ignored
        self._component: dict[Identity, frozenset[Identity]] = {}
        for start in self._edges:
            if start in self._component:
                continue
            seen = {start}
            stack = [start]
            while stack:
                for neighbour in self._edges.get(stack.pop(), {}):
                    if neighbour not in seen:
                        seen.add(neighbour)
                        stack.append(neighbour)
            component = frozenset(seen)
            for node in seen:
                self._component[node] = component

    @classmethod
    def from_visas(cls, linked_visas: Iterable[Visa]) -> IdentityGraph:
        """Build the graph from verified, trusted LinkedIdentities visas; never raises for bad values.

        Between two identities linked by several visas, the edge keeps the one that expires last
        (the first such visa on a tie), so paths report the longest-lived evidence.
        """
        edges: dict[Identity, dict[Identity, Visa]] = {}
        ignored: list[IgnoredLink] = []
        for visa in linked_visas:
            if visa.visa.type != LINKED_IDENTITIES:
                ignored.append(IgnoredLink(visa, f"visa type {visa.visa.type!r} is not {LINKED_IDENTITIES}"))
                continue
            try:
                listed = parse_linked_identities(visa.visa.value)
            except ValueError as exc:
                ignored.append(IgnoredLink(visa, f"malformed LinkedIdentities value: {exc}"))
                continue
            own = visa.identity
            edges.setdefault(own, {})
            for other in listed:
                if other == own:
                    continue
                current = edges[own].get(other)
                if current is None or visa.exp > current.exp:
                    edges[own][other] = visa
                    edges.setdefault(other, {})[own] = visa
        return cls(edges, tuple(ignored))

    @property
    def identities(self) -> frozenset[Identity]:
        """Every identity named by a contributing visa (its own or listed)."""
        return frozenset(self._edges)

    def component(self, identity: Identity) -> frozenset[Identity]:
        """All identities linked to ``identity``, itself included (a lone identity is its own component)."""
        return self._component.get(identity, frozenset({identity}))

    def linked(self, a: Identity, b: Identity) -> bool:
        """True when ``a`` and ``b`` are the same identity or in the same component."""
        return a == b or b in self._component.get(a, ())

    def link_visas(self, a: Identity, b: Identity) -> tuple[Visa, ...]:
        """The LinkedIdentities visas along one path from ``a`` to ``b`` (``()`` when ``a == b``).

        The path is one whose earliest-expiring visa expires last (a widest path; among equally
        wide paths the search prefers fewer hops and then insertion order, deterministically), so
        the caller's effective expiry (minimum ``exp`` over every visa used) is as late as the
        evidence allows. Each visa appears once, in path order. Raises
        :class:`NotLinkedError` when the identities are not linked: an empty answer would be
        indistinguishable from "the same identity".
        """
        if a == b:
            return ()
        if not self.linked(a, b):
            raise NotLinkedError(f"identities {a!r} and {b!r} are not linked")
        # Best (bottleneck exp, hops) found so far per node; a max-heap on exp via negation.
        best: dict[Identity, tuple[float, int]] = {}
        parent: dict[Identity, tuple[Identity, Visa]] = {}
        order = 0
        heap: list[tuple[float, int, int, Identity]] = [(float("-inf"), 0, order, a)]
        done: set[Identity] = set()
        while heap:
            negative_width, hops, _, node = heapq.heappop(heap)
            if node in done:
                continue
            done.add(node)
            if node == b:
                break
            width = -negative_width
            for neighbour, visa in self._edges[node].items():
                if neighbour in done:
                    continue
                candidate = (min(width, visa.exp), hops + 1)
                known = best.get(neighbour)
                if known is None or candidate[0] > known[0] or (candidate[0] == known[0] and candidate[1] < known[1]):
                    best[neighbour] = candidate
                    parent[neighbour] = (node, visa)
                    order += 1
                    heapq.heappush(heap, (-candidate[0], candidate[1], order, neighbour))
        path: list[Visa] = []
        node = b
        while node != a:
            node, visa = parent[node]
            path.append(visa)
        path.reverse()
        return tuple(dict.fromkeys(path))
