"""Logging in by device flow, the token file, refresh with rotation, whoami and passports."""

from __future__ import annotations

import json
import stat
import threading
import time

import jwt
import requests

from broker.client.credentials import CredentialStore
from broker.client.http import ClientError, Http
from broker.client.oauth import TokenSource, load_tokens
from tests.client.conftest import SITE_CLIENT, SITE_SECRET, Broker, Cli, device_login


def test_device_login_saves_tokens_in_a_private_file_and_prints_none(broker: Broker, cli: Cli) -> None:
    out, err = device_login(broker, cli)
    assert "enter the code:" in out and f"{broker.url.rstrip('/')}/device" in out
    path = cli.config / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o700
    content = cli.credentials()
    login = content["brokers"][broker.url.rstrip("/")]
    assert content["current"] == broker.url.rstrip("/")
    assert login["client_id"] == "ga4gh-cli" and login["refresh_token"] and login["expires_at"] > time.time()
    assert set(login["scope"].split()) == {"openid", "profile", "email", "ga4gh_passport_v1"}
    for secret in cli.tokens():
        assert secret not in out and secret not in err
    assert not list(cli.config.glob("*.tmp"))  # the atomic write left nothing behind


def test_whoami_shows_name_sub_email_and_visas(broker: Broker, alice: Cli) -> None:
    done = alice.run("whoami")
    assert done.returncode == 0, done.stderr
    assert "Alice Researcher" in done.stdout and broker.ids["alice"] in done.stdout
    assert "alice@uni.example" in done.stdout
    assert "visas:  2" in done.stdout  # the DAC's grants for CLI-OPEN and CLI-HMB
    for secret in alice.tokens():
        assert secret not in done.stdout + done.stderr


def test_without_a_login_every_command_says_how_to_log_in(cli: Cli) -> None:
    for args in (("whoami",), ("ls", "CLI-OPEN"), ("download", "CLI-OPEN/reads.bam"), ("passport", "get")):
        done = cli.run(*args)
        assert done.returncode == 1, (args, done.stderr)
        assert "Not logged in; run: ga4gh-broker login --broker URL" in done.stderr


def test_an_expired_access_token_is_refreshed_and_the_rotated_refresh_token_saved(broker: Broker, cli: Cli) -> None:
    device_login(broker, cli)
    before = cli.credentials()
    key = broker.url.rstrip("/")
    old = before["brokers"][key]
    before["brokers"][key]["expires_at"] = int(time.time()) - 5
    cli.write_credentials(before)
    done = cli.run("whoami")
    assert done.returncode == 0, done.stderr
    after = cli.credentials()["brokers"][key]
    assert after["access_token"] != old["access_token"] and after["expires_at"] > time.time() + 60
    assert after["refresh_token"] and after["refresh_token"] != old["refresh_token"]  # rotated and kept
    assert stat.S_IMODE((cli.config / "credentials.json").stat().st_mode) == 0o600
    # the old refresh token is spent: presented again within the retry grace period it only names the
    # successor the client already saved (issue 11 item 9), never a second one
    again = requests.post(
        broker.node.url("/token"),
        data={"grant_type": "refresh_token", "refresh_token": old["refresh_token"], "client_id": "ga4gh-cli"},
        timeout=10,
    )
    assert again.status_code == 200 and again.json()["refresh_token"] == after["refresh_token"], again.text


def test_commands_refreshing_at_once_share_one_rotation(broker: Broker, cli: Cli) -> None:
    """Four token sources (as four commands would) renew one expired login at the same instant.

    Without the file lock they would all spend the same refresh token and the broker, seeing it
    reused, would end the login (RFC 9700 4.14.2); with it, one refreshes and the others adopt
    its tokens.
    """
    device_login(broker, cli)
    content = cli.credentials()
    key = broker.url.rstrip("/")
    content["brokers"][key]["expires_at"] = int(time.time()) - 5
    cli.write_credentials(content)
    sources = [load_tokens(Http.create(), CredentialStore(cli.config), broker.url) for _ in range(4)]
    barrier = threading.Barrier(len(sources))
    results: list[object] = []

    def renew(source: TokenSource) -> None:
        barrier.wait()
        try:
            results.append(source.access_token())
        except ClientError as exc:
            results.append(exc)

    threads = [threading.Thread(target=renew, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(r, str) for r in results) and len(set(results)) == 1, results
    assert cli.run("whoami").returncode == 0  # the login lives on


def test_a_login_the_broker_no_longer_accepts_asks_for_a_new_one(broker: Broker, alice: Cli, cli: Cli) -> None:
    content = alice.credentials()
    key = broker.url.rstrip("/")
    content["brokers"][key]["access_token"] = "not-a-token"
    content["brokers"][key]["refresh_token"] = "not-a-refresh-token"
    content["brokers"][key]["expires_at"] = int(time.time()) - 5
    cli.config.mkdir(parents=True)
    cli.write_credentials(content)
    done = cli.run("whoami")
    assert done.returncode == 1
    assert f"run: ga4gh-broker login --broker {key}" in done.stderr


def test_a_token_file_readable_by_others_is_tightened(alice: Cli, cli: Cli) -> None:
    cli.config.mkdir(parents=True)
    cli.write_credentials(alice.credentials())
    (cli.config / "credentials.json").chmod(0o644)
    assert cli.run("whoami").returncode == 0
    assert stat.S_IMODE((cli.config / "credentials.json").stat().st_mode) == 0o600


def test_passport_get_with_a_confidential_registration(broker: Broker, cli: Cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    secret_file = tmp_path / "secret"
    secret_file.write_text(SITE_SECRET + "\n")
    out, err = device_login(broker, cli, "--client-id", SITE_CLIENT, "--client-secret-file", str(secret_file))
    assert SITE_SECRET not in out + err
    resource = broker.url.rstrip("/")  # the gateway is the audience (its public base URL)
    done = cli.run("passport", "get", "--resource", resource)
    assert done.returncode == 0, done.stderr
    passport = done.stdout.strip()
    header = jwt.get_unverified_header(passport)
    claims = jwt.decode(passport, options={"verify_signature": False})
    assert header["typ"] == "vnd.ga4gh.passport+jwt"
    assert claims["iss"] == broker.url and claims["sub"] == broker.ids["alice"] and claims["aud"] == resource
    assert len(claims["ga4gh_passport_v1"]) == 2
    # the passport is accepted by the broker's own gateway
    r = requests.get(
        broker.node.url("/data/CLI-OPEN/dir/sub/index.bai"), headers={"Authorization": f"Bearer {passport}"}, timeout=10
    )
    assert r.status_code == 200 and r.content == broker.read("CLI-OPEN/dir/sub/index.bai")
    assert json.loads((cli.config / "credentials.json").read_text())["brokers"][broker.url.rstrip("/")]["client_secret"]


def test_passport_get_with_the_public_client_explains_what_is_needed(alice: Cli) -> None:
    done = alice.run("passport", "get")
    assert done.returncode == 1 and done.stdout == ""
    assert "public" in done.stderr and "--client-secret-file" in done.stderr
