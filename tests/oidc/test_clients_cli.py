"""``clients add`` with the DAC and permissions scopes, the default scopes, and ``clients update``.

Every change is made by the command line against the store of a running broker and then used
over HTTP at that broker, so what is tested is what a newcomer would see.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.oidc.broker_process import BrokerProcess
from tests.oidc.conftest import CALLBACK
from tests.oidc.flow import Client, authorize, full_login

OTHER_CALLBACK = "https://tool.example/back"


def _added(broker: BrokerProcess, *argv: str) -> dict[str, Any]:
    done = broker.cli("clients", "add", *argv, "--json")
    assert done.returncode == 0, done.stderr
    created: dict[str, Any] = json.loads(done.stdout)
    return created


def _sub_of(broker: BrokerProcess, username: str) -> str:
    rows = json.loads(broker.cli("users", "list", "--json").stdout)
    return str(next(row["sub"] for row in rows if row["username"] == username))


def test_clients_add_scope_dac_gets_a_token_the_dac_api_accepts(broker: BrokerProcess) -> None:
    created = _added(broker, "dac-tool", "--redirect-uri", CALLBACK, "--scope", "openid", "--scope", "dac")
    assert created["scopes"] == ["openid", "dac"]
    tokens = full_login(broker, Client("dac-tool", created["client_secret"], CALLBACK), scope="openid dac")
    assert tokens["scope"].split() == ["openid", "dac"]
    me = requests.get(
        broker.url("/api/dac/me"), headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=10
    )
    assert me.status_code == 200, me.text
    assert me.json()["identity"] == _sub_of(broker, "alice")


def test_clients_add_scope_ga4gh_permissions_reads_the_permissions_api(broker: BrokerProcess) -> None:
    exchange = "urn:ietf:params:oauth:grant-type:token-exchange"
    created = _added(broker, "peer-service", "--grant", exchange, "--scope", "ga4gh_permissions")
    url = broker.url(f"/api/permissions/{_sub_of(broker, 'bob')}")
    answer = requests.get(url, auth=("peer-service", created["client_secret"]), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ga4gh_passport_v1": []}
    # a client without the scope is refused
    plain = _added(broker, "plain-service", "--grant", exchange)
    refused = requests.get(url, auth=("plain-service", plain["client_secret"]), timeout=10)
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"


def test_default_client_scopes_are_what_discovery_advertises(broker: BrokerProcess) -> None:
    advertised = requests.get(broker.url("/.well-known/openid-configuration"), timeout=10).json()["scopes_supported"]
    created = _added(broker, "defaults-app", "--redirect-uri", CALLBACK)
    assert created["scopes"] == advertised
    assert {"openid", "profile", "email", "ga4gh_passport_v1"} <= set(advertised)
    assert "dac" not in advertised and "ga4gh_permissions" not in advertised  # privileges, given by name only
    tokens = full_login(broker, Client("defaults-app", created["client_secret"], CALLBACK), scope=" ".join(advertised))
    assert set(tokens["scope"].split()) == set(advertised)


def test_clients_add_refuses_an_unknown_scope(broker: BrokerProcess) -> None:
    refused = broker.cli("clients", "add", "odd-scope", "--redirect-uri", CALLBACK, "--scope", "admin")
    assert refused.returncode == 2 and "invalid choice: 'admin'" in refused.stderr


def test_clients_update_changes_redirect_uris_scopes_and_name_at_the_running_broker(broker: BrokerProcess) -> None:
    created = _added(broker, "movable", "--redirect-uri", CALLBACK, "--scope", "openid")
    client = Client("movable", created["client_secret"], OTHER_CALLBACK)
    before = authorize(requests.Session(), broker, client, scope="openid")
    assert before.status_code == 400  # not registered yet: an error page, never a redirect
    done = broker.cli(
        "clients",
        "update",
        "movable",
        "--redirect-uri",
        OTHER_CALLBACK,
        "--scope",
        "openid",
        "--scope",
        "dac",
        "--name",
        "Moved tool",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    updated = json.loads(done.stdout)
    assert updated["redirect_uris"] == [OTHER_CALLBACK] and updated["scopes"] == ["openid", "dac"]
    assert updated["name"] == "Moved tool" and "client_secret" not in updated
    tokens = full_login(broker, client, scope="openid dac")
    assert "dac" in tokens["scope"].split()
    old = authorize(requests.Session(), broker, Client("movable", None, CALLBACK), scope="openid")
    assert old.status_code == 400


def test_clients_update_rotate_secret_prints_the_new_secret_once_and_retires_the_old(broker: BrokerProcess) -> None:
    created = _added(broker, "rotating", "--redirect-uri", CALLBACK)
    probe = {"grant_type": "authorization_code", "code": "x", "redirect_uri": CALLBACK}

    def token_answer(secret: str) -> requests.Response:
        return requests.post(broker.url("/token"), data=probe, auth=("rotating", secret), timeout=10)

    assert token_answer(created["client_secret"]).json()["error"] == "invalid_grant"  # authenticated
    done = broker.cli("clients", "update", "rotating", "--rotate-secret")
    assert done.returncode == 0, done.stderr
    new_secret = done.stdout.split("client_secret:")[1].split()[0]
    assert new_secret != created["client_secret"] and "cannot be shown again" in done.stderr
    assert token_answer(created["client_secret"]).status_code == 401
    assert token_answer(new_secret).json()["error"] == "invalid_grant"
    listed = broker.cli("clients", "list", "--json").stdout
    assert new_secret not in listed and created["client_secret"] not in listed


def test_clients_update_refuses_unknown_declared_and_incoherent_changes(broker: BrokerProcess) -> None:
    unknown = broker.cli("clients", "update", "no-such-client", "--name", "x")
    assert unknown.returncode == 1 and "no client 'no-such-client'" in unknown.stderr
    declared = broker.cli("clients", "update", "app", "--name", "x")
    assert declared.returncode == 1 and "settings file" in declared.stderr
    _added(broker, "public-tool", "--public", "--redirect-uri", "http://127.0.0.1:9/cb")
    no_secret = broker.cli("clients", "update", "public-tool", "--rotate-secret")
    assert no_secret.returncode == 1 and "not a secret" in no_secret.stderr
    exchange = broker.cli(
        "clients", "update", "public-tool", "--grant", "urn:ietf:params:oauth:grant-type:token-exchange"
    )
    assert exchange.returncode == 1 and "public client" in exchange.stderr
    fragment = broker.cli("clients", "update", "public-tool", "--redirect-uri", "https://x.example/cb#f")
    assert fragment.returncode == 1 and "fragment" in fragment.stderr
    kept = {c["client_id"]: c for c in json.loads(broker.cli("clients", "list", "--json").stdout)}["public-tool"]
    assert kept["redirect_uris"] == ["http://127.0.0.1:9/cb"]  # nothing changed by the refused updates
