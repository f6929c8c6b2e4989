"""One real broker for the client tests: ``ga4gh-broker serve`` on a free port, its own settings
file, SQLite store and data folder; people and grants made with the broker's own CLI; the
client run as a real ``ga4gh-broker`` process (python -m broker) with its own config folder.

The device flow is approved the way a person does it, over HTTP: the /device page, the local
login form, then "allow" (tests.oidc.flow drives the forms).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from broker.oidc.passwords import hash_secret
from tests.e2e.deployment import Node
from tests.oidc.flow import PASSWORD, login
from tests.support.parts import free_port

POLICIES = Path(__file__).resolve().parent / "policies"
ROOT = Path(__file__).resolve().parents[2]
DATASET_URL_TEMPLATE = "https://data.client.example/datasets/{dataset}"
DAC_SOURCE = "https://dac.client.example/dacs/CLI"
PUBLIC_CLIENT = "ga4gh-cli"
SITE_CLIENT = "ga4gh-cli-site"
SITE_SECRET = "site-secret-" + "s" * 32
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
SCOPES = ["openid", "profile", "email", "ga4gh_passport_v1"]
# dataset -> folder in the store, and its files (path -> size)
DATASETS: dict[str, tuple[str, dict[str, int]]] = {
    "CLI-OPEN": (
        "open",
        {"reads.bam": 300_007, "big.bin": 3 * 1024 * 1024 + 17, "dir/calls.vcf.gz": 50_001, "dir/sub/index.bai": 999},
    ),
    "CLI-CLOSED": ("closed", {"closed.bam": 5_000}),
    "CLI-HMB": ("hmb", {"cohort.vcf": 20_000}),
}
GRANTED = ("CLI-OPEN", "CLI-HMB")


def settings_text(tmp: Path, port: int, member: str | None) -> str:
    """The broker's settings: SQLite (default), our policies, a directory store, the CLI's two clients."""
    settings: dict[str, Any] = {
        "issuer": f"http://127.0.0.1:{port}/",
        "data_dir": str(tmp / "var"),
        "policy": {"directory": str(tmp / "policies")},
        "gateway": {
            "stores": {"files": {"kind": "directory", "path": str(tmp / "objects")}},
            "datasets": {name: {"store": "files", "prefix": folder} for name, (folder, _) in DATASETS.items()},
        },
        "oidc": {
            "device_poll_interval_seconds": 1,
            "clients": [
                # What a broker registers for the command-line client: public, device flow and refresh.
                {
                    "client_id": PUBLIC_CLIENT,
                    "name": "ga4gh-broker command line",
                    "auth_method": "none",
                    "grant_types": [DEVICE_GRANT, "refresh_token"],
                    "scopes": SCOPES,
                },
                # A site's confidential registration of the same tool: it may also exchange for passports.
                {
                    "client_id": SITE_CLIENT,
                    "name": "ga4gh-broker command line (site)",
                    "grant_types": [DEVICE_GRANT, "refresh_token", EXCHANGE_GRANT],
                    "scopes": SCOPES,
                    "secret_hash": hash_secret(SITE_SECRET, log2_n=10),
                },
            ],
        },
    }
    if member is not None:
        settings["dac"] = {
            "dataset_url_template": DATASET_URL_TEMPLATE,
            "committees": [
                {
                    "id": "CLI",
                    "name": "Client tests DAC",
                    "source": DAC_SOURCE,
                    "datasets": sorted(DATASETS),
                    "members": [{"identity": member, "role": "chair"}],
                }
            ],
        }
    return yaml.safe_dump(settings, sort_keys=False)


@dataclass
class Broker:
    node: Node
    files: dict[str, bytes]  # "DATASET/PATH" -> bytes
    ids: dict[str, str]
    store: Path

    @property
    def url(self) -> str:
        return self.node.issuer

    def read(self, target: str) -> bytes:
        return self.files[target]


def _created_sub(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    match = re.search(r"\(sub ([0-9a-f]+)\)", done.stdout)
    assert match, done.stdout
    return match.group(1)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("client-broker")
    port = free_port()
    node = Node(
        directory=tmp / "node",
        port=port,
        workers=2,
        shared_issuer=f"http://127.0.0.1:{port}/",
        settings_text=settings_text(tmp, port, None),
    )
    node.directory.mkdir()
    (tmp / "policies").mkdir()
    for source in POLICIES.glob("*.yaml"):
        (tmp / "policies" / source.name).write_text(source.read_text().replace("@ISSUER@", node.issuer))
    rnd = random.Random(20261203)
    files: dict[str, bytes] = {}
    for dataset, (folder, names) in DATASETS.items():
        for name, size in names.items():
            path = tmp / "objects" / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            files[f"{dataset}/{name}"] = rnd.randbytes(size)
            path.write_bytes(files[f"{dataset}/{name}"])
    (tmp / "objects" / "open" / "escape").symlink_to(tmp / "objects" / "closed" / "closed.bam")
    node.write_settings()
    ids = {
        "alice": _created_sub(
            node.cli(
                "users", "add", "alice", "--name", "Alice Researcher", "--email", "alice@uni.example", stdin=PASSWORD
            )
        ),
        "dora": _created_sub(node.cli("users", "add", "dora", "--name", "Dora DAC", stdin=PASSWORD)),
    }
    node.settings_text = settings_text(tmp, port, ids["dora"])
    node.write_settings()
    for dataset in GRANTED:
        done = node.cli(
            "grants", "add", "--as", ids["dora"], ids["alice"], dataset, "--days", "30", "--reason", "tests"
        )
        assert done.returncode == 0, done.stderr
    try:
        node.start()
        yield Broker(node, files, ids, tmp / "objects")
    finally:
        node.stop()


# --------------------------------------------------------------------------- the client as a process


@dataclass
class Cli:
    """The client's commands in real processes, with one user's config folder."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.home / "config" / "ga4gh-broker"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "XDG_"))}
        env.update({"XDG_CONFIG_HOME": str(self.home / "config"), "HOME": str(self.home), **self.env})
        env.pop("DISPLAY", None)
        env.pop("WAYLAND_DISPLAY", None)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "broker", *args]

    def run(self, *args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environ(),
            cwd=str(cwd or ROOT),
            check=False,
        )

    def credentials(self) -> dict[str, Any]:
        return dict(json.loads((self.config / "credentials.json").read_text()))

    def write_credentials(self, content: dict[str, Any]) -> None:
        path = self.config / "credentials.json"
        path.write_text(json.dumps(content))
        path.chmod(0o600)

    def tokens(self) -> list[str]:
        """Every secret in the token file, to prove none is ever printed."""
        out: list[str] = []
        for login_data in self.credentials()["brokers"].values():
            out += [login_data[k] for k in ("access_token", "refresh_token", "client_secret") if login_data.get(k)]
        return out


