"""Our signing key ring: which key signs now, which keys are published, and rotation.

Every key is a :class:`~broker.keys.records.KeyRecord` with four times, and its state is
derived from them and the clock; nothing flips a state flag, so every process that reads
the same records agrees on the state at any instant:

- published from ``created_at`` until ``remove_after`` (None: no end yet);
- "next" while ``now < not_before``: in the JWKS, not signing, so verifiers that cache
  our JWKS for up to ``publish_ahead_seconds`` already hold it when it starts to sign;
- "active": of the keys with ``not_before <= now`` that are not retired yet, the one with
  the latest ``not_before``; it signs everything;
- "retiring" from ``retired_at``: no longer signs, still published until ``remove_after
  = retired_at + max_token_lifetime_seconds + limits.clock_leeway_seconds``, i.e. until
  every token it signed has expired even for a verifier that allows clock leeway; then
  :meth:`KeyRing.maintain` deletes it.

A normal rotation writes a new key with ``not_before = now + publish_ahead_seconds`` and
gives the current active key ``retired_at`` equal to that same instant, so the hand-over
happens at one moment in every process without another write. ``rotate()`` while a
"next" key already exists changes nothing and returns that key: at most one key waits,
whatever a cron job or an impatient operator does. ``rotate(immediate=True)`` is the
emergency path: the new key signs at once, the active key retires now (still published
for its live tokens), and a waiting "next" key is deleted (it never signed anything).

Changing ``keys.algorithm`` takes effect at the next rotation: the active key keeps its
own algorithm until then, so tokens in flight stay valid.

Processes see each other's changes: the ring asks its storage at most once per
``refresh_seconds`` (1 s) whether anything changed (a directory scan or one
``list_keys``) and reloads only then; a token is never the reason for I/O. Every
``auto_maintain_seconds`` (60 s) it also checks, in memory, whether a scheduled rotation
or a removal is due, and only then runs :meth:`maintain`, so a long-running server
rotates on schedule with no cron job.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.keys.errors import KeyRingError, KeyStorageError, NoSigningKey
from broker.keys.jwk import JwkError, public_jwk, public_key_from_jwk, thumbprint
from broker.keys.records import KeyRecord
from broker.keys.settings import KeySettings
from broker.keys.storage import FileKeyStorage, KeyStorage, StoreKeyStorage
from broker.store.kernel import Kernel

__all__ = ["KeyRing", "KeyRingError", "KeyState", "NoSigningKey", "SigningKey"]

log = logging.getLogger("broker.keys")

SUPPORTED_ALGORITHMS = ("ES256", "RS256")
# RSA-2048 is what RFC 7518 section 3.3 requires and NIST SP 800-57 accepts through 2030.
# Our keys rotate every few months and a signature only has to hold until the token's exp
# (a day), so 3072 bits would buy nothing here while costing ~3x per signature and ~30x
# per key generation. ES256 (the default) is faster than either.
RSA_KEY_BITS = 2048
REFRESH_SECONDS = 1.0
#: Least time between two reloads caused by a token naming a kid the ring does not hold.
UNKNOWN_KID_RELOAD_SECONDS = 0.25
#: The clock leeway verifiers allow when none is given (limits.clock_leeway_seconds).
DEFAULT_LEEWAY_SECONDS = 60
AUTO_MAINTAIN_SECONDS = 60.0
# Header members the ring sets itself; a caller may add others (e.g. jku) but not these.
RESERVED_HEADERS = frozenset({"alg", "kid", "typ", "jwk", "x5c", "x5u", "crit"})


@dataclass(frozen=True)
class SigningKey:
    """The key that signs right now."""

    kid: str
    alg: str
    private_key: Any  # cryptography private key object
    public_jwk: dict[str, Any]


@dataclass(frozen=True)
class KeyState:
    """One key of the ring as ``keys list`` shows it."""

    kid: str
    alg: str
    state: str  # "next" | "active" | "retiring"
    created_at: int
    not_before: int
    retired_at: int | None
    remove_after: int | None


@dataclass(frozen=True)
class _Snapshot:
    """The records as last read, with their public keys parsed once."""

    records: tuple[KeyRecord, ...]
    public: dict[str, Any]


def iso_utc(timestamp: int | None) -> str | None:
    """``2025-01-31T12:00:00Z`` for epoch seconds (None stays None)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now(now: int | None) -> int:
    return int(time.time()) if now is None else int(now)


