"""``ga4gh-broker keys rotate`` and ``keys list`` (in-process through broker.cli.main)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from broker.cli import main
from broker.keys.jwk import thumbprint
from broker.settings import load_settings
from tests.support.keys import open_ring
from tests.support.legacy_store import open_store

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "broker.yaml"
    path.write_text(f"data_dir: {tmp_path / 'data'}\nkeys:\n  publish_ahead_seconds: 3600\n")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_list_on_an_empty_ring_says_how_to_start(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "-c", str(config), "keys", "list")
    assert status == 0
    assert "no keys yet" in out
    status, out, _ = run(capsys, "-c", str(config), "keys", "list", "--json")
    assert json.loads(out) == {"keys": []}


def test_rotate_then_list(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "-c", str(config), "keys", "rotate")
    assert status == 0
    assert "signs from now" in out  # an empty ring's first key signs at once
    status, out, _ = run(capsys, "-c", str(config), "keys", "rotate")
    assert status == 0 and "published now, signs from" in out
    status, out, _ = run(capsys, "-c", str(config), "keys", "rotate")
    assert status == 0 and "already waiting" in out and "nothing changed" in out

    status, out, _ = run(capsys, "-c", str(config), "keys", "list", "--json")
    keys = json.loads(out)["keys"]
    assert [k["state"] for k in keys] == ["active", "next"]
    assert all(ISO.fullmatch(k["created_at"]) and ISO.fullmatch(k["not_before"]) for k in keys)
    assert ISO.fullmatch(keys[0]["retired_at"]) and keys[1]["retired_at"] is None
    settings = load_settings(config, environ={})
    store = open_store(settings)
    try:
        jwks = open_ring(settings, store).jwks()
    finally:
        store.close()
    assert [k["kid"] for k in keys] == [k["kid"] for k in jwks["keys"]] == [thumbprint(k) for k in jwks["keys"]]

    status, out, _ = run(capsys, "-c", str(config), "keys", "list")
    lines = out.splitlines()
    assert lines[0].split() == ["KID", "ALG", "STATE", "CREATED", "SIGNS", "FROM", "RETIRED", "REMOVE", "AFTER"]
    assert lines[1].split()[:3] == [keys[0]["kid"], "ES256", "active"]
    assert lines[2].split()[:3] == [keys[1]["kid"], "ES256", "next"]
    assert lines[2].split()[-2:] == ["-", "-"]


def test_rotate_immediate(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "-c", str(config), "keys", "rotate")
    status, out, _ = run(capsys, "-c", str(config), "keys", "rotate", "--immediate")
    assert status == 0 and "signs from now" in out
    _, out, _ = run(capsys, "-c", str(config), "keys", "list", "--json")
    assert [k["state"] for k in json.loads(out)["keys"]] == ["active", "retiring"]


def test_broken_key_storage_is_one_line_and_status_1(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "-c", str(config), "keys", "rotate")
    next((tmp_path / "data" / "keys").glob("*.json")).chmod(0o644)
    status, out, err = run(capsys, "-c", str(config), "keys", "list")
    assert status == 1
    assert out == ""
    assert err.startswith("ga4gh-broker: keys: key file") and err.count("\n") == 1


def test_store_storage_with_wrong_secret_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "store.yaml"
    base = f"data_dir: {tmp_path / 'data'}\nkeys:\n  storage: store\n  encryption_secret: "
    config.write_text(base + "first-secret\n")
    assert run(capsys, "-c", str(config), "keys", "rotate")[0] == 0
    config.write_text(base + "second-secret\n")
    assert run(capsys, "-c", str(config), "keys", "list")[0] == 0  # listing needs no private key
    status, out, err = run(capsys, "-c", str(config), "keys", "rotate")
    assert status == 1 and out == ""
    assert err.startswith("ga4gh-broker: keys: key ") and "keys.encryption_secret is wrong" in err
    assert err.count("\n") == 1
    status, out, err = run(capsys, "-c", str(config), "keys", "rotate", "--immediate")  # re-keying is allowed
    assert status == 0 and "signs from now" in out
    status, out, err = run(capsys, "-c", str(config), "keys", "list", "--json")
    assert status == 0 and [k["state"] for k in json.loads(out)["keys"]] == ["active", "retiring"]
    assert "first-secret" not in out + err and "second-secret" not in out + err
