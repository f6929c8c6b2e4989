"""KeyResolver against real JWKS servers: the order of checks, exact jku matching, the cache.

Every "never fetched" claim is checked on the servers' own counters (requests and accepted
TCP connections), not on the resolver's word.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from broker.core.models import Reason
from broker.trust.config import ResolvedKey, TrustConfig, TrustedIssuer, own_jwks_url
from broker.trust.jwks import KeyResolutionError, KeyResolver
from broker.trust.keyset import parse_key
from broker.trust.settings import JwksFetchSettings, TrustedBrokerSettings, TrustedIssuerSettings, TrustSettings
from tests.support.jwks_server import JwksServer, Route, TestKey
from tests.trust.conftest import Clock

ISS = "https://issuer.example/"
OTHER = "https://other-issuer.example/"
OWN = "https://broker.example/"


def make_trust(
    *issuers: TrustedIssuerSettings,
    brokers: tuple[TrustedBrokerSettings, ...] = (),
    own: str = OWN,
    own_keys: Callable[[], Mapping[str, ResolvedKey]] | None = None,
) -> TrustConfig:
    trust = TrustSettings(visa_issuers=list(issuers), brokers=list(brokers))
    return TrustConfig.from_settings(trust, own, own_keys)


def resolver(
    trust: TrustConfig, server: JwksServer, clock: Clock, fetch: JwksFetchSettings | None = None
) -> KeyResolver:
    return KeyResolver(trust, fetch or JwksFetchSettings(), session=server.session(), clock=clock)


def refused(call: Callable[[], Any], reason: Reason) -> KeyResolutionError:
    with pytest.raises(KeyResolutionError) as info:
        call()
    assert info.value.reason is reason, info.value.detail
    return info.value


def resolved(key: TestKey) -> ResolvedKey:
    return parse_key(key.public_jwk())


# --------------------------------------------------------------------------- order of checks: zero fetches


def test_untrusted_issuer_refused_first_with_zero_fetches(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    refused(lambda: r.visa_key(OTHER, server.url(), "ec-1", "ES256"), Reason.UNTRUSTED_ISSUER)
    refused(lambda: r.visa_key("https://ISSUER.example/", server.url(), "ec-1", "ES256"), Reason.UNTRUSTED_ISSUER)
    refused(lambda: r.visa_key(ISS.rstrip("/"), server.url(), "ec-1", "ES256"), Reason.UNTRUSTED_ISSUER)
    refused(lambda: r.visa_key(["x"], server.url(), "ec-1", "ES256"), Reason.UNTRUSTED_ISSUER)  # type: ignore[arg-type]
    # Untrusted issuer even with a forbidden alg: the issuer check comes first.
    refused(lambda: r.visa_key(OTHER, server.url(), "ec-1", "none"), Reason.UNTRUSTED_ISSUER)
    assert server.connections == 0 and r.stats()["fetches"] == 0


def test_jwt05_untrusted_jku_never_fetched(
    server: JwksServer, attacker: JwksServer, clock: Clock, ec1: TestKey
) -> None:
    attacker.serve_keys(ec1)  # the attacker serves a perfectly good JWKS with the signing key
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    refused(lambda: r.visa_key(ISS, attacker.url(), "ec-1", "ES256"), Reason.JKU_NOT_ALLOWED)
    assert attacker.connections == 0 and attacker.hits() == 0
    assert server.connections == 0 and r.stats()["fetches"] == 0


def test_jwt05_jku_not_allowed_beats_pinned_keys(
    server: JwksServer, attacker: JwksServer, clock: Clock, ec1: TestKey
) -> None:
    jwks = {"keys": [ec1.public_jwk()]}
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()], jwks=jwks)), server, clock)
    refused(lambda: r.visa_key(ISS, attacker.url(), "ec-1", "ES256"), Reason.JKU_NOT_ALLOWED)
    assert attacker.connections == 0 and server.connections == 0


def test_jwt06_jku_trusted_for_another_issuer_refused(
    server: JwksServer, attacker: JwksServer, clock: Clock, ec1: TestKey
) -> None:
    server.serve_keys(ec1)
    attacker.serve_keys(ec1)
    trust = make_trust(
        TrustedIssuerSettings(iss=ISS, jku=[server.url()]), TrustedIssuerSettings(iss=OTHER, jku=[attacker.url()])
    )
    r = resolver(trust, server, clock)
    refused(lambda: r.visa_key(OTHER, server.url(), "ec-1", "ES256"), Reason.JKU_NOT_ALLOWED)
    refused(lambda: r.visa_key(ISS, attacker.url(), "ec-1", "ES256"), Reason.JKU_NOT_ALLOWED)
    assert server.connections == 0 and attacker.connections == 0


def _variants(good: str, good_port: int, evil_port: int) -> list[str]:
    base = f"https://127.0.0.1:{good_port}"
    return [
        good + "/",  # trailing slash
        good[:-1],  # a prefix of the allowed string
        good + ".evil",  # allowed string as a prefix
        good + "?x=1",
        good + "#frag",
        good.upper(),
        good.replace("https://", "HTTPS://"),
        good.replace("/jwks.json", "/JWKS.json"),
        good.replace("/jwks.json", "/jwks%2Ejson"),
        good.replace("/jwks.json", "/jwks%2ejson"),
        good.replace("/jwks.json", "/%6Awks.json"),
        good.replace("/jwks.json", "//jwks.json"),
        good.replace("/jwks.json", "/./jwks.json"),
        good.replace("/jwks.json", "/x/../jwks.json"),
        f"https://127.0.0.1:{good_port}@127.0.0.1:{evil_port}/jwks.json",  # userinfo trick
        f"https://user@127.0.0.1:{good_port}/jwks.json",
        f"https://127.0.0.1:{evil_port}\\@127.0.0.1:{good_port}/jwks.json",  # backslash parser differential
        f"https://127.0.0.1:{evil_port}#@127.0.0.1:{good_port}/jwks.json",
        f"https://localhost:{good_port}/jwks.json",  # same place, different string
        f"https://127.0.0.1:0{good_port}/jwks.json",
        f"https://127.0.0.1.:{good_port}/jwks.json",
        f"https://[::ffff:127.0.0.1]:{good_port}/jwks.json",
        f"https://127.1:{good_port}/jwks.json",
        f"https://127.0.0.1\u3002:{good_port}/jwks.json",
        " " + good,
        good + " ",
        good + "\n",
        "\t" + good,
        base + "/jwks.json\x00",
        "",
    ]


def test_jwt07_jku_compared_as_exact_whole_string(
    server: JwksServer, attacker: JwksServer, clock: Clock, ec1: TestKey
) -> None:
    server.serve_keys(ec1)
    attacker.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    variants = _variants(server.url(), server.port, attacker.port)
    assert len(set(variants)) == len(variants) and server.url() not in variants
    for jku in variants:
        refused(lambda jku=jku: r.visa_key(ISS, jku, "ec-1", "ES256"), Reason.JKU_NOT_ALLOWED)
    assert server.connections == 0 and attacker.connections == 0
    assert r.stats()["fetches"] == 0
    # ... while the exact string works (so the refusals above were not for another reason).
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert server.hits("/jwks.json") == 1 and attacker.connections == 0


@pytest.mark.parametrize("jku", [123, ["x"], {"a": 1}, b"https://x"])
def test_jku_of_wrong_type_not_allowed(server: JwksServer, clock: Clock, jku: Any) -> None:
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    refused(lambda: r.visa_key(ISS, jku, "ec-1", "ES256"), Reason.JKU_NOT_ALLOWED)
    assert server.connections == 0


def test_jku_missing_without_pinned_keys(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    refused(lambda: r.visa_key(ISS, None, "ec-1", "ES256"), Reason.JKU_MISSING)
    assert server.connections == 0


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512", "ES384", "PS256", "EdDSA", "es256", "", None, 1])
def test_jwt01_jwt02_alg_refused_before_any_fetch(server: JwksServer, clock: Clock, ec1: TestKey, alg: Any) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    refused(lambda: r.visa_key(ISS, server.url(), "ec-1", alg), Reason.BAD_ALG)
    assert server.connections == 0


@pytest.mark.parametrize(
    "kid",
    [
        "../../../../dev/null",
        "/proc/self/environ",
        "' OR '1'='1",
        "x' UNION SELECT 'AAAA'--",
        "*)(uid=*",
        "\u0000",
        "%s%s%n",
        "x" * 1_000_000,
        "ec-1 ",
        "EC-1",
        "ec-1\n",
    ],
)
def test_jwt04_kid_is_only_a_dictionary_key(server: JwksServer, clock: Clock, ec1: TestKey, kid: str) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    error = refused(lambda: r.visa_key(ISS, server.url(), kid, "ES256"), Reason.KEY_NOT_FOUND)
    assert len(error.detail) < 400  # a huge kid is not echoed back
    assert server.hits("/jwks.json") == 1  # inside the cooldown: no refetch


@pytest.mark.parametrize("kid", [123, ["ec-1"], {"k": 1}, ""])
def test_jwt04_kid_of_wrong_type_refused_without_fetch(server: JwksServer, clock: Clock, kid: Any) -> None:
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    refused(lambda: r.visa_key(ISS, server.url(), kid, "ES256"), Reason.KEY_NOT_FOUND)
    assert server.connections == 0


# --------------------------------------------------------------------------- pinned keys and our own issuer


def test_pinned_key_used_first_without_fetch(server: JwksServer, clock: Clock, ec1: TestKey, ec2: TestKey) -> None:
    server.serve_keys(ec2)
    trust = make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()], jwks={"keys": [ec1.public_jwk()]}))
    r = resolver(trust, server, clock)
    key = r.visa_key(ISS, server.url(), "ec-1", "ES256")
    assert key.key.public_numbers() == ec1.public.public_numbers()
    assert r.visa_key(ISS, None, "ec-1", "ES256") == key  # jku absent is fine with pinned keys
    assert r.visa_key(ISS, None, None, "ES256") == key  # one pinned key: kid may be absent
    assert server.connections == 0
    # A kid not pinned, with an allowed jku: fetched from there.
    assert r.visa_key(ISS, server.url(), "ec-2", "ES256").kid == "ec-2"
    assert server.hits("/jwks.json") == 1


def test_pinned_key_of_wrong_type_is_bad_alg(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    trust = make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()], jwks={"keys": [ec1.public_jwk()]}))
    r = resolver(trust, server, clock)
    refused(lambda: r.visa_key(ISS, server.url(), "ec-1", "RS256"), Reason.BAD_ALG)
    assert server.connections == 0


def test_pinned_only_issuer_never_fetches_the_jku_it_names(
    server: JwksServer, attacker: JwksServer, clock: Clock, ec1: TestKey, ec2: TestKey
) -> None:
    attacker.serve_keys(ec2)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jwks={"keys": [ec1.public_jwk()]})), server, clock)
    assert r.visa_key(ISS, attacker.url(), "ec-1", "ES256").kid == "ec-1"
    refused(lambda: r.visa_key(ISS, attacker.url(), "ec-2", "ES256"), Reason.KEY_NOT_FOUND)
    refused(lambda: r.visa_key(ISS, None, "ec-2", "ES256"), Reason.KEY_NOT_FOUND)
    assert attacker.connections == 0 and r.stats()["fetches"] == 0


def test_own_issuer_keys_come_from_the_key_ring_never_http(ca: Any, clock: Clock, ec1: TestKey, ec2: TestKey) -> None:
    ring: dict[str, ResolvedKey] = {"ec-1": resolved(ec1)}
    with JwksServer(ca=ca) as ours:
        own = ours.base_url + "/"
        ours.serve(
            "/.well-known/jwks.json",
            Route(headers={"Content-Type": "application/json"}, body=json.dumps({"keys": [ec2.public_jwk()]}).encode()),
        )
        trust = make_trust(own=own, own_keys=lambda: ring)
        r = resolver(trust, ours, clock)
        assert trust.visa_issuer(own) is not None and own_jwks_url(own) in trust.visa_issuer(own).jku  # type: ignore[union-attr]
        assert r.visa_key(own, own_jwks_url(own), "ec-1", "ES256") == ring["ec-1"]
        assert r.broker_key(own, "ec-1", "ES256") == ring["ec-1"]
        refused(lambda: r.visa_key(own, own_jwks_url(own), "ec-2", "ES256"), Reason.KEY_NOT_FOUND)
        refused(lambda: r.broker_key(own, "ec-2", "ES256"), Reason.KEY_NOT_FOUND)
        ring["ec-2"] = resolved(ec2)  # the ring rotates: seen at once, still without HTTP
        assert r.visa_key(own, own_jwks_url(own), "ec-2", "ES256") == ring["ec-2"]
        del ring["ec-1"]  # a retired key stops verifying at once
        refused(lambda: r.broker_key(own, "ec-1", "ES256"), Reason.KEY_NOT_FOUND)
        assert ours.connections == 0 and r.stats()["fetches"] == 0


# --------------------------------------------------------------------------- fetching and choosing keys


def test_fetch_over_https_with_injected_ca_then_cache(
    server: JwksServer, clock: Clock, ec1: TestKey, rsa1: TestKey
) -> None:
    server.serve_keys(ec1, rsa1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert r.visa_key(ISS, server.url(), "rsa-1", "RS256").kid == "rsa-1"
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert server.hits("/jwks.json") == 1
    stats = r.stats()
    assert stats["fetches"] == 1 and stats["cache_hits"] == 2


def test_tls_not_trusted_is_key_fetch_failed(
    server: JwksServer, clock: Clock, fast: JwksFetchSettings, ec1: TestKey
) -> None:
    server.serve_keys(ec1)
    trust = make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()]))
    r = KeyResolver(trust, fast, clock=clock)  # default session: the system CA store, which lacks the test CA
    error = refused(lambda: r.visa_key(ISS, server.url(), "ec-1", "ES256"), Reason.KEY_FETCH_FAILED)
    assert "TLS" in error.detail and server.hits() == 0


def test_plain_http_loopback_only_when_setting_allows(http_server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    http_server.serve_keys(ec1)
    # Settings refuse such a jku at load; a trust built by hand must still be refused at fetch time.
    issuer = TrustedIssuer(iss=ISS, jku=frozenset({http_server.url()}), pinned={})
    trust = TrustConfig(OWN, {ISS: issuer})
    r = resolver(trust, http_server, clock)
    error = refused(lambda: r.visa_key(ISS, http_server.url(), "ec-1", "ES256"), Reason.KEY_FETCH_FAILED)
    assert "allow_http_loopback" in error.detail and http_server.connections == 0
    allowed = resolver(trust, http_server, clock, JwksFetchSettings(allow_http_loopback=True))
    assert allowed.visa_key(ISS, http_server.url(), "ec-1", "ES256").kid == "ec-1"
    assert http_server.hits("/jwks.json") == 1


def test_jwt03_key_type_must_match_alg(server: JwksServer, clock: Clock, ec1: TestKey, rsa1: TestKey) -> None:
    weak = TestKey.rsa("rsa-weak", bits=1024)
    p384 = TestKey("ec-384", "ES256", ec.generate_private_key(ec.SECP384R1()))
    server.serve_jwks(
        {
            "keys": [
                ec1.public_jwk(),
                rsa1.public_jwk(),
                weak.public_jwk(),
                {k: v for k, v in p384.public_jwk().items() if k != "alg"},
                rsa1.public_jwk(kid="rsa-no-alg", alg=None),
                rsa1.public_jwk(kid="rsa-ps", alg="PS256"),
            ]
        }
    )
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    url = server.url()
    assert r.visa_key(ISS, url, "rsa-no-alg", "RS256").kid == "rsa-no-alg"
    refused(lambda: r.visa_key(ISS, url, "ec-1", "RS256"), Reason.BAD_ALG)
    refused(lambda: r.visa_key(ISS, url, "rsa-1", "ES256"), Reason.BAD_ALG)
    assert "2048" in refused(lambda: r.visa_key(ISS, url, "rsa-weak", "RS256"), Reason.BAD_ALG).detail
    refused(lambda: r.visa_key(ISS, url, "ec-384", "ES256"), Reason.BAD_ALG)
    refused(lambda: r.visa_key(ISS, url, "rsa-ps", "RS256"), Reason.BAD_ALG)
    assert server.hits("/jwks.json") == 1  # BAD_ALG on a known kid never triggers a refetch


def test_jwk_use_other_than_sig_is_not_used(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    server.serve_jwks({"keys": [ec1.public_jwk(use="enc")]})
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    refused(lambda: r.visa_key(ISS, server.url(), "ec-1", "ES256"), Reason.KEY_NOT_FOUND)


def test_jwt04_absent_kid_only_with_exactly_one_usable_key(
    server: JwksServer, clock: Clock, ec1: TestKey, ec2: TestKey, rsa1: TestKey
) -> None:
    server.serve_jwks({"keys": [ec1.public_jwk(), rsa1.public_jwk(use="enc")]})  # the enc key is not usable
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    assert r.visa_key(ISS, server.url(), None, "ES256").kid == "ec-1"  # the one usable key
    server.serve_keys(ec1, ec2, rsa1)
    clock.advance(301)
    error = refused(lambda: r.visa_key(ISS, server.url(), None, "ES256"), Reason.KID_REQUIRED)
    assert "3 keys" in error.detail


def test_duplicate_kid_is_ambiguous(server: JwksServer, clock: Clock, ec1: TestKey, ec2: TestKey) -> None:
    server.serve_jwks({"keys": [ec1.public_jwk(), ec2.public_jwk(kid="ec-1")]})
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    refused(lambda: r.visa_key(ISS, server.url(), "ec-1", "ES256"), Reason.KEY_NOT_FOUND)


def test_broker_key_via_jwks_uri(server: JwksServer, attacker: JwksServer, clock: Clock, ec1: TestKey) -> None:
    server.serve_keys(ec1, path="/oidc/jwks")
    trust = make_trust(brokers=(TrustedBrokerSettings(iss=OTHER, jwks_uri=server.url("/oidc/jwks")),))
    r = resolver(trust, server, clock)
    assert r.broker_key(OTHER, "ec-1", "ES256").kid == "ec-1"
    refused(lambda: r.broker_key(ISS, "ec-1", "ES256"), Reason.UNTRUSTED_ISSUER)
    refused(lambda: r.broker_key(OTHER, "ec-1", "HS256"), Reason.BAD_ALG)
    refused(lambda: r.visa_key(OTHER, server.url("/oidc/jwks"), "ec-1", "ES256"), Reason.UNTRUSTED_ISSUER)
    assert server.hits("/oidc/jwks") == 1


def test_broker_with_pinned_keys_only(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    trust = make_trust(brokers=(TrustedBrokerSettings(iss=OTHER, jwks={"keys": [ec1.public_jwk()]}),))
    r = resolver(trust, server, clock)
    assert r.broker_key(OTHER, "ec-1", "ES256").kid == "ec-1"
    refused(lambda: r.broker_key(OTHER, "ec-9", "ES256"), Reason.KEY_NOT_FOUND)
    assert server.connections == 0


# --------------------------------------------------------------------------- refetch storms and cooldown


def _storm(call: Callable[[int], Any], threads: int = 50) -> list[Any]:
    barrier = threading.Barrier(threads)
    results: list[Any] = [None] * threads

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = call(i)
        except KeyResolutionError as exc:
            results[i] = exc.reason

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    return results


def test_jwt18_unknown_kid_storm_cold_cache_one_fetch(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    server.serve(
        "/jwks.json",
        Route(
            headers={"Content-Type": "application/json"},
            delay=0.2,
            body=json.dumps({"keys": [ec1.public_jwk()]}).encode(),
        ),
    )
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    results = _storm(lambda i: r.visa_key(ISS, server.url(), f"random-{i}", "ES256"))
    assert results == [Reason.KEY_NOT_FOUND] * 50
    assert server.hits("/jwks.json") == 1 and r.stats()["fetches"] == 1


def test_jwt18_unknown_kid_storm_warm_cache_at_most_one_refetch(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256")
    clock.advance(61)  # past the cooldown: one refetch is allowed, not fifty
    results = _storm(lambda i: r.visa_key(ISS, server.url(), f"random-{i}" if i % 2 else "ec-1", "ES256"))
    assert results.count(Reason.KEY_NOT_FOUND) == 25
    assert all(isinstance(x, ResolvedKey) for x in results[::2])
    assert server.hits("/jwks.json") == 2
    assert r.stats()["refetches"] == 1


def test_jwt18_cooldown_expiry_with_injected_clock(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    r.visa_key(ISS, server.url(), "ec-1", "ES256")
    for _ in range(5):
        refused(lambda: r.visa_key(ISS, server.url(), "unknown", "ES256"), Reason.KEY_NOT_FOUND)
    assert server.hits("/jwks.json") == 1
    clock.advance(59.9)
    refused(lambda: r.visa_key(ISS, server.url(), "unknown", "ES256"), Reason.KEY_NOT_FOUND)
    assert server.hits("/jwks.json") == 1
    clock.advance(0.1)  # cooldown (60 s) over
    refused(lambda: r.visa_key(ISS, server.url(), "unknown", "ES256"), Reason.KEY_NOT_FOUND)
    assert server.hits("/jwks.json") == 2
    refused(lambda: r.visa_key(ISS, server.url(), "unknown-2", "ES256"), Reason.KEY_NOT_FOUND)
    assert server.hits("/jwks.json") == 2
    clock.advance(60)
    refused(lambda: r.visa_key(ISS, server.url(), "unknown-3", "ES256"), Reason.KEY_NOT_FOUND)
    assert server.hits("/jwks.json") == 3
    assert r.stats()["negative_hits"] == 7


def test_rotation_picked_up_on_unknown_kid(server: JwksServer, clock: Clock, ec1: TestKey, ec2: TestKey) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    r.visa_key(ISS, server.url(), "ec-1", "ES256")
    server.serve_keys(ec1, ec2)  # the issuer publishes a new key
    clock.advance(61)
    assert r.visa_key(ISS, server.url(), "ec-2", "ES256").kid == "ec-2"
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert server.hits("/jwks.json") == 2


def test_ft12_rotation_and_removal_picked_up_after_ttl(
    server: JwksServer, clock: Clock, ec1: TestKey, ec2: TestKey
) -> None:
    server.serve_keys(ec1)
    slow_cooldown = JwksFetchSettings(unknown_kid_cooldown_seconds=10_000)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock, slow_cooldown)
    r.visa_key(ISS, server.url(), "ec-1", "ES256")
    server.serve_keys(ec2)  # rotated: ec-1 removed, ec-2 added
    clock.advance(299)
    refused(lambda: r.visa_key(ISS, server.url(), "ec-2", "ES256"), Reason.KEY_NOT_FOUND)  # cooling down
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"  # still the cached set
    clock.advance(2)  # TTL (300 s) over
    assert r.visa_key(ISS, server.url(), "ec-2", "ES256").kid == "ec-2"
    refused(lambda: r.visa_key(ISS, server.url(), "ec-1", "ES256"), Reason.KEY_NOT_FOUND)  # removal took effect
    assert server.hits("/jwks.json") == 2


# --------------------------------------------------------------------------- failures, stale copies, herds


def test_ft12_stale_while_error_is_bounded(
    server: JwksServer, clock: Clock, fast: JwksFetchSettings, ec1: TestKey
) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock, fast)
    r.visa_key(ISS, server.url(), "ec-1", "ES256")
    server.serve("/jwks.json", Route(status=500, headers={"Content-Type": "application/json"}, body=b"{}"))
    clock.advance(301)  # expired: a fetch is tried, fails, and the good copy is served
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert server.hits("/jwks.json") == 2
    clock.advance(30)  # inside the failure backoff: no new request, stale copy still served
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert server.hits("/jwks.json") == 2
    clock.advance(3600 - 31 - 1)  # just before ttl + stale_if_error since the last good fetch
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert server.hits("/jwks.json") == 3
    clock.advance(1)  # the stale copy has run out
    error = refused(lambda: r.visa_key(ISS, server.url(), "ec-1", "ES256"), Reason.KEY_FETCH_FAILED)
    assert "HTTP 500" in error.detail
    assert r.stats()["stale_served"] == 3
    server.serve_keys(ec1)  # the issuer is back
    clock.advance(60)
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert r.stats()["stale_served"] == 3


def test_failure_without_copy_fails_closed_and_backs_off(
    server: JwksServer, clock: Clock, fast: JwksFetchSettings, ec1: TestKey
) -> None:
    server.serve("/jwks.json", Route(status=503, headers={"Content-Type": "application/json"}, body=b"{}"))
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock, fast)
    for _ in range(10):
        refused(lambda: r.visa_key(ISS, server.url(), "ec-1", "ES256"), Reason.KEY_FETCH_FAILED)
    assert server.hits("/jwks.json") == 1  # a server that is down is not hammered
    server.serve_keys(ec1)
    clock.advance(60)
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert server.hits("/jwks.json") == 2


def test_refetch_failure_never_wipes_a_good_copy(
    server: JwksServer, clock: Clock, fast: JwksFetchSettings, ec1: TestKey
) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock, fast)
    r.visa_key(ISS, server.url(), "ec-1", "ES256")
    server.serve("/jwks.json", Route(status=500, headers={"Content-Type": "application/json"}, body=b"{}"))
    clock.advance(61)
    refused(lambda: r.visa_key(ISS, server.url(), "ec-new", "ES256"), Reason.KEY_NOT_FOUND)  # refetch failed
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert server.hits("/jwks.json") == 2 and r.stats()["fetch_failures"] == 1


def test_ft13_thundering_herd_on_expiry_single_fetch(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    r.visa_key(ISS, server.url(), "ec-1", "ES256")
    server.serve(
        "/jwks.json",
        Route(
            headers={"Content-Type": "application/json"},
            delay=0.3,
            body=json.dumps({"keys": [ec1.public_jwk()]}).encode(),
        ),
    )
    clock.advance(301)
    results = _storm(lambda i: r.visa_key(ISS, server.url(), "ec-1", "ES256"))
    assert all(isinstance(x, ResolvedKey) and x.kid == "ec-1" for x in results)
    assert server.hits("/jwks.json") == 2


def test_stalled_server_holds_callers_for_a_bounded_time(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    # Headers dripped one byte at a time: no socket timeout fires, only the resolver's wait bound.
    server.serve(
        "/jwks.json",
        Route(
            headers={"Content-Type": "application/json"},
            header_drip=0.1,
            body=json.dumps({"keys": [ec1.public_jwk()]}).encode(),
        ),
    )
    settings = JwksFetchSettings(connect_timeout_seconds=0.2, read_timeout_seconds=0.3)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock, settings)
    started = time.monotonic()
    results = _storm(lambda i: r.visa_key(ISS, server.url(), "ec-1", "ES256"), threads=10)
    elapsed = time.monotonic() - started
    assert results == [Reason.KEY_FETCH_FAILED] * 10
    assert elapsed < 0.2 + 0.3 + 1.0 + 1.0  # the wait bound plus scheduling slack
    assert server.hits("/jwks.json") == 1
    again = time.monotonic()
    refused(lambda: r.visa_key(ISS, server.url(), "ec-1", "ES256"), Reason.KEY_FETCH_FAILED)
    assert time.monotonic() - again < 1.0  # a new wait would take the 1.5 s bound: none happened
    assert server.hits("/jwks.json") == 1
    server.stop()  # the stalled fetch now ends; being abandoned, it records nothing more
    time.sleep(0.3)
    assert r.stats()["fetch_failures"] == 1 and r.stats()["fetches"] == 1


def test_ft12_kid_missing_from_stale_copy_is_fetch_failure(
    server: JwksServer, clock: Clock, fast: JwksFetchSettings, ec1: TestKey
) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock, fast)
    r.visa_key(ISS, server.url(), "ec-1", "ES256")
    server.serve("/jwks.json", Route(status=502, headers={"Content-Type": "application/json"}, body=b"{}"))
    clock.advance(301)
    error = refused(lambda: r.visa_key(ISS, server.url(), "ec-2", "ES256"), Reason.KEY_FETCH_FAILED)
    assert "HTTP 502" in error.detail and "last good copy" in error.detail
    assert r.visa_key(ISS, server.url(), "ec-1", "ES256").kid == "ec-1"


def test_clear_forgets_cached_sets(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    r.visa_key(ISS, server.url(), "ec-1", "ES256")
    r.clear()
    r.visa_key(ISS, server.url(), "ec-1", "ES256")
    assert server.hits("/jwks.json") == 2


def test_trust_can_be_swapped_on_reload(server: JwksServer, clock: Clock, ec1: TestKey) -> None:
    server.serve_keys(ec1)
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    r.visa_key(ISS, server.url(), "ec-1", "ES256")
    r.trust = make_trust(TrustedIssuerSettings(iss=OTHER, jku=[server.url()]))
    refused(lambda: r.visa_key(ISS, server.url(), "ec-1", "ES256"), Reason.UNTRUSTED_ISSUER)
    assert r.visa_key(OTHER, server.url(), "ec-1", "ES256").kid == "ec-1"
    assert server.hits("/jwks.json") == 1


def test_stats_names_are_stable(server: JwksServer, clock: Clock) -> None:
    r = resolver(make_trust(TrustedIssuerSettings(iss=ISS, jku=[server.url()])), server, clock)
    assert set(r.stats()) >= {"fetches", "cache_hits", "refetches", "fetch_failures", "stale_served"}
    assert all(v == 0 for v in r.stats().values())
