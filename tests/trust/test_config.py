"""TrustConfig.from_settings: pinned keys, files, mistakes named by key path, exact lookups, version."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.settings import SettingsError, load_settings
from broker.settings_model import SettingsProblem
from broker.trust.config import ResolvedKey, TrustConfig, own_jwks_url
from broker.trust.keyset import parse_key
from broker.trust.settings import JwksFetchSettings, TrustedBrokerSettings, TrustedIssuerSettings, TrustSettings
from tests.support.jwks_server import TestKey

OWN = "https://broker.example/"
A = "https://a.example/"
B = "https://b.example"


def build(
    *issuers: TrustedIssuerSettings,
    brokers: tuple[TrustedBrokerSettings, ...] = (),
    own: str = OWN,
    allow_http: bool = False,
    own_keys: Any = None,
) -> TrustConfig:
    trust = TrustSettings(
        visa_issuers=list(issuers), brokers=list(brokers), fetch=JwksFetchSettings(allow_http_loopback=allow_http)
    )
    return TrustConfig.from_settings(trust, own, own_keys)


def settings_error(call: Any, key: str) -> SettingsProblem:
    with pytest.raises(SettingsProblem) as info:
        call()
    assert info.value.key == key, str(info.value)
    return info.value


def jwks(*keys: TestKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk() for k in keys]}


def test_own_jwks_url() -> None:
    assert own_jwks_url("https://broker.example/") == "https://broker.example/.well-known/jwks.json"
    assert own_jwks_url("https://broker.example") == "https://broker.example/.well-known/jwks.json"
    assert own_jwks_url("https://x.example/ga4gh/") == "https://x.example/ga4gh/.well-known/jwks.json"


def test_issuers_and_brokers_from_settings(ec1: TestKey) -> None:
    trust = build(
        TrustedIssuerSettings(
            iss=A,
            jku=["https://a.example/jwks.json"],
            visa_types=["ControlledAccessGrants"],
            sources=["https://dac.example"],
        ),
        TrustedIssuerSettings(iss=B, jwks=jwks(ec1)),
        brokers=(TrustedBrokerSettings(iss="https://peer.example/", jwks_uri="https://peer.example/jwks"),),
    )
    a = trust.visa_issuer(A)
    assert a is not None and a.jku == frozenset({"https://a.example/jwks.json"}) and dict(a.pinned) == {}
    assert a.visa_types == frozenset({"ControlledAccessGrants"}) and a.sources == frozenset({"https://dac.example"})
    b = trust.visa_issuer(B)
    assert b is not None and b.jku == frozenset() and set(b.pinned) == {"ec-1"}
    assert b.visa_types is None and b.sources is None and not b.own
    assert b.pinned["ec-1"].key.public_numbers() == ec1.public.public_numbers()
    peer = trust.broker("https://peer.example/")
    assert peer is not None and peer.jwks_uri == "https://peer.example/jwks"
    assert trust.broker(A) is None and trust.visa_issuer("https://peer.example/") is None


def test_lookups_are_exact_strings(ec1: TestKey) -> None:
    trust = build(TrustedIssuerSettings(iss=A, jwks=jwks(ec1)), TrustedIssuerSettings(iss=B, jwks=jwks(ec1)))
    assert trust.visa_issuer(A) is not None and trust.visa_issuer(B) is not None
    for near in [
        "https://a.example",
        "https://A.example/",
        "HTTPS://a.example/",
        "https://a.example/ ",
        "https://a.example//",
        "https://b.example/",
        "https://a.example/%2F",
        "https://a.example:443/",
        "https://user@a.example/",
        " https://a.example/",
    ]:
        assert trust.visa_issuer(near) is None, near
        assert trust.broker(near) is None
    assert trust.visa_issuer(None) is None and trust.visa_issuer(["x"]) is None  # type: ignore[arg-type]


def test_own_issuer_is_implicitly_trusted_with_ring_keys(ec1: TestKey) -> None:
    ring = {"ec-1": parse_key(ec1.public_jwk())}
    trust = build(own_keys=lambda: ring)
    assert trust.own_issuer == OWN and trust.is_own(OWN) and not trust.is_own(OWN.rstrip("/"))
    mine = trust.visa_issuer(OWN)
    assert mine is not None and mine.own and mine.jku == frozenset({own_jwks_url(OWN)})
    assert dict(mine.pinned) == ring
    broker = trust.broker(OWN)
    assert broker is not None and broker.own and dict(broker.pinned) == ring
    assert len(build().visa_issuer(OWN).pinned) == 0  # type: ignore[union-attr]  # no key ring handed in


def test_own_issuer_cannot_be_configured(ec1: TestKey) -> None:
    settings_error(lambda: build(TrustedIssuerSettings(iss=OWN, jwks=jwks(ec1))), "trust.visa_issuers[0].iss")
    settings_error(lambda: build(brokers=(TrustedBrokerSettings(iss=OWN, jwks=jwks(ec1)),)), "trust.brokers[0].iss")


def test_duplicate_issuer_refused(ec1: TestKey) -> None:
    error = settings_error(
        lambda: build(
            TrustedIssuerSettings(iss=A, jwks=jwks(ec1)), TrustedIssuerSettings(iss=A, jku=["https://a.example/j"])
        ),
        "trust.visa_issuers[1].iss",
    )
    assert "trust.visa_issuers[0]" in error.message


def test_jwks_file_pinned(tmp_path: Path, ec1: TestKey, rsa1: TestKey) -> None:
    path = tmp_path / "issuer-b.jwks.json"
    path.write_text(json.dumps(jwks(rsa1)))
    trust = build(TrustedIssuerSettings(iss=B, jwks=jwks(ec1), jwks_file=str(path)))
    assert set(trust.visa_issuer(B).pinned) == {"ec-1", "rsa-1"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "content,why",
    [
        (None, "file not found"),
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"keys": [], "keys": []}', "duplicate"),
        (b"[]", "JWK Set"),
        (b'{"keys": []}', "no keys"),
    ],
)
def test_bad_jwks_file_names_the_key_path(tmp_path: Path, ec1: TestKey, content: bytes | None, why: str) -> None:
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_bytes(content)
    issuers = [
        TrustedIssuerSettings(iss=A, jwks=jwks(ec1)),
        TrustedIssuerSettings(iss=B, jwks=jwks(ec1)),
        TrustedIssuerSettings(iss="urn:example:dac", jwks_file=str(path)),
    ]
    error = settings_error(lambda: build(*issuers), "trust.visa_issuers[2].jwks_file")
    assert why in error.message


def test_unreadable_jwks_file(tmp_path: Path) -> None:
    error = settings_error(
        lambda: build(TrustedIssuerSettings(iss=A, jwks_file=str(tmp_path))), "trust.visa_issuers[0].jwks_file"
    )
    assert "cannot read" in error.message


def test_oversized_jwks_file(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b'{"keys": []}' + b" " * 1_048_576)
    error = settings_error(
        lambda: build(TrustedIssuerSettings(iss=A, jwks_file=str(path))), "trust.visa_issuers[0].jwks_file"
    )
    assert "larger than" in error.message


@pytest.mark.parametrize(
    "member,why",
    [
        ({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, "symmetric"),
        ("private", "private"),
        ("nokid", "needs a kid"),
        ("weak", "RSA-1024"),
        ("enc", "use"),
    ],
)
def test_bad_inline_key_names_its_path(ec1: TestKey, ec2: TestKey, member: Any, why: str) -> None:
    if member == "private":
        member = ec2.private_jwk()
    elif member == "nokid":
        member = ec2.public_jwk(kid=None)
    elif member == "weak":
        member = TestKey.rsa("weak", bits=1024).public_jwk()
    elif member == "enc":
        member = ec2.public_jwk(use="enc")
    document = {"keys": [ec1.public_jwk(), member]}
    error = settings_error(
        lambda: build(TrustedIssuerSettings(iss=A, jwks=document)), "trust.visa_issuers[0].jwks.keys[1]"
    )
    assert why in error.message
    assert "AAAA" not in error.message and (not isinstance(member, dict) or str(member.get("d")) not in error.message)


def test_inline_jwks_must_be_a_set(ec1: TestKey) -> None:
    settings_error(lambda: build(TrustedIssuerSettings(iss=A, jwks=ec1.public_jwk())), "trust.visa_issuers[0].jwks")
    settings_error(lambda: build(brokers=(TrustedBrokerSettings(iss=A, jwks={"keys": "x"}),)), "trust.brokers[0].jwks")


def test_duplicate_pinned_kid_refused(tmp_path: Path, ec1: TestKey) -> None:
    path = tmp_path / "k.json"
    path.write_text(json.dumps(jwks(ec1)))
    settings_error(
        lambda: build(TrustedIssuerSettings(iss=A, jwks=jwks(ec1), jwks_file=str(path))),
        "trust.visa_issuers[0].jwks_file.keys[0]",
    )


@pytest.mark.parametrize(
    "url,allow_http",
    [
        ("http://a.example/jwks.json", True),
        ("http://127.0.0.1:8080/jwks.json", False),
        ("https://good.example@evil.example/jwks.json", False),
        ("https://evil.example\\@good.example/jwks.json", False),
        ("file:///etc/passwd", True),
        ("https://a.example/jwks.json#x", False),
        ("/relative/jwks.json", False),
    ],
)
def test_bad_jku_url_stops_the_start(url: str, allow_http: bool) -> None:
    settings_error(
        lambda: build(TrustedIssuerSettings(iss=A, jku=["https://a.example/ok", url]), allow_http=allow_http),
        "trust.visa_issuers[0].jku[1]",
    )
    settings_error(
        lambda: build(brokers=(TrustedBrokerSettings(iss=A, jwks_uri=url),), allow_http=allow_http),
        "trust.brokers[0].jwks_uri",
    )


def test_http_loopback_jku_allowed_only_by_setting() -> None:
    url = "http://127.0.0.1:8080/jwks.json"
    trust = build(TrustedIssuerSettings(iss=A, jku=[url]), allow_http=True)
    assert trust.visa_issuer(A).jku == frozenset({url})  # type: ignore[union-attr]


def test_broker_needs_a_key_source() -> None:
    settings_error(lambda: build(brokers=(TrustedBrokerSettings(iss=A),)), "trust.brokers[0]")


def test_loaded_from_a_yaml_file(tmp_path: Path, ec1: TestKey) -> None:
    keys = tmp_path / "dac.jwks.json"
    keys.write_text(json.dumps(jwks(ec1)))
    config = tmp_path / "broker.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "issuer": OWN,
                "trust": {
                    "visa_issuers": [
                        {"iss": A, "jku": ["https://a.example/jwks.json"], "visa_types": ["AffiliationAndRole"]},
                        {"iss": "urn:example:dac", "jwks_file": str(keys)},
                    ],
                    "brokers": [{"iss": "https://peer.example/", "jwks_uri": "https://peer.example/jwks"}],
                    "fetch": {"max_keys": 8},
                },
            }
        )
    )
    loaded = load_settings(config, environ={})
    trust = TrustConfig.from_settings(loaded.trust, loaded.issuer)
    assert trust.visa_issuer("urn:example:dac").pinned["ec-1"].alg == "ES256"  # type: ignore[union-attr]
    assert trust.visa_issuer(A).visa_types == frozenset({"AffiliationAndRole"})  # type: ignore[union-attr]
    keys.write_text("{")
    with pytest.raises(SettingsError) as info:  # the loader refuses what start-up would
        load_settings(config, environ={})
    assert info.value.key == "trust.visa_issuers[1].jwks_file" and info.value.source == str(config)


# --------------------------------------------------------------------------- version


def _base(ec1: TestKey, **changes: Any) -> list[TrustedIssuerSettings]:
    fields: dict[str, Any] = {
        "iss": A,
        "jku": ["https://a.example/j1", "https://a.example/j2"],
        "jwks": jwks(ec1),
        "visa_types": ["ResearcherStatus"],
        "sources": ["https://s"],
    }
    fields.update(changes)
    return [TrustedIssuerSettings(**fields)]


def test_version_is_stable_for_equal_trust(ec1: TestKey) -> None:
    one = build(*_base(ec1)).version
    assert one == build(*_base(ec1)).version
    reordered = _base(
        ec1,
        jku=["https://a.example/j2", "https://a.example/j1"],
    )
    assert build(*reordered).version == one  # order of an allow-list is not trust content
    assert isinstance(one, str) and len(one) >= 16


@pytest.mark.parametrize(
    "change",
    [
        {"jku": ["https://a.example/j1"]},
        {"jku": ["https://a.example/j1", "https://a.example/j2/"]},
        {"visa_types": ["ResearcherStatus", "ControlledAccessGrants"]},
        {"visa_types": None},
        {"sources": ["https://s/"]},
        {"sources": None},
        {"iss": "https://a.example"},
        {"jwks": "other-key"},
    ],
)
def test_version_changes_when_trust_changes(ec1: TestKey, ec2: TestKey, change: dict[str, Any]) -> None:
    if change.get("jwks") == "other-key":
        change = {"jwks": jwks(ec2)}
    assert build(*_base(ec1, **change)).version != build(*_base(ec1)).version


def test_version_changes_with_brokers_own_issuer_and_same_kid_new_key(ec1: TestKey, ec2: TestKey) -> None:
    base = build(*_base(ec1)).version
    assert build(*_base(ec1), brokers=(TrustedBrokerSettings(iss=B, jwks_uri="https://b.example/j"),)).version != base
    assert build(*_base(ec1), own="https://other-broker.example/").version != base
    same_kid = {"keys": [ec2.public_jwk(kid="ec-1")]}  # same kid, different key material
    assert build(*_base(ec1, jwks=same_kid)).version != base


def test_version_follows_our_key_ring(ec1: TestKey, ec2: TestKey) -> None:
    ring: dict[str, ResolvedKey] = {"ec-1": parse_key(ec1.public_jwk())}

    def own_keys() -> Mapping[str, ResolvedKey]:
        return ring

    trust = build(own_keys=own_keys)
    first = trust.version
    assert trust.version == first
    ring["ec-2"] = parse_key(ec2.public_jwk())
    second = trust.version
    assert second != first
    del ring["ec-1"]
    assert trust.version not in (first, second)
    ring["ec-1"] = parse_key(ec1.public_jwk())
    assert trust.version == second
