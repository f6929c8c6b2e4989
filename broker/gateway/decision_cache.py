"""Allowed decisions remembered per process, so a repeated request skips verification and policy.

A genome browser or an htsget client reads one object in hundreds of small Range requests with
one credential; each one used to verify the passport (or gather the holder's visas), run the
policy and build its JSON again. :class:`DecisionCache` keeps the *allow* for

    (credential digest, dataset, object, action, purpose)

and reuses it only while every one of these holds, so a hit concludes what a cold decision
would:

- the policy set in force is the very object that decided (a reload swaps it: a miss);
- no revocation has been heard since it was stored: any revocation (a grant, a registered-access
  decision, heard from this process or from the store's audit log by the revocation watcher
  within its poll interval, 0.5 s) bumps the *revocation epoch* and empties the cache; an
  allow computed while a revocation arrived is not stored;
- its time is not up: the decision's own expiry (the earliest of the credential's and the
  visas' it relied on) and at most ``max_seconds`` after it was made.

Only allows are kept; refusals and failures are always decided afresh. The checks an access
token needs on every use (its ``jti``, its grant family and the holder's consent, read from the
store) still run on a hit: that is the one store round trip a hit keeps (see
:mod:`broker.gateway.passport_authorizer`). Bounded: the oldest entry goes first.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from broker.gateway.authorize import AccessDecision

DecisionKey = tuple[str, str, str, str, str | None]


def credentials_digest(credentials: Sequence[str]) -> str:
    """SHA-256 over the presented tokens, in order (the tokens themselves are never kept)."""
    digest = hashlib.sha256()
    for token in credentials:
        digest.update(token.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class _Entry:
    decision: AccessDecision
    policy: Any
    ends_at: float
    recheck: bool  # the credentials include one of our access tokens (per-use checks on every hit)


@dataclass(frozen=True, slots=True)
class Hit:
    """A reusable allow, and whether its credentials still need their per-use checks."""

    decision: AccessDecision
    recheck: bool


class DecisionCache:
    """A bounded LRU of allowed decisions (module docstring: what a hit is allowed to assume)."""

    def __init__(self, max_entries: int, max_seconds: float, clock: Callable[[], float] = time.time) -> None:
        if max_entries < 1 or max_seconds <= 0:
            raise ValueError("max_entries must be at least 1 and max_seconds positive")
        self.max_entries = max_entries
        self.max_seconds = max_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[DecisionKey, _Entry] = OrderedDict()
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def epoch(self) -> int:
        """How many revocations this process has heard of; read before deciding, handed to :meth:`put`."""
        return self._epoch

    def get(self, key: DecisionKey, policy: Any) -> Hit | None:
        """The allow stored for ``key`` under ``policy``, None when absent, stale or decided by other rules."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.policy is not policy or entry.ends_at <= self.clock():
            with self._lock:
                if self._entries.get(key) is entry:
                    del self._entries[key]
            return None
        return Hit(entry.decision, entry.recheck)

    def put(self, key: DecisionKey, policy: Any, decision: AccessDecision, epoch: int, recheck: bool = True) -> None:
        """Remember an allow made under ``policy`` with the revocation epoch read before deciding."""
        if not decision.allow:
            return
        now = self.clock()
        ends_at = now + self.max_seconds
        if decision.expires_at is not None:
            ends_at = min(ends_at, float(decision.expires_at))
        if ends_at <= now:
            return
        with self._lock:
            if epoch != self._epoch:
                return  # a revocation arrived while this was decided: it may rely on what was revoked
            self._entries[key] = _Entry(decision, policy, ends_at, recheck)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def revoked(self, _record_id: str) -> None:
        """A revocation listener (:class:`broker.container.Revocations`): a new epoch, nothing reused."""
        with self._lock:
            self._epoch += 1
            self._entries.clear()