def classify(records: tuple[KeyRecord, ...] | list[KeyRecord], now: int) -> dict[str, str]:
    """kid -> "next" | "active" | "retiring" for every key published at ``now``."""
    published = [r for r in records if r.remove_after is None or now < r.remove_after]
    signing = [r for r in published if r.not_before <= now and (r.retired_at is None or now < r.retired_at)]
    active = max(signing, key=lambda r: (r.not_before, r.created_at, r.kid), default=None)
    states: dict[str, str] = {}
    for r in published:
        if r is active:
            states[r.kid] = "active"
        elif r.not_before > now and (r.retired_at is None or now < r.retired_at):
            states[r.kid] = "next"
        else:
            states[r.kid] = "retiring"
    return states


def _check_record(record: KeyRecord) -> Any:
    """The record's public key, after checking kid = thumbprint and alg matches the key type."""
    if record.alg not in SUPPORTED_ALGORITHMS:
        raise KeyStorageError(f"key {record.kid}: unsupported alg {record.alg!r}")
    try:
        public = public_key_from_jwk(record.public_jwk)
        kid = thumbprint(record.public_jwk)
    except JwkError as exc:
        raise KeyStorageError(f"key {record.kid}: bad public key: {exc}") from None
    if kid != record.kid:
        raise KeyStorageError(f"key {record.kid}: kid is not the thumbprint of its public key")
    expected = {"ES256": "EC", "RS256": "RSA"}[record.alg]
    if record.public_jwk["kty"] != expected:
        raise KeyStorageError(f"key {record.kid}: alg {record.alg} with a {record.public_jwk['kty']} key")
    return public


