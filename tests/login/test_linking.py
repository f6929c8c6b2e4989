"""Account linking: a logged-in researcher adds an upstream identity from the account page.

The link is keyed by the upstream's (iss, sub) from a verified login, never by e-mail
(RP-08 is in test_rp_threats); an identity that belongs to another account is refused and
nothing changes; linking is bound to the account that asked for it.
"""

from __future__ import annotations

import html
from urllib.parse import urljoin

import requests

from broker.core.linked_identities import parse_linked_identities
from broker.core.models import AFFILIATION_AND_ROLE, LINKED_IDENTITIES
from tests.login.browser import Browser, form_for, origin, query_of
from tests.login.flows import clearinghouse, login_through, passport_of, start_authorization, userinfo
from tests.login.peers import NodeIdp
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import PASSWORD, Client, claims, redeem


def local_login(browser: Browser, broker: BrokerProcess, username: str) -> None:
    page = browser.get(broker.url("/login"))
    done = browser.submit(page, "/login/local/local", username=username, password=PASSWORD)
    assert done.status_code == 303 and done.headers["Location"].endswith("/account"), done.text[:300]


def start_link(browser: Browser, broker: BrokerProcess, connector: str) -> requests.Response:
    """Press "Link <connector>" on the account page; returns the redirect to the upstream."""
    account = browser.get(broker.url("/account"))
    assert account.status_code == 200
    sent = browser.submit(account, f"/login/upstream/{connector}")
    assert sent.status_code == 303, sent.text[:300]
    assert query_of(sent.headers["Location"])["prompt"] == "login"  # the second identity is proven now
    return sent


def account_page(browser: Browser, broker: BrokerProcess) -> str:
    page = browser.get(broker.url("/account"))
    assert page.status_code == 200
    return page.text


def tokens_in(browser: Browser, broker: BrokerProcess, app: Client) -> dict[str, str]:
    """The client's tokens for the browser's logged-in account (consenting on the way)."""
    response, verifier = start_authorization(browser, broker, app)
    final = browser.drive(response, until=app.redirect_uri)
    code = query_of(urljoin(final.url, final.headers["Location"]))["code"]
    return redeem(broker, app, code, verifier).json()  # type: ignore[no-any-return]


def visa_types(info: dict[str, object]) -> list[str]:
    return [claims(v)["ga4gh_visa_v1"]["type"] for v in info["ga4gh_passport_v1"]]  # type: ignore[union-attr]


def test_linking_a_second_identity_mints_linked_identities(
    login_broker: BrokerProcess, app: Client, idp1: NodeIdp
) -> None:
    browser = Browser(connectors={origin(login_broker.issuer): "local"}, accounts={idp1.issuer: "linker"})
    local_login(browser, login_broker, "alice")
    before = tokens_in(browser, login_broker, app)
    assert LINKED_IDENTITIES not in visa_types(userinfo(login_broker, before["access_token"]))
    done = browser.drive(start_link(browser, login_broker, "idp1"), until=login_broker.url("/account"))
    assert done.status_code == 303, done.text[:500]
    page = account_page(browser, login_broker)
    assert "<code>linker</code>" in page and html.escape(idp1.issuer) in page and "<code>alice</code>" in page

    tokens = tokens_in(browser, login_broker, app)
    info = userinfo(login_broker, tokens["access_token"])
    linked = [claims(v) for v in info["ga4gh_passport_v1"] if claims(v)["ga4gh_visa_v1"]["type"] == LINKED_IDENTITIES]
    assert len(linked) == 1
    assert set(parse_linked_identities(linked[0]["ga4gh_visa_v1"]["value"])) == {
        (login_broker.url("/login/local"), "alice"),
        (idp1.issuer, "linker"),
    }
    assert linked[0]["ga4gh_visa_v1"]["by"] == "system" and linked[0]["sub"] == info["sub"]
    assert AFFILIATION_AND_ROLE in visa_types(info)  # what the linked upstream asserted counts for alice now
    result = clearinghouse(login_broker, {}).verify_passport(passport_of(login_broker, app, tokens["access_token"]))
    assert result.ok and {v.visa.type for v in result.accepted} == {LINKED_IDENTITIES, AFFILIATION_AND_ROLE}

    # Logging in through the linked upstream identity now opens alice's account.
    _, via_upstream = login_through(login_broker, app, "idp1", idp1.issuer, "linker")
    assert claims(via_upstream["id_token"])["sub"] == info["sub"]


def test_linking_an_identity_of_another_account_is_refused_and_changes_nothing(
    login_broker: BrokerProcess, app: Client, idp2: NodeIdp
) -> None:
    _, owner = login_through(login_broker, app, "idp2", idp2.issuer, "dave")
    owner_sub = claims(owner["id_token"])["sub"]
    browser = Browser(connectors={origin(login_broker.issuer): "local"}, accounts={idp2.issuer: "dave"})
    local_login(browser, login_broker, "bob")
    refused = browser.drive(start_link(browser, login_broker, "idp2"), until=login_broker.url("/account"))
    assert refused.status_code == 409
    assert "already belongs to another account" in refused.text and "Nothing was changed" in refused.text
    page = account_page(browser, login_broker)
    assert html.escape(idp2.issuer) not in page and "<code>bob</code>" in page
    bob = userinfo(login_broker, tokens_in(browser, login_broker, app)["access_token"])
    assert visa_types(bob) == []
    _, again = login_through(login_broker, app, "idp2", idp2.issuer, "dave")
    assert claims(again["id_token"])["sub"] == owner_sub
    assert LINKED_IDENTITIES not in visa_types(userinfo(login_broker, again["access_token"]))


def test_linking_is_bound_to_the_account_that_asked(login_broker: BrokerProcess, idp2: NodeIdp) -> None:
    """The browser switches to another account while at the upstream: the link is not made for either."""
    browser = Browser(connectors={origin(login_broker.issuer): "local"}, accounts={idp2.issuer: "switcher"})
    local_login(browser, login_broker, "alice")
    to_upstream = start_link(browser, login_broker, "idp2")
    local_login(browser, login_broker, "bob")
    stopped = browser.drive(to_upstream, until=login_broker.url("/account"))
    assert stopped.status_code == 409 and "Nothing was changed" in stopped.text
    assert "switcher" not in account_page(browser, login_broker)
    local_login(browser, login_broker, "alice")
    assert "switcher" not in account_page(browser, login_broker)


def test_linking_needs_the_account_page_csrf_token_and_a_login(login_broker: BrokerProcess) -> None:
    anonymous = Browser()
    page = anonymous.get(login_broker.url("/login"))
    _, fields = form_for(page.text, "/login/upstream/idp1")
    url = login_broker.url("/login/upstream/idp1")
    # A login-page token is not a link token, and no token is no token.
    assert anonymous.post(url, {**fields, "link": "yes"}).status_code == 403
    assert anonymous.post(url, {"link": "yes"}).status_code == 403
    browser = Browser()
    local_login(browser, login_broker, "alice")
    assert browser.post(url, {"link": "yes"}).status_code == 403
    assert browser.post(url, {"link": "yes", "csrf_token": fields["csrf_token"]}).status_code == 403
