"""``users list|passwd|remove`` against a running broker: the changes take effect at its login form."""

from __future__ import annotations

import json

import requests

from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import PASSWORD, Client, authorize, follow, login

NEW_PASSWORD = "a brand new passphrase 42"


def _logs_in(broker: BrokerProcess, client: Client, username: str, password: str) -> bool:
    """Whether the running broker's login form accepts ``username`` / ``password`` (303 on success)."""
    http = requests.Session()
    login_page = follow(http, broker, authorize(http, broker, client, prompt="login"))
    return login(http, broker, login_page, username=username, password=password).status_code == 303


def test_users_list_shows_names_and_emails_never_password_hashes(broker: BrokerProcess) -> None:
    added = broker.cli("users", "add", "erin", "--name", "Erin Example", "--email", "erin@example.org", stdin=PASSWORD)
    assert added.returncode == 0, added.stderr
    listed = broker.cli("users", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["username"]: row for row in json.loads(listed.stdout)}
    assert rows["erin"]["name"] == "Erin Example" and rows["erin"]["email"] == "erin@example.org"
    assert rows["erin"]["sub"] in added.stdout and rows["erin"]["connector"] == "local"
    assert {"alice", "bob", "erin"} <= set(rows)
    text = broker.cli("users", "list")
    assert "erin@example.org" in text.stdout and "Erin Example" in text.stdout
    for output in (listed.stdout, text.stdout):
        assert "scrypt" not in output and "hash" not in output.lower()


def test_users_passwd_replaces_the_password_at_the_running_broker(broker: BrokerProcess, app: Client) -> None:
    assert broker.cli("users", "add", "frank", stdin=PASSWORD + "\n").returncode == 0
    assert _logs_in(broker, app, "frank", PASSWORD)
    changed = broker.cli("users", "passwd", "frank", stdin=NEW_PASSWORD + "\n")
    assert changed.returncode == 0, changed.stderr
    assert NEW_PASSWORD not in changed.stdout + changed.stderr
    assert not _logs_in(broker, app, "frank", PASSWORD)
    assert _logs_in(broker, app, "frank", NEW_PASSWORD)
    audit = broker.cli("audit", "list", "--json")
    assert "login.password_changed" in audit.stdout and NEW_PASSWORD not in audit.stdout


def test_users_passwd_refuses_unknown_users_and_short_passwords(broker: BrokerProcess) -> None:
    unknown = broker.cli("users", "passwd", "nobody-here", stdin=NEW_PASSWORD + "\n")
    assert unknown.returncode == 1 and "no local user 'nobody-here'" in unknown.stderr
    short = broker.cli("users", "passwd", "bob", stdin="short\n")
    assert short.returncode == 1 and "password must be" in short.stderr


def test_users_remove_ends_the_local_login_and_refuses_unknown_users(broker: BrokerProcess, app: Client) -> None:
    assert broker.cli("users", "add", "gina", stdin=PASSWORD + "\n").returncode == 0
    assert _logs_in(broker, app, "gina", PASSWORD)
    removed = broker.cli("users", "remove", "gina")
    assert removed.returncode == 0, removed.stderr
    assert not _logs_in(broker, app, "gina", PASSWORD)
    rows = json.loads(broker.cli("users", "list", "--json").stdout)
    assert "gina" not in {row["username"] for row in rows}
    again = broker.cli("users", "remove", "gina")
    assert again.returncode == 1 and "no local user 'gina'" in again.stderr
    # the user name is free again: a new account, not the old one
    readded = broker.cli("users", "add", "gina", stdin=PASSWORD + "\n")
    assert readded.returncode == 0, readded.stderr
    old_sub = removed.stdout.split("account ")[1].split(" ")[0]
    assert old_sub not in readded.stdout


def test_users_commands_refuse_an_unknown_connector(broker: BrokerProcess) -> None:
    for argv in (
        ("list", "--connector", "nope"),
        ("passwd", "bob", "--connector", "nope"),
        ("remove", "bob", "--connector", "nope"),
    ):
        done = broker.cli("users", *argv, stdin=NEW_PASSWORD + "\n")
        assert done.returncode == 2 and "no such local connector" in done.stderr
