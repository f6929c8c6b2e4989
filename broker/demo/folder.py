"""The demo folder: settings, policies, synthetic files, accounts, a DAC and its first grants.

``ga4gh-broker demo`` makes it on first start and reuses it afterwards:

- ``broker.yaml``: the settings, rewritten at every start (the port may change); everything
  in it is the embedded default except what a demo needs (issuer, the command-line client, the
  DAC, the gateway's datasets). ``ga4gh-broker -c DIR/broker.yaml ...`` runs any command on it.
- ``policies/demo.yaml``: the demo's rules (package data, copied once, then yours to edit; the
  broker watches the folder). They name no issuer: this broker's own visas are trusted.
- ``data/``: the synthetic VCF/BAM with indexes and ``SHA256SUMS``; ``var/``: the SQLite store
  and the signing keys.
- ``demo.json``: who is who (usernames, subs, roles); ``demo-accounts.json`` (mode 0600): the
  generated passwords, which ``demo --check`` uses to log in as the demo's people;
  ``demo-service.secret`` (mode 0600): the secret of the confidential client ``demo-service``
  (the settings hold only its hash), for ``ga4gh-broker login --client-secret-file``.

Nothing here talks to the network: the folder is made with the store and the DAC services
directly, as ``ga4gh-broker users add`` and ``grants add`` would.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from broker.dac.grants import GrantRequest
from broker.dac.services import build_services
from broker.demo.genomics import write_demo_files
from broker.identity.service import IdentityService
from broker.login.local import LocalAccounts
from broker.oidc.passwords import hash_secret
from broker.settings import Settings, load_settings
from broker.store import open_kernel

DEFAULT_FOLDER = "ga4gh-broker-demo"
DEFAULT_PORT = 8080
CLIENT_ID = "ga4gh-cli"
"""The command line's public client id (broker.client.oauth.DEFAULT_CLIENT_ID), registered here."""
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
SERVICE_CLIENT_ID = "demo-service"
"""A confidential client a data service or portal would hold: it may also exchange for passport JWTs."""
SERVICE_SECRET_FILE = "demo-service.secret"
DAC_ID = "DEMO-DAC"
DAC_SOURCE = "https://ga4gh-broker.demo.example/dacs/DEMO-DAC"
DATASET_URL_TEMPLATE = "https://ga4gh-broker.demo.example/datasets/{dataset}"
VCF_DATASET = "DEMO-VCF"
BAM_DATASET = "DEMO-BAM"
PURPOSE = "DUO:0000006"
"""The purpose DEMO-VCF's data use term (health/medical/biomedical research) accepts."""
STATE_FILE = "demo.json"
ACCOUNTS_FILE = "demo-accounts.json"
SETTINGS_FILE = "broker.yaml"
GRANT_DAYS = 365


@dataclass(frozen=True)
class Person:
    """One of the demo's local accounts."""

    username: str
    name: str
    role: str


PEOPLE = (
    Person("alice", "Alice Researcher", f"researcher: granted {VCF_DATASET}, registered access"),
    Person("bob", "Bob Researcher", "researcher: no grant"),
    Person("dora", "Dora DAC-Chair", f"chair of {DAC_ID} (governs {VCF_DATASET}, {BAM_DATASET}; grants directly)"),
    Person("carl", "Carl DAC-Member", f"member of {DAC_ID} (decides applications)"),
)


class DemoError(Exception):
    """The folder cannot be used as a demo folder; the message says why and what to do."""


@dataclass(frozen=True)
class Demo:
    """A demo folder that exists: where it is, who is in it, and (right after creation) the passwords."""

    folder: Path
    subs: dict[str, str]
    port: int
    created_passwords: dict[str, str] | None = None

    @property
    def settings_path(self) -> Path:
        return self.folder / SETTINGS_FILE

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> Settings:
        """The demo's settings, without ``BROKER_*`` overrides from the environment."""
        return load_settings(self.settings_path, environ={})


def settings_data(port: int, subs: dict[str, str] | None, service_hash: str) -> dict[str, Any]:
    """The demo's settings as YAML data; the DAC is declared once its members' subs exist."""
    data: dict[str, Any] = {
        "issuer": f"http://127.0.0.1:{port}/",
        "data_dir": "var",
        "server": {"bind": f"127.0.0.1:{port}", "workers": 1, "threads": 4},
        "policy": {"directory": "policies", "watch": True},
        "oidc": {
            "device_poll_interval_seconds": 2,
            "clients": [
                {
                    "client_id": CLIENT_ID,
                    "name": "ga4gh-broker command line",
                    "auth_method": "none",
                    "grant_types": [DEVICE_GRANT, "refresh_token"],
                    "scopes": ["openid", "profile", "email", "ga4gh_passport_v1", "dac"],
                },
                {
                    "client_id": SERVICE_CLIENT_ID,
                    "name": "demo data service",
                    "grant_types": [DEVICE_GRANT, "refresh_token", EXCHANGE_GRANT],
                    "scopes": ["openid", "profile", "email", "ga4gh_passport_v1"],
                    "secret_hash": service_hash,
                },
            ],
        },
        "gateway": {
            "stores": {"demo": {"kind": "directory", "path": "data"}},
            "datasets": {name: {"store": "demo", "prefix": name} for name in (VCF_DATASET, BAM_DATASET)},
        },
    }
    if subs is not None:
        data["dac"] = {
            "dataset_url_template": DATASET_URL_TEMPLATE,
            "committees": [
                {
                    "id": DAC_ID,
                    "name": "Demo data access committee",
                    "source": DAC_SOURCE,
                    "datasets": [VCF_DATASET, BAM_DATASET],
                    "members": [
                        {"identity": subs["dora"], "role": "chair"},
                        {"identity": subs["carl"], "role": "member"},
                    ],
                }
            ],
        }
    return data


