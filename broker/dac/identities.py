"""What the DAC area needs to know about broker identities: whether one exists.

The identity area owns identities; the DAC services only check that a researcher or a new
member named in a request is a broker identity, through this one-method protocol. Today the
composition root passes ``Records(kernel, broker.store.legacy.IDENTITIES)``; the identity
area's repository will satisfy it as well.
"""

from __future__ import annotations

from typing import Protocol


class IdentityLookup(Protocol):
    """``get(identity_id)``: the identity record, or None when there is no such identity."""

    def get(self, identity_id: str, /) -> object | None: ...
