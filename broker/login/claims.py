"""What we take from an upstream's claims: a display name, an e-mail, affiliations.

Upstream claims are untrusted text (THREAT-MODEL RP-07, UI-03). Pages escape everything
anyway (Jinja autoescape); here the values are also made safe to store, log and put in
headers, once, at the boundary:

- :func:`clean_text` drops control characters (CR, LF, TAB, NUL...), Unicode format
  characters (bidirectional overrides such as U+202E, zero-width characters) and line or
  paragraph separators, folds runs of white space into one space and caps the length;
- :func:`clean_email` keeps an address only if what is left is one plain ``local@domain``.

The e-mail is kept to show to DAC members; it is never used to find or link an account
(OIDC Core 5.7, THREAT-MODEL RP-08): accounts are keyed by the upstream's (iss, sub) only.

:func:`affiliations` reads ``eduperson_scoped_affiliation`` (the REFEDS/AARC claim name) or
``eduPersonScopedAffiliation`` and keeps the values a GA4GH AffiliationAndRole visa may
carry (SPEC-DIGEST B21): ``faculty``, ``student``, ``member`` or a dotted custom role, then
``@`` and a domain.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

MAX_NAME_CHARS = 200
MAX_EMAIL_CHARS = 254
MAX_AFFILIATIONS = 20
AFFILIATION_CLAIMS = ("eduperson_scoped_affiliation", "eduPersonScopedAffiliation")
AFFILIATION = re.compile(
    r"(?:faculty|student|member|[a-z][a-z0-9_-]*\.[a-z][a-z0-9_-]*)"
    r"@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
)
_EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}")
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_WHITESPACE = re.compile(r"\s+")


def clean_text(value: object, max_chars: int = MAX_NAME_CHARS) -> str:
    """``value`` as safe one-line text of at most ``max_chars`` characters ("" when not a string)."""
    if not isinstance(value, str):
        return ""
    # Look at a bounded prefix only: a megabyte claim costs no more than a short one.
    head = value[: max_chars * 4]
    kept = "".join(
        " " if ch.isspace() else ch
        for ch in head
        if ch.isspace() or unicodedata.category(ch) not in _DROPPED_CATEGORIES
    )
    return _WHITESPACE.sub(" ", kept).strip()[:max_chars].rstrip()


def clean_email(value: object) -> str:
    """A plain ``local@domain`` address, or "" when the claim is anything else."""
    if not isinstance(value, str) or len(value) > MAX_EMAIL_CHARS:
        return ""
    return value if _EMAIL.fullmatch(value) else ""


def display_name(claims: dict[str, Any]) -> str:
    """The researcher's name: ``name``, else given and family names, else ``preferred_username``."""
    name = clean_text(claims.get("name"))
    if not name:
        name = clean_text(f"{clean_text(claims.get('given_name'))} {clean_text(claims.get('family_name'))}")
    return name or clean_text(claims.get("preferred_username"))


def affiliations(claims: dict[str, Any], source: str, asserted: int) -> list[dict[str, Any]]:
    """The AffiliationAndRole material to record: one entry per valid, distinct value."""
    raw: object = None
    for name in AFFILIATION_CLAIMS:
        if name in claims:
            raw = claims[name]
            break
    values = [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for value in values:
        if len(out) >= MAX_AFFILIATIONS:
            break
        if isinstance(value, str) and value not in seen and AFFILIATION.fullmatch(value):
            seen.add(value)
            out.append({"value": value, "source": source, "asserted": asserted})
    return out
