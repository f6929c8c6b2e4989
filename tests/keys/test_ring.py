"""The key ring over file storage: both algorithms, signing, JWKS, and the rotation lifecycle.

Every test drives the clock through ``now`` (from T0) and turns off the ring's own
periodic maintenance, so the phases next -> active -> retiring -> removed are reached
exactly when the settings say.
"""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from broker.keys.errors import KeyStorageError, NoSigningKey
from broker.keys.jwk import PRIVATE_MEMBERS, thumbprint
from broker.keys.ring import RSA_KEY_BITS, KeyRing, classify
from broker.settings import Settings
from tests.keys.conftest import T0, file_ring, make_settings

AHEAD = 600
LIFETIME = 3600
LEEWAY = 60  # Settings().limits.clock_leeway_seconds


def verify(token: str, ring_jwks: dict, now: int, typ: str = "at+jwt") -> dict:
    """Verify as a relying party would: pick the key by kid from the published JWKS."""
    header = jwt.get_unverified_header(token)
    assert header["typ"] == typ
    jwk = next(k for k in ring_jwks["keys"] if k["kid"] == header["kid"])
    key = jwt.PyJWK(jwk)
    return jwt.decode(token, key.key, algorithms=[jwk["alg"]], options={"verify_exp": False, "verify_aud": False})


def lifecycle_settings(tmp_path: Path, alg: str = "ES256", **keys: object) -> Settings:
    base = {
        "algorithm": alg,
        "publish_ahead_seconds": AHEAD,
        "max_token_lifetime_seconds": LIFETIME,
        "rotate_every_days": 0.0,
    }
    return make_settings(tmp_path / "data", **{**base, **keys})


def state_of(ring: KeyRing, now: int) -> dict[str, str]:
    return {s.kid: s.state for s in ring.states(now)}


@pytest.mark.parametrize(("alg", "kty"), [("ES256", "EC"), ("RS256", "RSA")])
def test_first_key_signs_and_verifies_with_published_jwks(tmp_path: Path, alg: str, kty: str) -> None:
    ring = file_ring(lifecycle_settings(tmp_path, alg))
    actions = ring.maintain(T0)
    assert len(actions) == 1 and actions[0].startswith("created")
    key = ring.signing_key(T0)
    assert key.alg == alg
    expected_type = ec.EllipticCurvePrivateKey if alg == "ES256" else rsa.RSAPrivateKey
    assert isinstance(key.private_key, expected_type)
    if alg == "RS256":
        assert key.private_key.key_size == RSA_KEY_BITS
    jwks = ring.jwks(T0)
    [published] = jwks["keys"]
    assert published["kid"] == key.kid == thumbprint(published)
    assert published["kty"] == kty and published["alg"] == alg and published["use"] == "sig"
    assert not PRIVATE_MEMBERS.intersection(published)
    token = ring.sign(
        {"sub": "alice", "exp": T0 + 60}, typ="at+jwt", headers={"jku": "https://broker.test/jwks"}, now=T0
    )
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": key.kid, "typ": "at+jwt", "jku": "https://broker.test/jwks"}
    assert verify(token, jwks, T0)["sub"] == "alice"
    assert ring.public_keys(T0)[key.kid][0] == alg


def test_maintain_is_idempotent(tmp_path: Path) -> None:
    ring = file_ring(lifecycle_settings(tmp_path))
    ring.maintain(T0)
    assert ring.maintain(T0) == []
    assert ring.maintain(T0 + 10) == []
    assert len(ring.states(T0)) == 1


def test_empty_ring_has_no_signing_key_and_says_what_to_do(tmp_path: Path) -> None:
    ring = file_ring(lifecycle_settings(tmp_path))
    with pytest.raises(NoSigningKey, match="keys rotate --immediate"):
        ring.signing_key(T0)
    with pytest.raises(NoSigningKey):
        ring.sign({"sub": "x"}, typ="at+jwt", now=T0)
    assert ring.jwks(T0) == {"keys": []}
    assert not (tmp_path / "data" / "keys").exists()  # open() and reads create nothing


