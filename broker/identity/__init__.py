"""The identity area: broker accounts and the upstream identities linked to them (kernel records)."""

from broker.identity.records import Identity, IdentityLink
from broker.identity.service import IdentityDirectory, IdentityService, LinkRefused, Profile

__all__ = ["Identity", "IdentityDirectory", "IdentityLink", "IdentityService", "LinkRefused", "Profile"]
