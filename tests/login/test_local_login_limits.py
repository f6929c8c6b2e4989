"""Password guessing on the login form is limited (OA-18), and withdrawing consent ends the client's grants (OA-20)."""

from __future__ import annotations

from pathlib import Path

from broker.login.service import LOGIN_FAILURES
from broker.oidc.records import Consent
from broker.oidc.repository import OidcRepository
from tests.dac.web import PASSWORD, csrf_of, login, make_site


def test_oa18_password_guessing_on_the_login_form_is_answered_429(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    with site.app.test_client() as client:
        page = client.get("/login?next=/account")
        token = csrf_of(page.get_data(as_text=True))
        form = {"username": "researcher", "password": "wrong", "interaction": "", "csrf_token": token}
        statuses = [client.post("/login/local/local", data=form).status_code for _ in range(LOGIN_FAILURES.count)]
        assert statuses == [401] * LOGIN_FAILURES.count
        blocked = client.post("/login/local/local", data={**form, "password": PASSWORD})
        assert blocked.status_code == 429  # even the right password waits: the guesser cannot tell
        assert int(blocked.headers["Retry-After"]) > 0
    with site.app.test_client() as other:
        login(other, "member-a")  # another account from the same address is not locked out


def test_oa20_withdrawing_consent_on_the_account_page_calls_the_grant_ending_withdrawal(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    researcher = site.ids["researcher"]
    site.store.put_consent(Consent(researcher, "portal", ("openid",), 1_700_000_000))
    with site.app.test_client() as client:
        login(client, "researcher")
        page = client.get("/account").get_data(as_text=True)
        token = csrf_of(page[page.index('action="/account/consents/withdraw"') :])
        done = client.post("/account/consents/withdraw", data={"client_id": "portal", "csrf_token": token})
        assert done.status_code == 303, done.get_data(as_text=True)[:500]
    assert site.store.get_consent(researcher, "portal") is None
    # The marker that makes every earlier grant of that client for this researcher stop working.
    assert (
        OidcRepository(site.store.kernel, family_marker_seconds=3600).withdrawn_at_ms(researcher, "portal") is not None
    )


def test_px20_password_guessing_from_one_address_does_not_lock_the_account_for_others(tmp_path: Path) -> None:
    """Issue 11 item 3: login failures count per account and address, plus per address; never per account alone."""
    site = make_site(tmp_path)
    with site.app.test_client() as guesser:
        guesser.environ_base["REMOTE_ADDR"] = "192.0.2.66"
        token = csrf_of(guesser.get("/login?next=/account").get_data(as_text=True))
        form = {"username": "researcher", "password": "wrong", "interaction": "", "csrf_token": token}
        for _ in range(LOGIN_FAILURES.count):
            assert guesser.post("/login/local/local", data=form).status_code == 401
        assert guesser.post("/login/local/local", data={**form, "password": PASSWORD}).status_code == 429
    with site.app.test_client() as owner:
        owner.environ_base["REMOTE_ADDR"] = "198.51.100.7"
        login(owner, "researcher")  # the same account, from its owner's address: not locked