@pytest.mark.parametrize("member", ["alg", "kid", "typ", "jwk", "x5c", "x5u", "crit"])
def test_sign_refuses_headers_the_ring_owns(tmp_path: Path, member: str) -> None:
    ring = file_ring(lifecycle_settings(tmp_path))
    ring.maintain(T0)
    with pytest.raises(ValueError, match=member):
        ring.sign({"sub": "x"}, typ="at+jwt", headers={member: "none"}, now=T0)


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_fto8_lifecycle_next_active_retiring_removed(tmp_path: Path, alg: str) -> None:
    """FT-08: publish-new before signing, switch, keep the old key until its tokens expired, remove."""
    ring = file_ring(lifecycle_settings(tmp_path, alg))
    ring.maintain(T0)
    old = ring.signing_key(T0).kid
    old_token = ring.sign({"sub": "alice", "exp": T0 + 100 + LIFETIME}, typ="at+jwt", now=T0 + 100)

    rotated = ring.rotate(now=T0 + 100)
    new = rotated.kid
    assert rotated.state == "next"
    assert rotated.not_before == T0 + 100 + AHEAD
    assert state_of(ring, T0 + 100) == {old: "active", new: "next"}
    assert [k["kid"] for k in ring.jwks(T0 + 100)["keys"]] == [old, new]  # published before it signs
    assert ring.signing_key(T0 + 100 + AHEAD - 1).kid == old

    # hand-over at exactly not_before
    switch = T0 + 100 + AHEAD
    last_old_token = ring.sign({"sub": "bob", "exp": switch - 1 + LIFETIME}, typ="at+jwt", now=switch - 1)
    assert state_of(ring, switch) == {new: "active", old: "retiring"}
    assert ring.signing_key(switch).kid == new
    retiring = next(s for s in ring.states(switch) if s.kid == old)
    assert retiring.retired_at == switch
    assert retiring.remove_after == switch + LIFETIME + LEEWAY

    # tokens signed by the old key verify with the JWKS published at any time until they expire
    for at in (switch, switch + LIFETIME - 1, switch + LIFETIME + LEEWAY - 1):
        jwks = ring.jwks(at)
        assert {k["kid"] for k in jwks["keys"]} == {old, new}
        assert verify(old_token, jwks, at)["sub"] == "alice"
        assert verify(last_old_token, jwks, at)["sub"] == "bob"
    assert ring.maintain(switch + LIFETIME + LEEWAY - 1) == []

    # then it is unpublished, and maintain deletes it
    gone = switch + LIFETIME + LEEWAY
    assert [k["kid"] for k in ring.jwks(gone)["keys"]] == [new]
    actions = ring.maintain(gone)
    assert actions == [f"removed {old} ({alg}): every token it signed has expired"]
    assert not (tmp_path / "data" / "keys" / f"{old}.json").exists()
    assert state_of(ring, gone) == {new: "active"}
    with pytest.raises(StopIteration):
        verify(old_token, ring.jwks(gone), gone)


def test_rotate_while_a_key_waits_changes_nothing(tmp_path: Path) -> None:
    ring = file_ring(lifecycle_settings(tmp_path))
    ring.maintain(T0)
    first = ring.rotate(now=T0 + 10)
    again = ring.rotate(now=T0 + 20)
    assert again == first
    assert len(ring.states(T0 + 20)) == 2
    assert len(list((tmp_path / "data" / "keys").glob("*.json"))) == 2


def test_repeated_rotations_keep_the_ring_bounded(tmp_path: Path) -> None:
    """A rotation every publish_ahead for a long time: at most one waiting key, old keys removed."""
    ring = file_ring(lifecycle_settings(tmp_path))
    ring.maintain(T0)
    at = T0
    for _ in range(30):
        at += AHEAD
        ring.rotate(now=at)
        ring.maintain(at)
        states = [s.state for s in ring.states(at)]
        assert states.count("active") == 1 and states.count("next") <= 1
    # keys stay published for LIFETIME + LEEWAY after retiring: bounded by that window
    assert len(ring.states(at)) <= (LIFETIME + LEEWAY) // AHEAD + 3


