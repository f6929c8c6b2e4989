"""The ``keys:`` settings section: our signing key ring."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from broker.settings_model import SettingsModel, SettingsProblem


class KeySettings(SettingsModel):
    """Algorithm, where private keys live, and the rotation schedule."""

    algorithm: Literal["ES256", "RS256"] = Field("ES256", description="Signing algorithm of new keys.")
    storage: Literal["file", "store"] = Field(
        "file", description="file: 0600 files in keys.directory. store: in the store, sealed with encryption_secret."
    )
    directory: str | None = Field(None, description="Key files' folder; default <data_dir>/keys.")
    rotate_every_days: float = Field(
        90.0, ge=0, description="A new key signs this often; 0 rotates only by `ga4gh-broker keys rotate`."
    )
    publish_ahead_seconds: int = Field(
        3600, gt=0, description="A new key is in the JWKS this long before it signs (the JWKS cache period we promise)."
    )
    max_token_lifetime_seconds: int = Field(
        86400, gt=0, description="The longest lifetime of anything we sign: a retired key stays published this long."
    )
    encryption_secret: SecretStr | None = Field(
        None, description="Passphrase sealing private keys kept in the store (required when storage is 'store')."
    )


def check_keys(keys: KeySettings, key: str = "keys") -> None:
    """Rotation slower than publication; a store-kept key ring has its sealing secret."""
    if 0 < keys.rotate_every_days * 86400 <= keys.publish_ahead_seconds:
        raise SettingsProblem(
            f"{key}.rotate_every_days",
            "must be longer than keys.publish_ahead_seconds, or each key would be replaced on arrival",
        )
    if keys.storage == "store" and (keys.encryption_secret is None or not keys.encryption_secret.get_secret_value()):
        raise SettingsProblem(
            f"{key}.encryption_secret", "required when keys.storage is 'store' (keys are kept encrypted)"
        )
