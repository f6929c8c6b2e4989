"""Remote visa sources against real HTTPS servers on loopback: good, slow, down, bad signature, untrusted jku."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from broker.core.verify import Verifier
from broker.identity.records import Identity, IdentityLink
from broker.visas.remote import RemoteResult, RemoteVisaSources
from broker.visas.settings import VisaSourceSettings
from tests.dac.conftest import Clock
from tests.support.jwks_server import JwksServer, Route, TestKey
from tests.support.legacy_store import Store
from tests.support.parts import free_port
from tests.support.settings import replace
from tests.visas.conftest import UPSTREAM_ISS, remote_visa

PATH = "/api/permissions/elixir-user%40id"


def _source(server_url: str, name: str = "rems", **kw: Any) -> VisaSourceSettings:
    kw.setdefault("send", "upstream_sub")
    kw.setdefault("upstream_issuer", UPSTREAM_ISS)
    return VisaSourceSettings(
        name=name, url=server_url + "/api/permissions/{user}", timeout_seconds=kw.pop("timeout_seconds", 1.0), **kw
    )


def _serve(server: JwksServer, tokens: list[str], path: str = PATH, **route: Any) -> None:
    body = json.dumps({"ga4gh_passport_v1": tokens}).encode()
    server.serve(path, Route(body=body, headers={"Content-Type": "application/json"}, **route))


def _fetch(remote: RemoteVisaSources, store: Store, who: str = "researcher") -> RemoteResult:
    identity = store.get_identity(who)
    assert identity is not None
    return remote.fetch(identity, store.links_of(who))


def _remote(
    sources: list[VisaSourceSettings], verifier: Verifier, server: JwksServer, clock: Clock | None = None
) -> RemoteVisaSources:
    kw: dict[str, Any] = {"session": server.session()}
    if clock is not None:
        kw["clock"] = clock
    return RemoteVisaSources(sources, verifier, **kw)


def test_good_source_relays_verified_visas_unchanged_with_auth_header(
    sources_server: JwksServer, issuer_server: JwksServer, remote_key: TestKey, verifier: Verifier, store: Store
) -> None:
    tokens = [
        remote_visa(remote_key, issuer_server.url()),
        remote_visa(remote_key, issuer_server.url(), value="https://rems.example/ds/2"),
    ]
    _serve(sources_server, tokens)
    remote = _remote([_source(sources_server.base_url, auth_header="Bearer s3cret")], verifier, sources_server)
    result = _fetch(remote, store)
    assert result.visas == tokens and result.problems == []
    assert sources_server.last_headers["Authorization"] == "Bearer s3cret"
    assert sources_server.last_headers["Accept-Encoding"] == "identity"


def test_slow_and_down_sources_cost_at_most_their_timeout_and_are_reported(
    sources_server: JwksServer, issuer_server: JwksServer, remote_key: TestKey, verifier: Verifier, store: Store
) -> None:
    good = [remote_visa(remote_key, issuer_server.url())]
    _serve(sources_server, good)
    _serve(sources_server, good, path="/slow1/api/permissions/elixir-user%40id", delay=5)
    _serve(sources_server, good, path="/slow2/api/permissions/elixir-user%40id", delay=5)
    down = f"https://127.0.0.1:{free_port()}"
    sources = [
        _source(sources_server.base_url + "/slow1", "slow1", timeout_seconds=0.6),
        _source(sources_server.base_url + "/slow2", "slow2", timeout_seconds=0.6),
        _source(down, "down", timeout_seconds=0.6),
        _source(sources_server.base_url, "good"),
    ]
    remote = _remote(sources, verifier, sources_server)
    started = time.monotonic()
    result = _fetch(remote, store)
    elapsed = time.monotonic() - started
    assert result.visas == good
    assert {(p.source, p.reason) for p in result.problems} == {
        ("slow1", "timeout"),
        ("slow2", "timeout"),
        ("down", "unreachable"),
    }
    assert elapsed < 1.5, f"sources were not fetched in parallel within their timeout ({elapsed:.2f} s)"
    remote.close()


def test_dripping_source_is_cut_at_its_timeout(
    sources_server: JwksServer, issuer_server: JwksServer, remote_key: TestKey, verifier: Verifier, store: Store
) -> None:
    _serve(sources_server, [remote_visa(remote_key, issuer_server.url())], drip=0.05)
    remote = _remote([_source(sources_server.base_url, timeout_seconds=0.5)], verifier, sources_server)
    started = time.monotonic()
    result = _fetch(remote, store)
    assert time.monotonic() - started < 1.0
    assert result.visas == [] and [p.reason for p in result.problems] == ["timeout"]


def test_bad_signature_is_rejected_with_reason(
    sources_server: JwksServer, issuer_server: JwksServer, remote_key: TestKey, verifier: Verifier, store: Store
) -> None:
    impostor = TestKey.ec("remote")  # same kid, another key
    good = remote_visa(remote_key, issuer_server.url())
    _serve(sources_server, [remote_visa(impostor, issuer_server.url()), good])
    result = _fetch(_remote([_source(sources_server.base_url)], verifier, sources_server), store)
    assert result.visas == [good]
    (problem,) = result.problems
    assert (problem.reason, problem.index) == ("visa_rejected", 0) and problem.detail.startswith("bad_signature")


def test_jwt05_untrusted_jku_never_fetched(
    sources_server: JwksServer, attacker: JwksServer, remote_key: TestKey, verifier: Verifier, store: Store
) -> None:
    attacker.serve_keys(remote_key)
    _serve(sources_server, [remote_visa(remote_key, attacker.url())])
    result = _fetch(_remote([_source(sources_server.base_url)], verifier, sources_server), store)
    assert result.visas == []
    assert result.problems[0].detail.startswith("jku_not_allowed")
    assert attacker.hits() == 0 and attacker.connections == 0


def test_answers_are_cached_per_user_for_the_ttl_and_failures_are_not(
    sources_server: JwksServer, issuer_server: JwksServer, remote_key: TestKey, verifier: Verifier, store: Store
) -> None:
    clock = Clock(1000.0)
    tokens = [remote_visa(remote_key, issuer_server.url())]
    remote = _remote([_source(sources_server.base_url, cache_ttl_seconds=60)], verifier, sources_server, clock)
    sources_server.serve(PATH, Route(status=503))
    assert [p.reason for p in _fetch(remote, store).problems] == ["http_status"]
    _serve(sources_server, tokens)
    assert _fetch(remote, store).visas == tokens
    assert _fetch(remote, store).visas == tokens
    assert sources_server.hits(PATH) == 2
    clock.advance(61)
    assert _fetch(remote, store).visas == tokens
    assert sources_server.hits(PATH) == 3


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        (Route(status=302, headers={"Location": "https://127.0.0.1:1/x"}), "redirect"),
        (Route(body=b"<html>", headers={"Content-Type": "text/html"}), "bad_response"),
        (Route(body=b'{"ga4gh_passport_v1": [1]}', headers={"Content-Type": "application/json"}), "bad_response"),
        (Route(body=b'{"a": 1, "a": 2}', headers={"Content-Type": "application/json"}), "bad_response"),
        (
            Route(
                body=b'{"ga4gh_passport_v1": ["' + b"x" * 5000 + b'"]}', headers={"Content-Type": "application/json"}
            ),
            "too_large",
        ),
        (Route(status=404), "http_status"),
    ],
)
def test_wrong_answers_are_reported(
    sources_server: JwksServer, verifier: Verifier, store: Store, route: Route, reason: str
) -> None:
    sources_server.serve(PATH, route)
    remote = _remote([_source(sources_server.base_url, max_response_bytes=4096)], verifier, sources_server)
    result = _fetch(remote, store)
    assert result.visas == [] and [p.reason for p in result.problems] == [reason]


def test_user_identifier_is_percent_encoded_and_missing_one_is_not_fetched(
    sources_server: JwksServer, verifier: Verifier, store: Store
) -> None:
    store.put_identity(Identity(id="odd/../id?x=1", created_at=1))
    store.link_identity(IdentityLink(identity_id="odd/../id?x=1", iss="https://other.example/", sub="s", linked_at=1))
    encoded = "/api/permissions/odd%2F..%2Fid%3Fx%3D1"
    _serve(sources_server, [], path=encoded)
    sources = [
        _source(sources_server.base_url, "by-id", send="identity"),
        _source(sources_server.base_url, "by-upstream"),
    ]
    result = _fetch(_remote(sources, verifier, sources_server), store, "odd/../id?x=1")
    assert sources_server.hits(encoded) == 1 and sources_server.hits() == 1
    assert [(p.source, p.reason) for p in result.problems] == [("by-upstream", "no_identity")]


def test_sources_from_settings_checks_them(settings: Any, verifier: Verifier) -> None:

    from broker.settings_model import SettingsProblem
    from broker.visas.remote import sources_from_settings
    from tests.support.settings import unchecked

    good = replace(settings, visa_sources=[VisaSourceSettings(name="rems", url="https://rems.example/p/{user}")])
    assert [s.name for s in sources_from_settings(good, verifier).sources] == ["rems"]
    # The loader refuses such a file; the builder of sources refuses it on its own too.
    bad = unchecked(settings, visa_sources=[VisaSourceSettings(name="rems", url="http://rems.example/p/{user}")])
    with pytest.raises(SettingsProblem):
        sources_from_settings(bad, verifier)