def test_immediate_rotation_signs_at_once_and_keeps_old_tokens_verifiable(tmp_path: Path) -> None:
    ring = file_ring(lifecycle_settings(tmp_path))
    ring.maintain(T0)
    old = ring.signing_key(T0).kid
    token = ring.sign({"sub": "alice", "exp": T0 + LIFETIME}, typ="at+jwt", now=T0)
    waiting = ring.rotate(now=T0 + 5)
    emergency = ring.rotate(now=T0 + 10, immediate=True)
    assert emergency.state == "active" and emergency.not_before == T0 + 10
    assert ring.signing_key(T0 + 10).kid == emergency.kid
    states = state_of(ring, T0 + 10)
    assert states == {emergency.kid: "active", old: "retiring"}  # the waiting key, never used, is gone
    assert waiting.kid not in states
    assert not (tmp_path / "data" / "keys" / f"{waiting.kid}.json").exists()
    assert verify(token, ring.jwks(T0 + 10), T0 + 10)["sub"] == "alice"


def test_scheduled_rotation_from_rotate_every_days(tmp_path: Path) -> None:
    ring = file_ring(lifecycle_settings(tmp_path, rotate_every_days=1.0))
    ring.maintain(T0)
    first = ring.signing_key(T0).kid
    due = T0 + 86400 - AHEAD
    assert ring.maintain(due - 1) == []
    [action] = ring.maintain(due)
    assert action.startswith("scheduled")
    assert ring.maintain(due + 1) == []  # the waiting key is not doubled
    assert ring.signing_key(T0 + 86400 - 1).kid == first
    second = ring.signing_key(T0 + 86400).kid
    assert second != first


def test_algorithm_change_takes_effect_at_the_next_rotation(tmp_path: Path) -> None:
    ring = file_ring(lifecycle_settings(tmp_path, "ES256"))
    ring.maintain(T0)
    moved = file_ring(lifecycle_settings(tmp_path, "RS256"))
    assert moved.signing_key(T0).alg == "ES256"  # tokens in flight keep verifying
    rotated = moved.rotate(now=T0 + 1, immediate=True)
    assert rotated.alg == "RS256"
    assert {s.alg for s in moved.states(T0 + 1)} == {"ES256", "RS256"}
    assert moved.signing_key(T0 + 1).alg == "RS256"


def test_other_processes_rotations_are_seen_after_the_refresh_interval(tmp_path: Path) -> None:
    settings = lifecycle_settings(tmp_path)
    server = file_ring(settings, refresh_seconds=3600)
    server.maintain(T0)
    first = server.signing_key(T0).kid
    operator = file_ring(settings)
    rotated = operator.rotate(now=T0 + 1, immediate=True)
    assert server.signing_key(T0 + 1).kid == first  # inside the interval: no I/O, the old view
    server.reload()
    assert server.signing_key(T0 + 1).kid == rotated.kid


def test_reads_do_no_storage_io_between_refreshes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = lifecycle_settings(tmp_path)
    ring = file_ring(settings, refresh_seconds=3600)
    ring.maintain(T0)
    ring.signing_key(T0)
    calls = []
    original = ring.storage.load_if_changed
    monkeypatch.setattr(ring.storage, "load_if_changed", lambda token: calls.append(token) or original(token))
    for _ in range(1000):
        ring.sign({"sub": "x"}, typ="at+jwt", now=T0)
        ring.jwks(T0)
    assert calls == []


