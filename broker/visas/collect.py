"""A researcher's visas right now, from every place visas come from (DESIGN: ``visas/``).

:func:`collect_visas` joins, in this order:

1. visas we mint from our own decisions (DAC grants, registered access:
   :class:`~broker.visas.minting.VisaMinter`);
2. visas relayed from remote sources (:class:`~broker.visas.remote.RemoteVisaSources`),
   verified and passed on unchanged;
3. visas the login relayed from an upstream IdP and stored, handed in by the caller
   (``upstream``) so this module does not depend on the OIDC part.

Identical JWS strings are passed on once. Problems (a source down, a visa refused, a
failure to mint) come back as data next to the visas: building a passport never fails
because one source did; the caller logs them and may show them (never the tokens).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from broker.identity.records import Identity, IdentityLink
from broker.visas.minting import VisaMinter
from broker.visas.remote import RemoteVisaSources, SourceProblem


class IdentityLookup(Protocol):
    """What gathering needs of the identity area: an account and its upstream links."""

    def get(self, identity_id: str) -> Identity | None: ...

    def links_of(self, identity_id: str) -> list[IdentityLink]: ...


log = logging.getLogger("broker.visas")


@dataclass(frozen=True)
class Problem:
    """Why some visas are missing: where (``minted``, ``upstream`` or a source name) and why."""

    where: str
    reason: str
    detail: str
    index: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"where": self.where, "reason": self.reason, "detail": self.detail}
        if self.index is not None:
            out["index"] = self.index
        return out


def _from_source(problem: SourceProblem) -> Problem:
    return Problem(problem.source, problem.reason, problem.detail, problem.index)


def collect_visas(
    identity_id: str,
    *,
    identities: IdentityLookup,
    minter: VisaMinter | None = None,
    remote: RemoteVisaSources | None = None,
    upstream: Iterable[str] | Callable[[str], Sequence[str]] = (),
    limit: int | None = None,
) -> tuple[list[str], list[Problem]]:
    """``(visa JWS strings, problems)`` for ``identity_id`` (see the module docstring).

    ``upstream`` is a list of already-verified upstream visas or a callable giving them for an
    identity id. ``limit`` caps the number of visas (``limits.max_visas_per_passport``): extra
    visas are dropped, last source first, and reported as ``too_many_visas``.
    """
    visas: list[str] = []
    problems: list[Problem] = []
    if minter is not None:
        try:
            visas.extend(minter.tokens(identity_id))
        except Exception as exc:  # our own failure: no minted visas, reported, never an allow
            log.error("minting visas failed: %s", exc.__class__.__name__)
            problems.append(Problem("minted", "mint_failed", f"could not mint visas ({exc.__class__.__name__})"))
    if remote is not None and remote.sources:
        identity = identities.get(identity_id)
        if identity is None:
            problems.append(Problem("remote", "no_identity", "no broker identity with that id"))
        else:
            result = remote.fetch(identity, identities.links_of(identity_id))
            visas.extend(result.visas)
            problems.extend(_from_source(p) for p in result.problems)
    extra = upstream(identity_id) if callable(upstream) else upstream
    visas.extend(extra)
    unique = list(dict.fromkeys(visas))
    if limit is not None and len(unique) > limit:
        problems.append(Problem("collect", "too_many_visas", f"{len(unique)} visas, limit {limit}: extra dropped"))
        unique = unique[:limit]
    return unique, problems
