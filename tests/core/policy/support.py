"""Helpers for the policy tests: write policy directories, build verified visas by hand.

Visas are built directly as :class:`~broker.core.models.Visa` records (what verification
hands the policy engine), so these tests need no keys and no signing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from broker.core.linked_identities import format_linked_identities
from broker.core.models import LINKED_IDENTITIES, REGISTERED_ACCESS_DOI, Visa, VisaObject
from broker.core.policy.compile import PolicySet
from broker.core.policy.loader import load_policy

NOW = 1_900_000_000
DAY = 86400
BROKER = "https://broker.example.org/"
LS = "https://login.aai.lifescience-ri.eu/oidc/"
DAC = "https://ega-archive.org/dacs/EGAC00001000001"
HOLDER = (BROKER, "alice")

LISTS = f"""
lists:
  dac_issuers: [{BROKER}]
  trusted_dacs: [{DAC}, https://ega-archive.org/dacs/EGAC00001000002]
  ls_login: [{LS}]
  nordic: [uio.no, ki.se]
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    """Write dedented policy files into ``directory`` (created) and return it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return directory


def load(directory: Path, files: dict[str, str]) -> PolicySet:
    return load_policy(write(directory, files))


GRANT_DATASET = """
datasets:
  EGAD0001:
    description: one controlled-access dataset
    read:
      visa:
        type: ControlledAccessGrants
        value: const:https://ega.example/datasets/${dataset}
        source: list:trusted_dacs
        by: dac
        issuers: list:dac_issuers
"""


def visa(
    type: str = "ControlledAccessGrants",
    value: str = "https://ega.example/datasets/EGAD0001",
    source: str = DAC,
    by: str | None = "dac",
    *,
    iss: str = BROKER,
    sub: str = "alice",
    exp: int = NOW + 30 * DAY,
    asserted: int = NOW - DAY,
    jti: str | None = None,
    conditions: tuple | None = None,
) -> Visa:
    return Visa(
        iss=iss,
        sub=sub,
        iat=NOW - 60,
        exp=exp,
        visa=VisaObject(type=type, asserted=asserted, value=value, source=source, by=by, conditions=conditions),
        jti=jti,
    )


def link(
    identities: list[tuple[str, str]],
    *,
    iss: str = BROKER,
    sub: str = "alice",
    exp: int = NOW + 20 * DAY,
    jti: str = "link",
) -> Visa:
    """A LinkedIdentities visa of (iss, sub) listing ``identities``."""
    return visa(
        LINKED_IDENTITIES, format_linked_identities(identities), BROKER, "system", iss=iss, sub=sub, exp=exp, jti=jti
    )


def bona_fide(
    *, iss: str = LS, sub: str = "alice", terms_by: str = "self", status_by: str = "system", exp: int = NOW + 60 * DAY
) -> list[Visa]:
    return [
        visa(
            "AcceptedTermsAndPolicies",
            REGISTERED_ACCESS_DOI,
            "https://elixir-europe.org/",
            terms_by,
            iss=iss,
            sub=sub,
            exp=exp,
            jti="terms",
        ),
        visa(
            "ResearcherStatus",
            REGISTERED_ACCESS_DOI,
            "https://www.uio.no/",
            status_by,
            iss=iss,
            sub=sub,
            exp=exp,
            jti="status",
        ),
    ]
