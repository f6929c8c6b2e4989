"""The ``grants`` and ``dac members`` commands against a real SQLite store, as the CLI runs them."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytest

from broker.cli import CommandError, Context, main
from broker.cli.dac import register
from broker.dac.repository import DacRepository
from tests.dac.conftest import SettingsWithDac, kernel_of
from tests.support.legacy_store import Store


def run(settings: SettingsWithDac, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="ga4gh-broker")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(list(argv))
    return int(args.handler(Context(args=args, _settings=settings)) or 0)


def test_add_list_revoke_round_trip(
    settings: SettingsWithDac, store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run(settings, "grants", "add", "--as", "chair-a", "researcher", "EGAD-A1", "--days", "30", "--reason", "study")
        == 0
    )
    grant_id = capsys.readouterr().out.strip()
    repo = DacRepository(kernel_of(store))
    grant = repo.grant(grant_id)
    assert grant is not None and grant.granted_by == "chair-a" and grant.dac == "A"
    assert run(settings, "grants", "list", "--as", "chair-a", "--live", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [g["id"] for g in listed] == [grant_id] and listed[0]["live"] is True
    assert run(settings, "grants", "revoke", "--as", "member-a", grant_id, "--reason", "done") == 0
    assert "revoked" in capsys.readouterr().out
    assert repo.grant(grant_id).revoked_by == "member-a"  # type: ignore[union-attr]


def test_refusal_is_one_line_and_exit_1(settings: SettingsWithDac, store: Store) -> None:
    with pytest.raises(CommandError) as info:
        run(settings, "grants", "add", "--as", "member-b", "researcher", "EGAD-A1", "--days", "3")
    assert info.value.exit_status == 1 and str(info.value).startswith("forbidden:")
    assert DacRepository(kernel_of(store)).grants_of("researcher") == []


def test_actor_is_required(settings: SettingsWithDac, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROKER_ACTOR", raising=False)
    with pytest.raises(CommandError) as info:
        run(settings, "grants", "list")
    assert info.value.exit_status == 2


def test_import_reports_each_bad_line(
    settings: SettingsWithDac, store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("identity,dataset,end\nresearcher,A-1,2031-01-01\nnobody,A-2,2031-01-01\nresearcher,A-3,x\n")
    with pytest.raises(CommandError):
        run(settings, "grants", "import", "--as", "admin", str(bad))
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("line 3:") and err[1].startswith("line 4:")
    assert DacRepository(kernel_of(store)).grants_of("researcher") == []
    good = tmp_path / "good.csv"
    end = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 30 * 86400))
    good.write_text(f"identity,dataset,end\nresearcher,A-1,{end}\nresearcher-2,A-2,{end}\n")
    assert run(settings, "grants", "import", "--as", "admin", str(good)) == 0
    assert "imported 2 grant(s)" in capsys.readouterr().out


def test_members_add_list_remove(settings: SettingsWithDac, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(settings, "dac", "members", "add", "--as", "chair-a", "A", "researcher-2", "--role", "member") == 0
    capsys.readouterr()
    assert run(settings, "dac", "members", "list", "--as", "member-a", "A", "--json") == 0
    members = json.loads(capsys.readouterr().out)
    assert [(m["identity"], m["role"], m["origin"]) for m in members] == [
        ("chair-a", "chair", "settings"),
        ("member-a", "member", "settings"),
        ("researcher-2", "member", "store"),
    ]
    with pytest.raises(CommandError):
        run(settings, "dac", "members", "remove", "--as", "member-a", "A", "researcher-2")
    assert run(settings, "dac", "members", "remove", "--as", "chair-a", "A", "researcher-2") == 0


def test_forbidden_without_a_settings_file_says_no_settings_were_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 14: a newcomer who forgot -c got a bare "forbidden" and had to guess why."""
    monkeypatch.delenv("BROKER_CONFIG", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["grants", "add", "--as", "someone", "researcher", "EGAD-A1", "--days", "3"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ga4gh-broker: forbidden:") and "no settings file was loaded" in err
    assert "-c FILE or set BROKER_CONFIG" in err
