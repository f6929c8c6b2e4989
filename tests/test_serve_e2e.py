"""End to end with real processes: ``ga4gh-broker serve`` (gunicorn, 2 workers) and the CLI.

The issue's done-criterion: a token signed before two ``keys rotate`` runs still verifies
against the JWKS the running server publishes, and that JWKS carries the new keys, with no
restart. Run for both key storages (0600 files; sealed records in the SQLite store).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from broker import __version__
from broker.keys.ring import KeyRing
from broker.settings import load_settings
from tests.support.keys import open_ring
from tests.support.legacy_store import open_store
from tests.support.parts import free_port

BROKER = str(Path(sys.executable).parent / "ga4gh-broker")
SECRET = "e2e-key-encryption-secret-7c1f"
PUBLISH_AHEAD = 2  # seconds a new key waits before it signs (short, so the test sees each phase)


def clean_env() -> dict[str, str]:
    """This environment without BROKER_* overrides, so only the test's settings file counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BROKER, *argv], capture_output=True, text=True, timeout=60, env=clean_env(), check=False)


@dataclass
class RunningBroker:
    config: Path
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def jwks(self) -> dict[str, Any]:
        response = requests.get(f"{self.url}/.well-known/jwks.json", timeout=5)
        assert response.status_code == 200
        return response.json()


def write_settings(tmp_path: Path, port: int, storage: str) -> Path:
    config = tmp_path / "broker.yaml"
    config.write_text(
        f"issuer: http://127.0.0.1:{port}/\n"
        f"data_dir: {tmp_path / 'data'}\n"
        "server:\n  workers: 2\n  threads: 2\n"
        "keys:\n"
        f"  storage: {storage}\n"
        f"  encryption_secret: {SECRET}\n"
        f"  publish_ahead_seconds: {PUBLISH_AHEAD}\n"
    )
    return config


@pytest.fixture(params=["file", "store"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningBroker]:
    port = free_port()
    config = write_settings(tmp_path, port, request.param)
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [BROKER, "-c", str(config), "serve", "--bind", f"127.0.0.1:{port}"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=clean_env(),
        )
    running = RunningBroker(config=config, url=f"http://127.0.0.1:{port}", process=process, log=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"serve exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if requests.get(f"{running.url}/readyz", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # still starting, or slow on a busy machine
                pass
            assert time.monotonic() < deadline, f"/readyz never answered 200:\n{log.read_text()[-3000:]}"
            time.sleep(0.1)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def local_ring(config: Path) -> tuple[KeyRing, Any]:
    settings = load_settings(config, environ={})
    store = open_store(settings)
    return open_ring(settings, store, refresh_seconds=0.0, auto_maintain_seconds=None), store


def verify_with(jwks: dict[str, Any], token: str) -> dict[str, Any]:
    """What a relying party does: the key named by kid in the fetched JWKS, one algorithm, exp checked."""
    kid = jwt.get_unverified_header(token)["kid"]
    matching = [k for k in jwks["keys"] if k["kid"] == kid]
    assert len(matching) == 1, f"kid {kid} not published"
    key = jwt.PyJWK(matching[0])
    return jwt.decode(
        token, key.key, algorithms=[matching[0]["alg"]], options={"require": ["exp"]}, audience="e2e-client"
    )


def wait_for_state(ring: KeyRing, kid: str, state: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while {s.kid: s.state for s in ring.states()}.get(kid) != state:
        assert time.monotonic() < deadline, f"{kid} never became {state}"
        time.sleep(0.1)


def test_token_survives_two_rotations_against_the_served_jwks(broker: RunningBroker) -> None:
    ring, store = local_ring(broker.config)
    try:
        first = ring.signing_key()
        served = broker.jwks()
        assert [k["kid"] for k in served["keys"]] == [first.kid]  # the active key, by thumbprint

        now = int(time.time())
        token = ring.sign(
            {"iss": broker.url + "/", "sub": "alice", "aud": "e2e-client", "iat": now, "exp": now + 300}, typ="at+jwt"
        )
        assert verify_with(served, token)["sub"] == "alice"

        rotation = cli("-c", str(broker.config), "keys", "rotate")
        assert rotation.returncode == 0, rotation.stderr
        assert "published now, signs from" in rotation.stdout
        [second] = [s for s in ring.states() if s.kid != first.kid]
        assert second.kid in rotation.stdout
        wait_for_state(ring, second.kid, "active")

        rotation = cli("-c", str(broker.config), "keys", "rotate")
        assert rotation.returncode == 0, rotation.stderr
        assert "published now, signs from" in rotation.stdout
        [third] = [s for s in ring.states() if s.kid not in {first.kid, second.kid}]
        assert third.kid in rotation.stdout

        deadline = time.monotonic() + 10  # each worker reloads within about a second
        while True:
            served = broker.jwks()
            if {k["kid"] for k in served["keys"]} == {first.kid, second.kid, third.kid}:
                break
            assert time.monotonic() < deadline, f"server JWKS never showed all three keys: {served}"
            time.sleep(0.2)
        assert verify_with(served, token)["sub"] == "alice"  # the old token still verifies
        time.sleep(1.1)  # past every worker's refresh interval: both workers now serve the same set
        for _ in range(10):
            assert {k["kid"] for k in broker.jwks()["keys"]} == {first.kid, second.kid, third.kid}

        listed = cli("-c", str(broker.config), "keys", "list", "--json")
        states = {k["kid"]: k["state"] for k in json.loads(listed.stdout)["keys"]}
        # the third key may already have taken over if this machine was slow for PUBLISH_AHEAD seconds
        assert states in (
            {first.kid: "retiring", second.kid: "active", third.kid: "next"},
            {first.kid: "retiring", second.kid: "retiring", third.kid: "active"},
        )

        fresh = ring.sign({"sub": "bob", "aud": "e2e-client", "exp": int(time.time()) + 60}, typ="at+jwt")
        assert jwt.get_unverified_header(fresh)["kid"] in {second.kid, third.kid}
        assert verify_with(served, fresh)["sub"] == "bob"
        assert requests.get(f"{broker.url}/readyz", timeout=5).status_code == 200
        assert "Traceback" not in broker.log.read_text()
    finally:
        store.close()


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"ga4gh-broker {__version__}"


def test_config_check_prints_no_secret(tmp_path: Path) -> None:
    config = write_settings(tmp_path, free_port(), "store")
    result = cli("-c", str(config), "config", "check")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    shown = json.loads(result.stdout)
    assert shown["settings"]["keys"]["encryption_secret"] == "***"
    assert shown["settings"]["keys"]["storage"] == "store"


def test_broken_settings_file_is_one_line_and_status_2(tmp_path: Path) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("keys:\n  algorithm: HS256\n")
    result = cli("-c", str(config), "keys", "list")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("ga4gh-broker: settings error: ")
    assert "keys.algorithm" in result.stderr and "Traceback" not in result.stderr
