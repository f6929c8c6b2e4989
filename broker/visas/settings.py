"""The ``visa_sources:`` settings section: remote visa issuers we fetch a user's visas from.

What a type cannot say is checked by :func:`check_visa_sources`: a source's URL template is
https (http only to loopback when ``trust.fetch.allow_http_loopback``), holds ``{user}``
exactly once in its path, and names are unique and plain.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr

from broker.settings_model import SettingsModel, SettingsProblem
from broker.trust.fetch import FetchError, check_url

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
USER_PLACEHOLDER = "{user}"


class VisaSourceSettings(SettingsModel):
    """A remote visa issuer (the REMS / ELIXIR permissions API shape)."""

    name: str = Field(description="1-64 letters, digits, '.', '_' or '-'; unique among sources.")
    url: str = Field(
        description="URL template with {user} in its path, e.g. https://rems.example/api/permissions/{user}."
    )
    send: Literal["identity", "upstream_sub", "email"] = Field(
        "identity",
        description="What goes into {user}: our identity id, the sub of their linked identity at upstream_issuer, "
        "or their e-mail address.",
    )
    upstream_issuer: str | None = Field(None, description="Required when send is upstream_sub.")
    auth_header: SecretStr | None = Field(None, description='The whole header value sent, e.g. "Bearer <token>".')
    auth_header_name: str = Field("Authorization", description="The header auth_header is sent in.")
    timeout_seconds: float = Field(3.0, gt=0, le=60, description="The most one fetch may cost, connect to last byte.")
    cache_ttl_seconds: int = Field(300, ge=0, description="A fetched answer is reused this long per (source, user).")
    max_response_bytes: int = Field(1_048_576, gt=0, description="Largest answer accepted.")


def check_visa_sources(sources: list[VisaSourceSettings], allow_http_loopback: bool, key: str = "visa_sources") -> None:
    """Every rule of the module docstring."""
    names: set[str] = set()
    for i, item in enumerate(sources):
        where = f"{key}[{i}]"
        if not ID_PATTERN.fullmatch(item.name):
            raise SettingsProblem(f"{where}.name", "expected 1-64 letters, digits, '.', '_' or '-'")
        if item.name in names:
            raise SettingsProblem(f"{where}.name", f"source name {item.name!r} is used twice")
        names.add(item.name)
        if item.url.count(USER_PLACEHOLDER) != 1:
            raise SettingsProblem(f"{where}.url", "expected exactly one {user} in the URL template")
        scheme_and_host = item.url.split(USER_PLACEHOLDER, 1)[0]
        if scheme_and_host.count("/") < 3:
            raise SettingsProblem(f"{where}.url", "{user} must be in the path, after the host")
        try:
            check_url(item.url.replace(USER_PLACEHOLDER, "u"), allow_http_loopback)
        except FetchError as exc:
            raise SettingsProblem(f"{where}.url", str(exc)) from None
        if item.send == "upstream_sub" and not item.upstream_issuer:
            raise SettingsProblem(f"{where}.upstream_issuer", "required when send is upstream_sub")
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", item.auth_header_name):
            raise SettingsProblem(f"{where}.auth_header_name", "expected an HTTP header name")
        header = item.auth_header.get_secret_value() if item.auth_header is not None else ""
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in header):
            raise SettingsProblem(f"{where}.auth_header", "must not contain control characters")
