"""The one trust configuration: our own issuer, the visa issuers and brokers we believe, and their keys.

Built once from :class:`broker.trust.settings.TrustSettings` (``TrustConfig.from_settings``) and read
by login, verification and policy alike (DESIGN: one source of truth per fact).

Trust is exact (DESIGN rule 3): issuers are looked up, and ``jku`` URLs compared, as whole,
case-sensitive strings, with no normalisation at all: ``https://a/`` and ``https://a`` are two
different issuers. The allow-list is a map ``iss -> {exact jku URLs}``, never a flat list
(THREAT-MODEL JWT-06).

Our own issuer is trusted implicitly, as a visa issuer (``jku`` = :func:`own_jwks_url`) and
as a broker, with keys handed in-process by the key ring (``own_keys``), read live on each
lookup so rotation needs no rebuild; our own JWKS is never fetched over HTTP.

Pinned keys (inline ``jwks`` or a ``jwks_file``) are checked strictly at load: a key that
could never verify anything (private, weak, wrong type, no ``kid``) stops the start with a
:class:`~broker.settings_model.SettingsProblem` naming the exact key path, rather than failing later.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from broker.core.models import IdentityBinding, own_jwks_url
from broker.settings_model import SettingsProblem
from broker.trust.fetch import FetchError, check_url
from broker.trust.keyset import (
    JwksFormatError,
    ResolvedKey,
    decode_json,
    key_misfit,
    parse_key,
    public_fingerprint,
)
from broker.trust.settings import TrustSettings

__all__ = [
    "IdentityBinding",
    "ResolvedKey",
    "TrustConfig",
    "TrustedBroker",
    "TrustedIssuer",
    "own_jwks_url",
]

MAX_JWKS_FILE_BYTES = 1_048_576
OwnKeys = Callable[[], Mapping[str, ResolvedKey]]


@dataclass(frozen=True)
class TrustedIssuer:
    """A visa issuer we believe.

    ``jku``: the exact URLs its visas may name (empty when only pinned keys are used).
    ``pinned``: keys known out of band, by ``kid``. ``visa_types`` / ``sources``: what it is
    trusted to assert (None: any). ``own``: this is us (keys from the key ring, never fetched).
    """

    iss: str
    jku: frozenset[str]
    pinned: Mapping[str, ResolvedKey]
    visa_types: frozenset[str] | None = None
    sources: frozenset[str] | None = None
    own: bool = False


@dataclass(frozen=True)
class TrustedBroker:
    """A broker whose passports and access tokens we accept: keys at ``jwks_uri`` and/or pinned.

    ``identity_binding``: which visas of its passports count for the holder (GA-17); the
    verifier records it in each ``PassportResult`` and the policy engine applies it.
    """

    iss: str
    jwks_uri: str | None
    pinned: Mapping[str, ResolvedKey]
    own: bool = False
    identity_binding: IdentityBinding = IdentityBinding.LINKED


class _LiveKeys(Mapping[str, ResolvedKey]):
    """Our own public keys, read from the key ring on every access (so rotation is seen at once)."""

    def __init__(self, source: OwnKeys | None) -> None:
        self._source = source

    def _current(self) -> Mapping[str, ResolvedKey]:
        return self._source() if self._source is not None else {}

    def __getitem__(self, kid: str) -> ResolvedKey:
        return self._current()[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._current()))

    def __len__(self) -> int:
        return len(self._current())

    def __repr__(self) -> str:
        return f"<own keys: {sorted(self._current())}>"


class TrustConfig:
    """Who we believe and with which keys; immutable once built (a reload builds a new one)."""

    def __init__(
        self,
        own_issuer: str,
        visa_issuers: Mapping[str, TrustedIssuer] | None = None,
        brokers: Mapping[str, TrustedBroker] | None = None,
        own_keys: OwnKeys | None = None,
    ) -> None:
        self.own_issuer = own_issuer
        self._own_keys = own_keys
        live = _LiveKeys(own_keys)
        issuers = dict(visa_issuers or {})
        trusted_brokers = dict(brokers or {})
        if own_issuer in issuers or own_issuer in trusted_brokers:
            raise ValueError(f"{own_issuer!r} is our own issuer: it is trusted implicitly, not configured")
        issuers[own_issuer] = TrustedIssuer(
            iss=own_issuer, jku=frozenset({own_jwks_url(own_issuer)}), pinned=live, own=True
        )
        trusted_brokers[own_issuer] = TrustedBroker(
            iss=own_issuer, jwks_uri=own_jwks_url(own_issuer), pinned=live, own=True
        )
        self._issuers: Mapping[str, TrustedIssuer] = MappingProxyType(issuers)
        self._brokers: Mapping[str, TrustedBroker] = MappingProxyType(trusted_brokers)
        self._static_version = _digest(_describe(own_issuer, issuers, trusted_brokers))
        self._version_lock = threading.Lock()
        self._version_cache: tuple[tuple[str, ...], str] | None = None

    # ------------------------------------------------------------------ lookups

    def visa_issuer(self, iss: str) -> TrustedIssuer | None:
        """The trusted visa issuer with exactly this ``iss`` string, or None."""
        return self._issuers.get(iss) if isinstance(iss, str) else None

    def broker(self, iss: str) -> TrustedBroker | None:
        """The trusted broker with exactly this ``iss`` string, or None."""
        return self._brokers.get(iss) if isinstance(iss, str) else None

    def is_own(self, iss: str) -> bool:
        """True when ``iss`` is exactly our own issuer string."""
        return isinstance(iss, str) and iss == self.own_issuer

    @property
    def visa_issuers(self) -> Mapping[str, TrustedIssuer]:
        """Every trusted visa issuer by ``iss`` (ours included)."""
        return self._issuers

    @property
    def brokers(self) -> Mapping[str, TrustedBroker]:
        """Every trusted broker by ``iss`` (ours included)."""
        return self._brokers

    @property
    def version(self) -> str:
        """A stable hash of the trust content; it changes whenever trust changes.

        It covers every issuer, broker, allow-listed URL, pinned key, accepted type and
        source, each broker's identity binding, and the set of our own key ids (kid is the
        RFC 7638 thumbprint, so it names the key material; removing one of our keys changes
        the version and so invalidates caches keyed on it). Keys fetched from JWKS URLs are
        not part of it: the resolver caches them under its own TTL.
        """
        if self._own_keys is None:
            return self._static_version
        own = tuple(sorted(self._own_keys()))
        with self._version_lock:
            cached = self._version_cache
            if cached is not None and cached[0] == own:
                return cached[1]
            value = _digest({"static": self._static_version, "own": list(own)})
            self._version_cache = (own, value)
            return value

    # ------------------------------------------------------------------ building

    @classmethod
    def from_settings(cls, trust: TrustSettings, own: str, own_keys: OwnKeys | None = None) -> TrustConfig:
        """The trust configuration of ``trust`` for our issuer ``own``.

        :class:`~broker.settings_model.SettingsProblem` naming the key on any mistake: the
        settings loader runs this too, so ``config check`` refuses what start-up would.
        """
        allow_http = trust.fetch.allow_http_loopback
        issuers: dict[str, TrustedIssuer] = {}
        seen: dict[str, str] = {}
        for i, item in enumerate(trust.visa_issuers):
            where = f"trust.visa_issuers[{i}]"
            _check_iss(where, item.iss, own, seen)
            jku = frozenset(_checked_url(f"{where}.jku[{j}]", u, allow_http) for j, u in enumerate(item.jku))
            pinned = _pinned(where, item.jwks, item.jwks_file)
            if not jku and not pinned:
                raise SettingsProblem(where, "expected at least one of jku, jwks, jwks_file")
            issuers[item.iss] = TrustedIssuer(
                iss=item.iss,
                jku=jku,
                pinned=pinned,
                visa_types=None if item.visa_types is None else frozenset(item.visa_types),
                sources=None if item.sources is None else frozenset(item.sources),
            )
        brokers: dict[str, TrustedBroker] = {}
        seen = {}
        for i, peer in enumerate(trust.brokers):
            where = f"trust.brokers[{i}]"
            _check_iss(where, peer.iss, own, seen)
            uri = None if peer.jwks_uri is None else _checked_url(f"{where}.jwks_uri", peer.jwks_uri, allow_http)
            pinned = _pinned(where, peer.jwks, peer.jwks_file)
            if uri is None and not pinned:
                raise SettingsProblem(where, "expected a jwks_uri or at least one pinned key (jwks, jwks_file)")
            brokers[peer.iss] = TrustedBroker(
                iss=peer.iss, jwks_uri=uri, pinned=pinned, identity_binding=IdentityBinding(peer.identity_binding)
            )
        return cls(own, issuers, brokers, own_keys)


# ---------------------------------------------------------------------- helpers


def _check_iss(where: str, iss: str, own: str, seen: dict[str, str]) -> None:
    if not iss:
        raise SettingsProblem(f"{where}.iss", "expected a non-empty issuer string")
    if iss == own:
        raise SettingsProblem(f"{where}.iss", "this is our own issuer: it is trusted implicitly, remove this entry")
    if iss in seen:
        raise SettingsProblem(f"{where}.iss", f"duplicate issuer (also at {seen[iss]})")
    seen[iss] = where


def _checked_url(key: str, url: str, allow_http: bool) -> str:
    try:
        return check_url(url, allow_http)
    except FetchError as exc:
        raise SettingsProblem(key, str(exc)) from None


def _pinned(where: str, inline: dict[str, Any] | None, file: str | None) -> Mapping[str, ResolvedKey]:
    """Pinned keys from inline JWKS and/or a file, by kid; every key must be usable."""
    keys: dict[str, ResolvedKey] = {}
    if inline is not None:
        _add_keys(f"{where}.jwks", inline, keys)
    if file is not None:
        _add_keys(f"{where}.jwks_file", _read_jwks_file(f"{where}.jwks_file", file), keys)
    return MappingProxyType(keys)


def _read_jwks_file(key: str, file: str) -> Any:
    path = Path(file)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_JWKS_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SettingsProblem(key, f"cannot read {file}: file not found") from None
    except OSError as exc:
        raise SettingsProblem(key, f"cannot read {file}: {exc.strerror or exc.__class__.__name__}") from None
    if len(data) > MAX_JWKS_FILE_BYTES:
        raise SettingsProblem(key, f"{file} is larger than {MAX_JWKS_FILE_BYTES} bytes")
    try:
        return decode_json(data)
    except JwksFormatError as exc:
        raise SettingsProblem(key, f"{file}: {exc}") from None


def _add_keys(where: str, document: Any, into: dict[str, ResolvedKey]) -> None:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise SettingsProblem(where, 'expected a JWK Set: {"keys": [...]}')
    if not document["keys"]:
        raise SettingsProblem(where, "the JWK Set has no keys")
    for n, member in enumerate(document["keys"]):
        key = f"{where}.keys[{n}]"
        try:
            resolved = parse_key(member)
        except ValueError as exc:
            raise SettingsProblem(key, f"unusable key: {exc}") from None
        if not resolved.kid:
            raise SettingsProblem(key, "a pinned key needs a kid")
        misfit = key_misfit(resolved, resolved.alg)
        if misfit is not None:
            raise SettingsProblem(key, f"unusable key: {misfit}")
        if resolved.kid in into:
            raise SettingsProblem(key, f"duplicate kid {resolved.kid!r} for this issuer")
        into[resolved.kid] = resolved


def _describe(own: str, issuers: Mapping[str, TrustedIssuer], brokers: Mapping[str, TrustedBroker]) -> Any:
    """Plain, ordered data for every fact of trust except our live keys (hashed into ``version``)."""

    def pinned(keys: Mapping[str, ResolvedKey], is_own: bool) -> list[str] | str:
        return "<own key ring>" if is_own else sorted(public_fingerprint(k) for k in keys.values())

    def opt(values: frozenset[str] | None) -> list[str] | None:
        return None if values is None else sorted(values)

    return {
        "own": own,
        "issuers": [
            [t.iss, sorted(t.jku), pinned(t.pinned, t.own), opt(t.visa_types), opt(t.sources), t.own]
            for t in sorted(issuers.values(), key=lambda t: t.iss)
        ],
        "brokers": [
            [b.iss, b.jwks_uri, pinned(b.pinned, b.own), b.own, str(b.identity_binding)]
            for b in sorted(brokers.values(), key=lambda b: b.iss)
        ],
    }


def _digest(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:32]
