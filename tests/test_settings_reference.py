"""docs/settings.md is generated from the settings schema and kept current."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from broker.cli import build_parser, main
from broker.keys.pepper import load_pepper
from broker.oidc.passwords import verify_secret
from broker.oidc.settings import DeclaredClientSettings
from broker.settings import Settings, load_settings, reference_markdown

ROOT = Path(__file__).resolve().parent.parent
#: ``ga4gh-broker GROUP ACTION --options`` (or ``clients ACTION ...``) quoted in a text.
COMMAND = re.compile(
    r"`+(?:ga4gh-broker )?(clients|users|keys|store|audit|dac|policy|passport|serve) ([a-z][a-z-]*)((?: --?[a-z-]+)*)`+"
)


def test_settings_reference_is_current() -> None:
    written = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert written == reference_markdown(), (
        "docs/settings.md is stale: run `python -m broker.settings > docs/settings.md`"
    )


def test_settings_reference_names_every_setting() -> None:
    text = reference_markdown()
    for key in ("store.backend", "gateway.stores.<name>.headers", "trust.visa_issuers[].jku", "oidc.require_pkce"):
        assert f"`{key}`" in text
    assert "source" not in [line.split("`")[1] for line in text.splitlines() if line.startswith("| `")]
    assert set(Settings.model_fields) - {"source"} <= {
        line.split("`")[1].split(".")[0].split("[")[0] for line in text.splitlines() if line.startswith("| `")
    } | {"server", "store", "keys", "limits", "trust", "policy", "oidc", "login", "dac", "gateway"}


def _commands() -> dict[str, set[str]]:
    """Each command group of ``ga4gh-broker`` and its actions, from the real parser."""
    groups: dict[str, set[str]] = {}
    for action in build_parser()._subparsers._group_actions:  # type: ignore[union-attr]
        for name, group in action.choices.items():
            groups[name] = set()
            for sub in group._subparsers._group_actions if group._subparsers else ():
                groups[name] |= set(sub.choices)
    return groups


def test_every_command_the_settings_reference_and_the_settings_code_name_exists() -> None:
    """A pointer such as ``clients add --print-hash`` must name a command and options that exist."""
    commands = _commands()
    texts = [reference_markdown(), *(p.read_text(encoding="utf-8") for p in (ROOT / "broker").glob("*/settings.py"))]
    named = {m.groups() for text in texts for m in COMMAND.finditer(text)}
    assert ("clients", "hash-secret", "") in named
    for group, action, options in named:
        assert group in commands, f"no command group {group!r}"
        if commands[group]:
            assert action in commands[group], f"no command {group} {action}"
            argv = [group, action, *(o for o in options.split() if o.startswith("--"))]
            known = {s for a in _parser_of(argv[:2])._actions for s in a.option_strings}
            assert set(argv[2:]) <= known, f"{' '.join(argv)}: unknown option"


def test_clients_hash_secret_prints_a_secret_and_a_hash_that_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clients", "hash-secret"]) == 0
    out = dict(line.split(":", 1) for line in capsys.readouterr().out.strip().splitlines())
    secret, hashed = out["client_secret"].strip(), out["secret_hash"].strip()
    settings = load_settings()  # the embedded defaults the command used: the same keys folder, so the same pepper
    pepper = load_pepper(settings.keys, settings.keys_path)
    assert verify_secret(secret, hashed, pepper) and not verify_secret(secret + "x", hashed, pepper)
    assert not verify_secret(secret, hashed, b"another broker's pepper" + bytes(8))  # valid only where it was made
    declared = DeclaredClientSettings(client_id="declared", redirect_uris=["https://a.example/cb"], secret_hash=hashed)
    assert declared.secret_hash is not None
    assert verify_secret(secret, declared.secret_hash.get_secret_value(), pepper)


def _parser_of(argv: list[str]) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = build_parser()
    for word in argv:
        sub = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
        parser = sub.choices[word]
    return parser