def test_a_writer_that_crashed_mid_rotation_is_repaired(tmp_path: Path) -> None:
    """New key written, old key's retired_at never written: the newer key wins and maintain retires the old."""
    ring = file_ring(lifecycle_settings(tmp_path))
    ring.maintain(T0)
    old = ring.signing_key(T0).kid
    path = tmp_path / "data" / "keys" / f"{old}.json"
    saved = path.read_bytes()
    new = ring.rotate(now=T0 + 10, immediate=True).kid
    path.write_bytes(saved)  # undo the old key's retirement, as if the process died before writing it
    ring.reload()
    assert state_of(ring, T0 + 10) == {new: "active", old: "retiring"}
    assert ring.maintain(T0 + 10) == [f"retired {old}: superseded by a newer key"]
    retired = next(s for s in ring.states(T0 + 10) if s.kid == old)
    assert retired.remove_after == T0 + 10 + LIFETIME + LEEWAY


def test_classify_picks_latest_not_before_as_active() -> None:
    from broker.keys.records import KeyRecord

    def rec(kid: str, nb: int, retired: int | None = None, remove: int | None = None) -> KeyRecord:
        return KeyRecord(
            kid=kid,
            alg="ES256",
            public_jwk={},
            private=b"",
            created_at=nb - 10,
            not_before=nb,
            retired_at=retired,
            remove_after=remove,
        )

    records = [rec("a", 100, retired=200, remove=300), rec("b", 200), rec("c", 400)]
    assert classify(records, 99) == {"a": "next", "b": "next", "c": "next"}
    assert classify(records, 199) == {"a": "active", "b": "next", "c": "next"}
    assert classify(records, 200) == {"a": "retiring", "b": "active", "c": "next"}
    assert classify(records, 300) == {"b": "active", "c": "next"}
    assert classify(records, 400) == {"b": "retiring", "c": "active"}


def test_a_record_whose_kid_is_not_its_thumbprint_is_refused(tmp_path: Path) -> None:
    ring = file_ring(lifecycle_settings(tmp_path))
    ring.maintain(T0)
    kid = ring.signing_key(T0).kid
    path = tmp_path / "data" / "keys" / f"{kid}.json"
    data = json.loads(path.read_text())
    other = file_ring(lifecycle_settings(tmp_path / "other"))
    other.maintain(T0)
    data["public_jwk"] = other.jwks(T0)["keys"][0] | {}
    for member in ("kid", "alg", "use"):
        data["public_jwk"].pop(member)
    path.write_text(json.dumps(data))
    with pytest.raises(KeyStorageError, match="not the thumbprint"):
        file_ring(lifecycle_settings(tmp_path)).signing_key(T0)


def test_a_private_key_that_does_not_match_its_kid_is_refused(tmp_path: Path) -> None:
    ring = file_ring(lifecycle_settings(tmp_path))
    ring.maintain(T0)
    kid = ring.signing_key(T0).kid
    other = file_ring(lifecycle_settings(tmp_path / "other"))
    other.maintain(T0)
    other_kid = other.signing_key(T0).kid
    other_pem = json.loads((tmp_path / "other" / "data" / "keys" / f"{other_kid}.json").read_text())["private_key_pem"]
    path = tmp_path / "data" / "keys" / f"{kid}.json"
    data = json.loads(path.read_text())
    data["private_key_pem"] = other_pem
    path.write_text(json.dumps(data))
    with pytest.raises(KeyStorageError, match="does not belong"):
        file_ring(lifecycle_settings(tmp_path)).signing_key(T0)


def test_a_long_running_ring_rotates_on_schedule_by_itself(tmp_path: Path) -> None:
    """The server calls maintain() only at start; the ring runs it again when a rotation falls due."""
    settings = lifecycle_settings(tmp_path, rotate_every_days=1.0, publish_ahead_seconds=86400)  # due at once
    quiet = file_ring(settings)  # auto maintenance off
    quiet.maintain()
    quiet.signing_key()
    assert [s.state for s in quiet.states()] == ["active"]
    busy = file_ring(settings, auto_maintain_seconds=0.0, refresh_seconds=0.0)
    busy.signing_key()  # a request: the periodic check sees the rotation is due and runs it
    assert [s.state for s in busy.states()] == ["active", "next"]
    busy.signing_key()
    assert len(busy.states()) == 2  # and it does not pile up keys on later requests
