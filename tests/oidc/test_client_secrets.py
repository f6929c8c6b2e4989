"""Issue 11 item 2: generated client secrets are stored as HMAC-SHA-256 under a server pepper.

The pepper lives with the keys (a 0600 file, or derived from ``keys.encryption_secret`` for a
store-kept ring), never in the settings file; scrypt hashes written before keep verifying.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from broker.keys.errors import KeyStorageError
from broker.keys.pepper import PEPPER_FILE, load_pepper
from broker.keys.settings import KeySettings
from broker.oidc.clients import ClientError, ClientRegistry
from broker.oidc.passwords import hash_secret, hmac_secret, is_fast_hash, verify_secret
from broker.oidc.repository import OidcRepository
from broker.settings import Settings
from broker.store.settings import StoreSettings
from tests.support.legacy_store import open_store


def test_pepper_file_is_made_once_0600_and_read_back(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = load_pepper(KeySettings(), keys)
    assert len(first) == 32 and load_pepper(KeySettings(), keys) == first
    assert stat.S_IMODE((keys / PEPPER_FILE).stat().st_mode) == 0o600
    os.chmod(keys / PEPPER_FILE, 0o644)
    with pytest.raises(KeyStorageError, match="group or others"):
        load_pepper(KeySettings(), keys)


def test_store_kept_ring_derives_the_pepper_from_its_encryption_secret(tmp_path: Path) -> None:
    one = KeySettings(storage="store", encryption_secret=SecretStr("a long sealing passphrase"))
    other = KeySettings(storage="store", encryption_secret=SecretStr("another sealing passphrase"))
    assert load_pepper(one, tmp_path / "a") == load_pepper(one, tmp_path / "b")  # every machine agrees
    assert load_pepper(one, tmp_path) != load_pepper(other, tmp_path)
    assert not (tmp_path / PEPPER_FILE).exists()


def test_generated_client_secrets_are_stored_as_hmac_and_old_scrypt_hashes_still_verify(tmp_path: Path) -> None:
    pepper = load_pepper(KeySettings(), tmp_path / "keys")
    settings = Settings(
        issuer="https://op.example/", data_dir=str(tmp_path / "var"), store=StoreSettings(backend="sqlite")
    )
    store = open_store(settings)
    try:
        registry = ClientRegistry([], OidcRepository(store.kernel, family_marker_seconds=3600), pepper)
        made = registry.create("portal", redirect_uris=("https://portal.example/cb",))
        assert made.secret is not None
        stored = registry.get("portal")
        assert stored is not None and stored.secret_hash is not None and is_fast_hash(stored.secret_hash)
        assert made.secret not in stored.secret_hash
        assert verify_secret(made.secret, stored.secret_hash, pepper)
        assert not verify_secret(made.secret + "x", stored.secret_hash, pepper)
        assert not verify_secret(made.secret, stored.secret_hash, b"\x01" * 32)  # another broker's pepper
        assert not verify_secret(made.secret, stored.secret_hash, None)  # no pepper: fail closed
        old = hash_secret("an old secret", log2_n=10)
        assert verify_secret("an old secret", old, pepper) and not verify_secret("an old secreT", old, pepper)
        with pytest.raises(ClientError, match="pepper"):
            ClientRegistry([], OidcRepository(store.kernel, family_marker_seconds=3600)).create(
                "nopepper", redirect_uris=("https://portal.example/cb",)
            )
    finally:
        store.close()


@pytest.mark.parametrize("stored", ["hmac-sha256$", "hmac-sha256$!!", "hmac-sha256$AAAA", "hmac-sha256$" + "A" * 44])
def test_malformed_hmac_hashes_never_verify(stored: str) -> None:
    assert verify_secret("anything", stored, b"\x00" * 32) is False


def test_hmac_hash_is_keyed() -> None:
    assert hmac_secret("s", b"\x00" * 32) != hmac_secret("s", b"\x01" * 32)
    assert hmac_secret("s", b"\x00" * 32) == hmac_secret("s", b"\x00" * 32)