def generate_private_key(alg: str) -> Any:
    """A fresh private key for ``alg`` (ES256: P-256; RS256: RSA_KEY_BITS, e=65537)."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
    raise KeyRingError(f"unsupported signing algorithm {alg!r}; expected one of {SUPPORTED_ALGORITHMS}")


class KeyRing:
    """The signing keys of this broker, shared through file or store storage."""

    def __init__(
        self,
        keys: KeySettings,
        storage: KeyStorage,
        refresh_seconds: float = REFRESH_SECONDS,
        auto_maintain_seconds: float | None = AUTO_MAINTAIN_SECONDS,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
    ) -> None:
        self.keys = keys
        self.leeway_seconds = leeway_seconds
        self.storage = storage
        self.refresh_seconds = refresh_seconds
        self.auto_maintain_seconds = auto_maintain_seconds
        self._lock = threading.RLock()
        self._snapshot: _Snapshot | None = None
        self._token: Any = None
        self._checked_at = 0.0
        self._maintained_at = time.monotonic()
        self._unknown_kid_reload_at = float("-inf")
        self._private: dict[str, Any] = {}  # kid -> parsed private key, decrypted once per process

    @classmethod
    def open(
        cls,
        keys: KeySettings,
        directory: Path,
        kernel: Kernel | None,
        *,
        leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
        refresh_seconds: float = REFRESH_SECONDS,
        auto_maintain_seconds: float | None = AUTO_MAINTAIN_SECONDS,
    ) -> KeyRing:
        """The ring of the ``keys`` section: files in ``directory``, or records of ``kernel``.

        Cheap: reads nothing until first used, generates nothing. ``leeway_seconds`` is the clock
        leeway verifiers allow (a retired key stays published that much longer).
        ``auto_maintain_seconds=None`` turns off the periodic :meth:`maintain` (tests that drive
        the clock themselves).
        """
        if keys.algorithm not in SUPPORTED_ALGORITHMS:
            raise KeyRingError(f"unsupported keys.algorithm {keys.algorithm!r}")
        storage: KeyStorage
        if keys.storage == "store":
            if kernel is None:
                raise KeyRingError("keys.storage is 'store' but no store was given")
            secret = keys.encryption_secret.get_secret_value() if keys.encryption_secret else ""
            storage = StoreKeyStorage(kernel, secret)
        else:
            storage = FileKeyStorage(directory)
        return cls(keys, storage, refresh_seconds, auto_maintain_seconds, leeway_seconds)

    @property
    def max_token_lifetime_seconds(self) -> int:
        """The longest lifetime of anything this ring signs (a retired key stays published that long)."""
        return self.keys.max_token_lifetime_seconds

    # ------------------------------------------------------------------ reading

    def reload(self) -> None:
        """Read the storage now if it changed (the ring does this itself once a second)."""
        with self._lock:
            result = self.storage.load_if_changed(self._token if self._snapshot is not None else None)
            self._checked_at = time.monotonic()
            if result is None:
                return
            token, records = result
            public = {r.kid: _check_record(r) for r in records}
            self._snapshot = _Snapshot(records=tuple(records), public=public)
            self._token = token
            for kid in set(self._private) - set(public):
                del self._private[kid]

    def _records(self) -> tuple[KeyRecord, ...]:
        return self._current().records

    def _current(self) -> _Snapshot:
        stale = self._snapshot is None or time.monotonic() - self._checked_at >= self.refresh_seconds
        if stale:
            try:
                self.reload()
            except KeyRingError:
                raise
            except Exception as exc:  # e.g. StoreUnavailable: keep signing with the keys we hold
                if self._snapshot is None:
                    raise
                log.warning("key ring reload failed, keeping the keys already loaded: %s", exc.__class__.__name__)
                self._checked_at = time.monotonic()
        self._auto_maintain()
        assert self._snapshot is not None
        return self._snapshot

    def _auto_maintain(self) -> None:
        if self.auto_maintain_seconds is None:
            return
        if time.monotonic() - self._maintained_at < self.auto_maintain_seconds:
            return
        self._maintained_at = time.monotonic()
        assert self._snapshot is not None
        if not self._work_due(self._snapshot.records, int(time.time())):
            return
        try:
            for action in self.maintain():
                log.info("key ring: %s", action)
        except Exception:  # the active key still signs; the next check retries
            log.exception("scheduled key ring maintenance failed")

    def states(self, now: int | None = None) -> list[KeyState]:
        """Every published key with its state at ``now``: active first, then next, then retiring."""
        return [state for state, _ in self._ordered(self._records(), _now(now))]

    @staticmethod
    def _ordered(records: tuple[KeyRecord, ...], at: int) -> list[tuple[KeyState, KeyRecord]]:
        states = classify(records, at)
        order = {"active": 0, "next": 1, "retiring": 2}
        listed = [
            (
                KeyState(
                    kid=r.kid,
                    alg=r.alg,
                    state=states[r.kid],
                    created_at=r.created_at,
                    not_before=r.not_before,
                    retired_at=r.retired_at,
                    remove_after=r.remove_after,
                ),
                r,
            )
            for r in records
            if r.kid in states
        ]
        return sorted(listed, key=lambda item: (order[item[0].state], -item[0].not_before, item[0].kid))

    def signing_key(self, now: int | None = None) -> SigningKey:
        """The active key; :class:`NoSigningKey` if none signs at ``now``."""
        at = _now(now)
        snapshot = self._current()
        states = classify(snapshot.records, at)
        record = next((r for r in snapshot.records if states.get(r.kid) == "active"), None)
        if record is None:
            where = self.storage.name
            raise NoSigningKey(
                f"no signing key is active (key storage: {where}); start the server once or run "
                "`ga4gh-broker keys rotate --immediate`"
            )
        return SigningKey(
            kid=record.kid, alg=record.alg, private_key=self._private_key(record), public_jwk=self._published(record)
        )

    def _private_key(self, record: KeyRecord) -> Any:
        cached = self._private.get(record.kid)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._private.get(record.kid)
            if cached is not None:
                return cached
            pem = self.storage.private_pem(record)
            try:
                key = serialization.load_pem_private_key(pem, password=None)
            except (ValueError, TypeError) as exc:
                raise KeyStorageError(f"key {record.kid}: private key does not parse: {exc}") from None
            try:
                matches = thumbprint(public_jwk(key.public_key())) == record.kid
            except JwkError as exc:
                raise KeyStorageError(f"key {record.kid}: {exc}") from None
            if not matches:
                raise KeyStorageError(f"key {record.kid}: private key does not belong to this kid")
            self._private[record.kid] = key
            return key

    def public_keys(self, now: int | None = None, *, kid: str | None = None) -> dict[str, tuple[str, Any]]:
        """kid -> (alg, cryptography public key) for every key published at ``now``.

        ``kid``: the key a token of ours names. When it is not among them, the storage is read
        again at once instead of at the next ``refresh_seconds`` tick, so a token signed by a key
        another process just made (``keys rotate --immediate``) is not refused as
        ``key_not_found`` for up to a second (issue 11 item 9). At most one such reload per
        :data:`UNKNOWN_KID_RELOAD_SECONDS`, so tokens with made-up kids cannot make every
        request read the storage.
        """
        at = _now(now)
        snapshot = self._current()
        if kid is not None and kid not in snapshot.public and self._may_reload_for_unknown_kid():
            try:
                self.reload()
            except KeyRingError:
                raise
            except Exception as exc:  # the store is down: answer from the keys already loaded
                log.warning("key ring reload for an unknown kid failed: %s", exc.__class__.__name__)
            snapshot = self._current()
        states = classify(snapshot.records, at)
        return {r.kid: (r.alg, snapshot.public[r.kid]) for r in snapshot.records if r.kid in states}

    def _may_reload_for_unknown_kid(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now - self._unknown_kid_reload_at < UNKNOWN_KID_RELOAD_SECONDS:
                return False
            self._unknown_kid_reload_at = now
            return True

    def jwks(self, now: int | None = None) -> dict[str, Any]:
        """Our public JWK Set (RFC 7517): public members only, with kid, alg and use="sig"."""
        return {"keys": [self._published(record) for _, record in self._ordered(self._records(), _now(now))]}

    @staticmethod
    def _published(record: KeyRecord) -> dict[str, Any]:
        """The JWK as we publish it: required public members plus kid, alg, use."""
        return {**record.public_jwk, "kid": record.kid, "alg": record.alg, "use": "sig"}

    def sign(
        self, payload: dict[str, Any], typ: str, headers: dict[str, Any] | None = None, now: int | None = None
    ) -> str:
        """A compact JWS of ``payload`` by the active key; header alg, kid, typ (+ ``headers``)."""
        extra = dict(headers or {})
        reserved = RESERVED_HEADERS.intersection(extra)
        if reserved:
            raise ValueError(f"header members set by the key ring cannot be passed in: {sorted(reserved)}")
        if not typ:
            raise ValueError("every token we sign carries its own typ")
        key = self.signing_key(now)
        return jwt.encode(payload, key.private_key, algorithm=key.alg, headers={**extra, "kid": key.kid, "typ": typ})

    # ------------------------------------------------------------------ writing

    def _retire_until(self, retired_at: int) -> int:
        lifetime = self.keys.max_token_lifetime_seconds
        return retired_at + lifetime + self.leeway_seconds

    def _new_record(self, created_at: int, not_before: int) -> KeyRecord:
        alg = self.keys.algorithm
        private = generate_private_key(alg)
        jwk = public_jwk(private.public_key())
        kid = thumbprint(jwk)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        record = KeyRecord(
            kid=kid,
            alg=alg,
            public_jwk=jwk,
            private=self.storage.seal(kid, alg, pem),
            created_at=created_at,
            not_before=not_before,
        )
        self.storage.save(record)
        self._private[kid] = private
        return record

    def _locked_records(self) -> list[KeyRecord]:
        """The records as stored right now (called with the storage lock held, so it may tidy)."""
        self.storage.tidy()
        self.reload()
        assert self._snapshot is not None
        return list(self._snapshot.records)

    def _work_due(self, records: tuple[KeyRecord, ...] | list[KeyRecord], now: int) -> bool:
        """Whether :meth:`maintain` has anything to do (decided in memory, no lock)."""
        if any(r.remove_after is not None and now >= r.remove_after for r in records):
            return True
        states = classify(records, now)
        if "active" not in states.values():
            return True
        if any(states.get(r.kid) == "retiring" and r.retired_at is None for r in records):
            return True
        return self._rotation_due(records, states, now)

    def _rotation_due(self, records: tuple[KeyRecord, ...] | list[KeyRecord], states: dict[str, str], now: int) -> bool:
        days = self.keys.rotate_every_days
        if days <= 0 or "next" in states.values():
            return False
        active = next(r for r in records if states.get(r.kid) == "active")
        period = int(days * 86400)
        return now >= active.not_before + period - self.keys.publish_ahead_seconds

    def maintain(self, now: int | None = None) -> list[str]:
        """Bring the ring up to date at ``now``; returns what it did, one line per action.

        Creates the first key (signing at once) if there is none or none is active;
        schedules the periodic rotation when due; marks keys that a newer key superseded
        without a ``retired_at`` (a writer that crashed mid-rotation) as retiring; deletes
        keys past ``remove_after``. Idempotent; under the storage lock, so processes
        running it at once make exactly one change between them.
        """
        at = _now(now)
        self.reload()
        assert self._snapshot is not None
        if not self._work_due(self._snapshot.records, at):
            return []
        actions: list[str] = []
        with self.storage.lock():
            records = self._locked_records()
            for r in records:
                if r.remove_after is not None and at >= r.remove_after:
                    self.storage.delete(r.kid)
                    actions.append(f"removed {r.kid} ({r.alg}): every token it signed has expired")
            records = [r for r in records if r.remove_after is None or at < r.remove_after]
            states = classify(records, at)
            if "active" not in states.values():
                new = self._rotate_now(records, states, at)
                actions.append(f"created {new.kid} ({new.alg}): signing from now (no key was active)")
            else:
                for r in records:
                    if states[r.kid] == "retiring" and r.retired_at is None:
                        self.storage.save(dataclasses.replace(r, retired_at=at, remove_after=self._retire_until(at)))
                        actions.append(f"retired {r.kid}: superseded by a newer key")
                if self._rotation_due(records, states, at):
                    new = self._schedule(records, states, at)
                    actions.append(
                        f"scheduled {new.kid} ({new.alg}): published now, signing from {iso_utc(new.not_before)}"
                    )
            self.reload()
        return actions

    def rotate(self, now: int | None = None, immediate: bool = False) -> KeyState:
        """Start a rotation and return the new key's state (see the module docstring).

        Normal: a new key published now that signs after ``publish_ahead_seconds``; if a
        key is already waiting, nothing changes and that key is returned. Immediate: a new
        key that signs at once; the old active key keeps verifying until its tokens expire.
        """
        at = _now(now)
        with self.storage.lock():
            records = [r for r in self._locked_records() if r.remove_after is None or at < r.remove_after]
            states = classify(records, at)
            waiting = [r for r in records if states.get(r.kid) == "next"]
            if immediate or "active" not in states.values():
                new = self._rotate_now(records, states, at)
            elif waiting:
                new = max(waiting, key=lambda r: (r.not_before, r.kid))
            else:
                new = self._schedule(records, states, at)
            self.reload()
        return next(s for s in self.states(at) if s.kid == new.kid)

    def _schedule(self, records: list[KeyRecord], states: dict[str, str], now: int) -> KeyRecord:
        """New key signing from now + publish_ahead; the active key retires at that instant.

        The active key must open with our secret first: a new key sealed under a mistyped
        ``keys.encryption_secret`` would split the ring between two secrets. (The immediate
        path skips this check: it is also how a ring whose secret was lost is re-keyed.)
        """
        for r in records:
            if states.get(r.kid) == "active":
                self._private_key(r)
        switch = now + self.keys.publish_ahead_seconds
        new = self._new_record(created_at=now, not_before=switch)
        for r in records:
            if states.get(r.kid) == "active":
                self.storage.save(dataclasses.replace(r, retired_at=switch, remove_after=self._retire_until(switch)))
        return new

    def _rotate_now(self, records: list[KeyRecord], states: dict[str, str], now: int) -> KeyRecord:
        """New key signing at once; active keys retire now; waiting keys (never used) are deleted."""
        new = self._new_record(created_at=now, not_before=now)  # written first: readers switch to it at once
        for r in records:
            state = states.get(r.kid)
            if state == "next":
                self.storage.delete(r.kid)
            elif state == "active" or (state == "retiring" and r.retired_at is None):
                self.storage.save(dataclasses.replace(r, retired_at=now, remove_after=self._retire_until(now)))
        return new
