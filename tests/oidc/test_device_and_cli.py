"""Device authorization grant (RFC 8628) and the ``clients`` / ``users`` commands."""

from __future__ import annotations

import json
import re

import pytest
import requests

from broker.oidc.settings import DeclaredClientSettings, OidcSettings, check_oidc
from broker.settings_model import SettingsProblem
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import Client, claims, login

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def test_device_flow_logs_a_command_line_tool_in(broker: BrokerProcess, public_client: Client) -> None:
    start = requests.post(
        broker.url("/device_authorization"), data={"client_id": "cli", "scope": "openid ga4gh_passport_v1"}, timeout=10
    )
    assert start.status_code == 200 and "no-store" in start.headers["Cache-Control"]
    grant = start.json()
    poll = {"grant_type": DEVICE_GRANT, "device_code": grant["device_code"], "client_id": "cli"}
    pending = requests.post(broker.url("/token"), data=poll, timeout=10)
    assert pending.json()["error"] == "authorization_pending"
    assert requests.post(broker.url("/token"), data=poll, timeout=10).json()["error"] == "slow_down"
    http = requests.Session()
    first = http.get(grant["verification_uri_complete"], allow_redirects=False, timeout=10)
    assert first.status_code == 303
    login_page = http.get(broker.url(first.headers["Location"]), timeout=10)
    entered = http.get(broker.url(login(http, broker, login_page).headers["Location"]), timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', entered.text).group(1)
    confirm = http.post(broker.url("/device"), data={"csrf_token": token, "user_code": grant["user_code"]}, timeout=10)
    assert confirm.status_code == 200 and "asks for access" in confirm.text
    approve_token = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text).group(1)
    forged = http.post(
        broker.url("/device"),
        data={"csrf_token": "x", "user_code": grant["user_code"], "decision": "allow"},
        timeout=10,
    )
    assert forged.status_code == 403
    done = http.post(
        broker.url("/device"),
        data={"csrf_token": approve_token, "user_code": grant["user_code"], "decision": "allow"},
        timeout=10,
    )
    assert done.status_code == 200 and "connected" in done.text
    tokens = requests.post(broker.url("/token"), data=poll, timeout=10)
    assert tokens.status_code == 200, tokens.text
    assert claims(tokens.json()["access_token"])["client_id"] == "cli"
    again = requests.post(broker.url("/token"), data=poll, timeout=10)
    assert again.json()["error"] == "expired_token"


def test_clients_add_list_remove(broker: BrokerProcess) -> None:
    added = broker.cli("clients", "add", "cli-made", "--redirect-uri", "https://made.example/cb", "--json")
    assert added.returncode == 0, added.stderr
    created = json.loads(added.stdout)
    assert created["client_secret"] and created["auth_method"] == "client_secret_basic"
    assert created["client_secret"] not in broker.cli("clients", "list", "--json").stdout
    # the new client authenticates at once against the running server
    response = requests.post(
        broker.url("/token"),
        data={"grant_type": "authorization_code", "code": "x", "redirect_uri": "https://made.example/cb"},
        auth=("cli-made", created["client_secret"]),
        timeout=10,
    )
    assert response.json()["error"] == "invalid_grant"
    assert broker.cli("clients", "add", "cli-made", "--redirect-uri", "https://made.example/cb").returncode == 1
    bad = broker.cli("clients", "add", "x2", "--redirect-uri", "https://made.example/cb#frag")
    assert bad.returncode == 1 and "fragment" in bad.stderr
    public = broker.cli("clients", "add", "pub-made", "--public", "--redirect-uri", "http://127.0.0.1:9/cb")
    assert public.returncode == 0 and "client_secret" not in public.stdout
    assert broker.cli("clients", "remove", "cli-made").returncode == 0
    assert broker.cli("clients", "remove", "cli-made").returncode == 1


def test_users_add_refuses_short_passwords_and_duplicates(broker: BrokerProcess) -> None:
    assert broker.cli("users", "add", "carol", stdin="short\n").returncode == 1
    assert broker.cli("users", "add", "alice", stdin="another long password\n").returncode == 1


def test_oa05_clients_add_no_pkce_is_for_confidential_clients_only(broker: BrokerProcess) -> None:
    """Issue 11 item 8: the per-client PKCE relaxation can be made with ``clients add``, never for a public client."""
    public = broker.cli(
        "clients", "add", "pub-nopkce", "--public", "--no-pkce", "--redirect-uri", "http://127.0.0.1:9/cb"
    )
    assert public.returncode == 1 and "PKCE" in public.stderr
    made = broker.cli(
        "clients", "add", "conf-nopkce", "--no-pkce", "--redirect-uri", "https://made.example/cb", "--json"
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["require_pkce"] is False
    listed = {row["client_id"]: row for row in json.loads(broker.cli("clients", "list", "--json").stdout)}
    assert listed["conf-nopkce"]["require_pkce"] is False and listed["app"]["require_pkce"] is True
    assert broker.cli("clients", "remove", "conf-nopkce").returncode == 0


def test_oa05_a_public_client_declared_without_pkce_is_a_settings_error() -> None:
    declared = DeclaredClientSettings(client_id="pub", auth_method="none", require_pkce=False)
    with pytest.raises(SettingsProblem, match="require_pkce"):
        check_oidc(OidcSettings(clients=[declared]), max_token_lifetime_seconds=86400)
