"""The login area's records on the store kernel.

============================  ==============================  ===============================================
kind                          key                             what
============================  ==============================  ===============================================
``local-account``             key_of(connector, user name)    a local password login (scrypt hash), no expiry
``upstream-login``            SHA-256 of ``state``            a started upstream login, taken once at callback
``visa-material``             key_of(identity, connector)     what an upstream said at the last login
============================  ==============================  ===============================================

(Browser sessions are :mod:`broker.web.session`'s; accounts and links are :mod:`broker.identity`'s.)
The first release kept local accounts as 100-year tickets (``ticket:local_account``,
``<connector>:<user name>``); :meth:`broker.login.local.LocalAccounts.get` still reads one
and moves it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.store.kernel import key_of
from broker.store.records import RecordType


@dataclass(frozen=True)
class LocalAccount:
    """A local connector's login: the account it opens and the password's scrypt hash."""

    connector: str
    username: str
    identity_id: str
    hash: str


@dataclass(frozen=True)
class UpstreamLogin:
    """A login started at an upstream: what the callback must match, bound to one browser (RP-01, RP-02)."""

    state_hash: str
    connector: str
    browser: str
    issuer: str
    nonce: str
    verifier: str
    redirect_uri: str
    created_at: int
    expires_at: int
    interaction: str = ""
    link_to: str | None = None  # the account linking this identity, when linking


@dataclass(frozen=True)
class VisaMaterial:
    """What one upstream login told us about a researcher, for visas (replaced at each login)."""

    identity_id: str
    connector: str
    expires_at: int
    affiliations: tuple[dict[str, Any], ...] = ()
    relayed: tuple[str, ...] = field(default=())


LOCAL_ACCOUNTS: RecordType[LocalAccount] = RecordType(
    "local-account", LocalAccount, key=lambda a: key_of(a.connector, a.username)
)
UPSTREAM_LOGINS: RecordType[UpstreamLogin] = RecordType(
    "upstream-login", UpstreamLogin, key=lambda u: u.state_hash, expires=lambda u: u.expires_at
)
VISA_MATERIAL: RecordType[VisaMaterial] = RecordType(
    "visa-material", VisaMaterial, key=lambda m: key_of(m.identity_id, m.connector), expires=lambda m: m.expires_at
)
