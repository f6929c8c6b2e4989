"""Local password accounts on the kernel: one transaction for account, link and hash; old accounts still log in."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.identity.service import IdentityService
from broker.login.local import AccountError, LocalAccounts
from broker.oidc.passwords import hash_secret
from broker.settings import Settings
from tests.support.legacy_store import open_store

ISSUER = "https://broker.example/"
PASSWORD = "correct horse battery staple"


def test_a_local_account_logs_in_with_its_password_only(tmp_path: Path) -> None:
    store = open_store(Settings(data_dir=str(tmp_path)))
    try:
        people = IdentityService(store.kernel)
        accounts = LocalAccounts(store.kernel, people, ISSUER)
        made = accounts.add("local", "alice", PASSWORD, display_name="Alice")
        assert accounts.check_password("local", "alice", PASSWORD) == made.id
        assert accounts.check_password("local", "alice", PASSWORD + "!") is None
        assert accounts.check_password("local", "nobody", PASSWORD) is None
        assert accounts.check_password("other-connector", "alice", PASSWORD) is None
        link = people.find_link(f"{ISSUER}login/local", "alice")
        assert link is not None and link.identity_id == made.id
        with pytest.raises(AccountError):
            accounts.add("local", "alice", "another long password")
        with pytest.raises(AccountError):
            accounts.add("local", "bad name", PASSWORD)
    finally:
        store.close()


def test_an_account_of_the_first_release_still_logs_in_and_moves(tmp_path: Path) -> None:
    """The first release kept accounts as 100-year tickets; they log in and become local-account records."""
    store = open_store(Settings(data_dir=str(tmp_path)))
    try:
        old = {"identity_id": "old-id", "hash": hash_secret(PASSWORD, log2_n=10)}
        assert store.add_ticket("local_account", "local:olduser", old, 100 * 365 * 86400)
        accounts = LocalAccounts(store.kernel, IdentityService(store.kernel), ISSUER)
        assert accounts.check_password("local", "olduser", PASSWORD) == "old-id"
        assert store.kernel.get("local-account", "local/olduser") is not None
        with pytest.raises(AccountError):
            accounts.add("local", "olduser", PASSWORD)
    finally:
        store.close()
