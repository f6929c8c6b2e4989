"""Helpers of the page tests: real local accounts, a DAC configuration naming them, login through the form."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient

from broker.app import create_app
from broker.container import Container
from broker.core.policy.settings import PolicySettings
from broker.dac.repository import DacRepository
from broker.dac.settings import (
    ApplicationSettings,
    DacEntrySettings,
    DacMemberSettings,
    DacSettings,
    DatasetTermsSettings,
)
from broker.gateway.settings import GatewaySettings
from broker.login.local import add_user
from tests.dac.conftest import SOURCE_A, SOURCE_B, SettingsWithDac, kernel_of
from tests.support.keys import open_ring
from tests.support.legacy_store import Store, open_store
from tests.support.settings import replace

PASSWORD = "correct horse battery staple"
NAMES = ("admin", "chair-a", "member-a", "member-a2", "member-b", "researcher")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclasses.dataclass
class Site:
    """A broker app with local accounts for every role, and who is who."""

    app: Flask
    settings: SettingsWithDac
    store: Store
    ids: dict[str, str]

    @property
    def repository(self) -> DacRepository:
        return DacRepository(kernel_of(self.store))


POLICY = """
description: The DAC tests' datasets, each read with a grant of DAC A from this broker.
lists:
  own_issuer:
    description: The broker under test
    values: ["{issuer}"]
rules:
  dac_a_grant:
    description: A grant of DAC A for this very dataset, signed by the broker under test
    rule:
      visa:
        type: ControlledAccessGrants
        value: const:{base}/datasets/${{dataset}}
        source: const:{source}
        by: dac
        issuers: list:own_issuer
templates:
  dac_a:
    description: DAC A's dataset with a file to download
    datasets:
      EGAD-A1: {{}}
    read:
      rule: dac_a_grant
"""
#: The file the gateway serves as EGAD-A1/reads.bin when a site has data.
DATA = bytes(range(256)) * 64


def make_site(
    data_dir: Path,
    issuer: str = "http://127.0.0.1:8080/",
    *,
    required_approvals: int = 1,
    with_data: bool = False,
    terms: list[DatasetTermsSettings] | None = None,
) -> Site:
    """Accounts for every role and DACs naming them; DAC A needs ``required_approvals`` approvals and,
    ``with_data``, the gateway serves EGAD-A1/reads.bin to holders of DAC A's grant."""
    extra: dict[str, object] = {}
    if with_data:
        objects = data_dir.parent / "objects"
        (objects / "a1").mkdir(parents=True, exist_ok=True)
        (objects / "a1" / "reads.bin").write_bytes(DATA)
        policies = data_dir.parent / "policies"
        policies.mkdir(parents=True, exist_ok=True)
        (policies / "dac.yaml").write_text(
            POLICY.format(issuer=issuer, base=issuer.rstrip("/"), source=SOURCE_A), encoding="utf-8"
        )
        extra = {
            "policy": PolicySettings(directory=str(policies)),
            "gateway": GatewaySettings.model_validate(
                {
                    "stores": {"files": {"kind": "directory", "path": str(objects)}},
                    "datasets": {"EGAD-A1": {"store": "files", "prefix": "a1"}},
                }
            ),
        }
    bare = SettingsWithDac(issuer=issuer, data_dir=str(data_dir))
    store = open_store(bare)
    ids = {name: add_user(bare, store, "local", name, PASSWORD, display_name=name.title()).id for name in NAMES}
    dac = DacSettings(
        committees=[
            DacEntrySettings(
                id="A",
                name="DAC A",
                source=SOURCE_A,
                datasets=["EGAD-A1"],
                dataset_patterns=["A-*"],
                members=[
                    DacMemberSettings(identity=ids["chair-a"], role="chair"),
                    DacMemberSettings(identity=ids["member-a"]),
                    *([DacMemberSettings(identity=ids["member-a2"])] if "member-a2" in ids else []),
                ],
                application=ApplicationSettings(required_approvals=required_approvals, terms=terms or []),
            ),
            DacEntrySettings(
                id="B",
                name="DAC B",
                source=SOURCE_B,
                datasets=["EGAD-B1"],
                members=[DacMemberSettings(identity=ids["member-b"])],
            ),
        ],
        admins=[ids["admin"]],
    )
    settings = replace(bare, dac=dac, **extra)
    ring = open_ring(settings, store, auto_maintain_seconds=None)
    ring.maintain()
    app = create_app(Container.build(settings, kernel=store.kernel))
    return Site(app=app, settings=settings, store=store, ids=ids)


def csrf_of(html: str, index: int = 0) -> str:
    return CSRF.findall(html)[index]


def login(client: FlaskClient, name: str) -> None:
    """Log in through the real login form (CSRF token from the page, 303 to the next page)."""
    page = client.get("/login?next=/dac")
    response = client.post(
        "/login/local/local",
        data={
            "username": name,
            "password": PASSWORD,
            "interaction": "",
            "csrf_token": csrf_of(page.get_data(as_text=True)),
        },
    )
    assert response.status_code == 303, response.get_data(as_text=True)
