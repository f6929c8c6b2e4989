"""``ga4gh-broker apply`` over HTTP against a real server on loopback, and the DAC's ``applications`` commands.

The researcher's side runs the real researcher client (saved login in a temporary config folder,
requests to the broker's API); the DAC's side runs the commands against the same SQLite store,
as an operator shell would.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from broker.cli import CommandError, Context, main
from broker.cli.applications import register
from broker.client.credentials import CredentialStore, Login
from broker.oidc.tokens import mint_access_token
from tests.dac.web import Site, make_site
from tests.support.keys import open_ring
from tests.support.parts import free_port


@pytest.fixture
def live(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site = make_site(tmp_path / "data", issuer=base + "/")
    server = make_server("127.0.0.1", port, site.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="broker-live", daemon=True)
    thread.start()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    yield site, base
    server.shutdown()
    thread.join(timeout=5)
    site.store.close()


def logged_in(site: Site, base: str, who: str, scope: tuple[str, ...] = ("openid", "dac")) -> None:
    """Save a login for ``who`` as ``ga4gh-broker login`` would (an access token of this broker)."""
    ring = open_ring(site.settings, site.store, auto_maintain_seconds=None)
    now = int(time.time())
    token, _ = mint_access_token(
        ring, site.settings, sub=site.ids[who], client_id="ga4gh-cli", scope=scope, grant=f"g-{who}", now=now
    )
    CredentialStore.default().save(
        Login(
            broker=base + "/",
            client_id="ga4gh-cli",
            token_endpoint=base + "/token",
            userinfo_endpoint=base + "/userinfo",
            access_token=token,
            expires_at=now + 3000,
            scope=" ".join(scope),
        )
    )


def dac(site: Site, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ga4gh-broker")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return int(args.handler(Context(args=args, _settings=site.settings)) or 0)


APPLY = (
    "apply",
    "EGAD-A1",
    "--title",
    "Kidney variants",
    "--purpose",
    "DUO:0000007",
    "--purpose-text",
    "Association study.",
    "--institution",
    "Example University",
    "--accept-terms",
)


def test_researcher_applies_with_the_client_and_members_decide_with_the_cli(
    live: tuple[Site, str], capsys: pytest.CaptureFixture[str]
) -> None:
    site, base = live
    logged_in(site, base, "researcher")
    assert main(list(APPLY)) == 0
    app_id, state, _ = capsys.readouterr().out.strip().split("\t")
    assert state == "submitted" and app_id.startswith("app-")

    assert dac(site, "applications", "list", "--as", site.ids["member-a"]) == 0
    listed = capsys.readouterr().out
    assert app_id in listed and "Researcher" in listed and "0/1 approvals" in listed
    with pytest.raises(CommandError) as refused:
        dac(site, "applications", "approve", "--as", site.ids["member-b"], app_id, "--days", "30")
    assert refused.value.exit_status == 1 and str(refused.value).startswith("forbidden:")
    assert dac(site, "applications", "approve", "--as", site.ids["member-a"], app_id, "--days", "30") == 0
    assert "\tapproved\t" in capsys.readouterr().out
    assert dac(site, "applications", "show", "--as", site.ids["chair-a"], app_id) == 0
    assert "approvals 1/1" in capsys.readouterr().out

    assert main(["application", "status", app_id]) == 0
    assert "\tapproved\t" in capsys.readouterr().out
    (grant,) = site.repository.grants_of(site.ids["researcher"])
    assert grant.application == app_id and grant.purpose_codes == ("DUO:0000007",)


def test_return_and_reject_from_the_cli_and_the_researcher_sees_the_reason(
    live: tuple[Site, str], capsys: pytest.CaptureFixture[str]
) -> None:
    site, base = live
    logged_in(site, base, "researcher")
    ids = []
    for _ in range(2):
        assert main(list(APPLY)) == 0
        ids.append(capsys.readouterr().out.split("\t")[0])
    chair = site.ids["chair-a"]
    assert dac(site, "applications", "return", "--as", chair, ids[0], "--reason", "Name the cohort.") == 0
    assert dac(site, "applications", "reject", "--as", chair, ids[1], "--reason", "Out of scope.") == 0
    capsys.readouterr()
    assert main(["application", "status", ids[0]]) == 0
    assert "returned" in (out := capsys.readouterr().out) and "decision: Name the cohort." in out
    assert main(["application", "status", ids[1]]) == 0
    assert "rejected" in (out := capsys.readouterr().out) and "decision: Out of scope." in out


def test_apply_names_bad_fields_and_a_missing_scope_in_one_line(
    live: tuple[Site, str], capsys: pytest.CaptureFixture[str]
) -> None:
    site, base = live
    logged_in(site, base, "researcher")
    assert main(["apply", "EGAD-A1", "--purpose", "GRU"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "purpose_codes" in err
    logged_in(site, base, "researcher", scope=("openid",))
    assert main(list(APPLY)) == 1
    err = capsys.readouterr().err
    assert "insufficient_scope" in err and "--scope" in err