def approve_device(broker: Broker, user_code: str, username: str = "alice") -> None:
    """A person enters the user code on the broker's /device page, logs in, and allows."""
    node = broker.node
    http = requests.Session()
    first = http.get(node.url(f"/device?user_code={user_code}"), allow_redirects=False, timeout=10)
    assert first.status_code == 303, first.text[:300]
    login_page = http.get(node.url(first.headers["Location"]), timeout=10)
    entered = http.get(node.url(login(http, node, login_page, username=username).headers["Location"]), timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', entered.text)
    assert token, entered.text[:500]
    confirm = http.post(node.url("/device"), data={"csrf_token": token.group(1), "user_code": user_code}, timeout=10)
    assert confirm.status_code == 200 and "asks for access" in confirm.text, confirm.text[:500]
    approve = re.search(r'name="csrf_token" value="([^"]+)"', confirm.text)
    assert approve
    done = http.post(
        node.url("/device"),
        data={"csrf_token": approve.group(1), "user_code": user_code, "decision": "allow"},
        timeout=10,
    )
    assert done.status_code == 200 and "connected" in done.text, done.text[:500]


def device_login(broker: Broker, cli: Cli, *extra: str) -> tuple[str, str]:
    """``ga4gh-broker login`` as a process; the test reads the code it prints and approves it. (stdout, stderr)"""
    process = subprocess.Popen(
        cli.command("login", "--broker", broker.url, "--no-browser", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.environ(),
        cwd=str(ROOT),
    )
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 30
    code = None
    while code is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        found = re.search(r"enter the code: (\S+)", line)
        code = found.group(1) if found else None
    if code is None:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise AssertionError(f"no user code printed: {''.join(seen)} {err}")
    approve_device(broker, code)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, (out, err)
    return "".join(seen) + out, err


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


@pytest.fixture(scope="session")
def alice(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    """Alice, logged in once with the public client (tests that must not spend her refresh token copy her)."""
    user = Cli(tmp_path_factory.mktemp("alice-home"))
    device_login(broker, user)
    return user