def write_settings(folder: Path, port: int, subs: dict[str, str] | None, service_hash: str) -> Path:
    path = folder / SETTINGS_FILE
    header = (
        "# Written by `ga4gh-broker demo` at every start (edit a copy to experiment, then serve it with\n"
        "# `ga4gh-broker -c COPY serve`). Every key not here has its embedded default: docs/settings.md.\n"
    )
    path.write_text(header + yaml.safe_dump(settings_data(port, subs, service_hash), sort_keys=False), encoding="utf-8")
    return path


def _copy_policies(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    source = resources.files("broker.demo") / "policies"
    for entry in source.iterdir():
        if entry.name.endswith(".yaml"):
            (target / entry.name).write_text(entry.read_text(encoding="utf-8"), encoding="utf-8")


def _write_private(path: Path, data: Any) -> None:
    """JSON in a file only its owner may read (created 0600, never widened)."""
    _write_private_text(path, json.dumps(data, indent=2))


def _write_private_text(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def open_demo(folder: Path, port: int | None) -> Demo:
    """The demo in ``folder``, made on first use; ``port`` None keeps the last one (first: 8080)."""
    folder = folder.resolve()
    state = folder / STATE_FILE
    if state.exists():
        saved = json.loads(state.read_text(encoding="utf-8"))
        chosen = port or int(saved.get("port", DEFAULT_PORT))
        subs = {str(k): str(v) for k, v in saved["subs"].items()}
        if chosen != saved.get("port"):
            saved["port"] = chosen
            state.write_text(json.dumps(saved, indent=2), encoding="utf-8")
        write_settings(folder, chosen, subs, str(saved["service_hash"]))
        return Demo(folder, subs, chosen)
    if folder.exists() and any(folder.iterdir()):
        raise DemoError(f"{folder} exists and is not a demo folder (no {STATE_FILE}); choose another with --dir")
    return _create(folder, port or DEFAULT_PORT)


def _create(folder: Path, port: int) -> Demo:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _copy_policies(folder / "policies")
        write_demo_files(folder / "data", VCF_DATASET, BAM_DATASET)
        passwords = {p.username: secrets.token_urlsafe(12) for p in PEOPLE}
        service_secret = secrets.token_urlsafe(32)
        service_hash = hash_secret(service_secret)
        settings = load_settings(write_settings(folder, port, None, service_hash), environ={})
        settings.data_path.mkdir(parents=True, exist_ok=True)
        subs = _add_people(settings, passwords)
        settings = load_settings(write_settings(folder, port, subs, service_hash), environ={})
        _first_decisions(settings, subs)
        _write_private(folder / ACCOUNTS_FILE, {p.username: passwords[p.username] for p in PEOPLE})
        _write_private_text(folder / SERVICE_SECRET_FILE, service_secret + "\n")
        people = {p.username: {"sub": subs[p.username], "name": p.name, "role": p.role} for p in PEOPLE}
        state = {
            "port": port,
            "subs": subs,
            "people": people,
            "service_hash": service_hash,
            "created_at": int(time.time()),
        }
        (folder / STATE_FILE).write_text(json.dumps(state, indent=2), encoding="utf-8")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # half a demo is worse than none: the next start begins afresh
        raise
    return Demo(folder, subs, port, created_passwords=passwords)


def _add_people(settings: Settings, passwords: dict[str, str]) -> dict[str, str]:
    kernel = open_kernel(settings.store, settings.sqlite_path)
    try:
        accounts = LocalAccounts(kernel, IdentityService(kernel), settings.issuer)
        return {
            p.username: accounts.add("local", p.username, passwords[p.username], display_name=p.name).id for p in PEOPLE
        }
    finally:
        kernel.close()


def _first_decisions(settings: Settings, subs: dict[str, str]) -> None:
    """Alice: a grant for DEMO-VCF from Dora, the terms accepted, researcher status from Carl."""
    kernel = open_kernel(settings.store, settings.sqlite_path)
    try:
        services = build_services(settings.dac, settings.issuer, kernel, IdentityService(kernel))
        end = int(time.time()) + GRANT_DAYS * 86400
        services.grants.grant(
            subs["dora"], GrantRequest(subs["alice"], VCF_DATASET, end, reason="demo: approved application")
        )
        services.registered.accept_terms(subs["alice"])
        services.registered.grant_status(subs["dora"], subs["alice"], DAC_ID, reason="demo: known researcher")
    finally:
        kernel.close()


def read_passwords(folder: Path) -> dict[str, str]:
    """The generated passwords of a demo folder (for ``demo --check``)."""
    path = folder / ACCOUNTS_FILE
    if not path.exists():
        raise DemoError(f"{path} not found: is {folder} a demo folder? (give it with --dir)")
    data = json.loads(path.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}


def read_state(folder: Path) -> dict[str, Any]:
    path = folder / STATE_FILE
    if not path.exists():
        raise DemoError(f"{path} not found: start the demo first (ga4gh-broker demo), or give its folder with --dir")
    return dict(json.loads(path.read_text(encoding="utf-8")))
