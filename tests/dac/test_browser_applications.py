"""The whole application flow in Debian's chromium (playwright), against a real server on loopback.

A researcher is refused a file (403 with the required-visas document and its ``apply`` link),
follows the link and applies; member A comments and approves, member B approves (DAC A needs two
approvals); the researcher downloads the file; the chair revokes and the researcher sees why.

Every page visited is checked with axe-core (npm, ``tests/peers``): no serious or critical
violation. Screenshots of each step are saved in ``$BROKER_TEST_ARTIFACTS`` (default
``test-artifacts/applications-flow`` at the top of the checkout) so a person can look at them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from broker.dac.settings import DatasetTermsSettings
from broker.oidc.tokens import mint_access_token
from tests.dac.web import DATA, PASSWORD, Site, make_site
from tests.support.keys import open_ring
from tests.support.parts import free_port, require_binary

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "peers" / "node_modules" / "axe-core" / "axe.min.js"
TERMS = DatasetTermsSettings(datasets=["EGAD-A1"], version="2026-1", text="Cite the consortium; do not re-identify.")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Site, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site = make_site(tmp_path / "data", issuer=base + "/", required_approvals=2, with_data=True, terms=[TERMS])
    server = make_server("127.0.0.1", port, site.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="broker-live", daemon=True)
    thread.start()
    yield site, base
    server.shutdown()
    thread.join(timeout=5)
    site.store.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = require_binary("chromium", "browser tests of the application pages")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture
def axe_source() -> str:
    if not AXE.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"axe-core is missing at {AXE}: run npm ci --prefix tests/peers")
        pytest.skip(f"axe-core is missing at {AXE}: run npm ci --prefix tests/peers")
    return AXE.read_text(encoding="utf-8")


class Shots:
    """Numbered full-page screenshots of each step, and the axe-core check of each page."""

    def __init__(self, folder: Path, axe: str) -> None:
        self.folder = folder
        self.axe = axe
        self.count = 0
        self.checked: dict[str, list[dict[str, Any]]] = {}
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()

    def take(self, page: Any, name: str) -> None:
        self.count += 1
        page.screenshot(path=str(self.folder / f"{self.count:02d}-{name}.png"), full_page=True)

    def check(self, page: Any, name: str) -> None:
        """axe-core on the page as it is (evaluated through the DevTools protocol: the page CSP stays on)."""
        page.evaluate(self.axe)
        found = page.evaluate(
            "async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}))"
            ".violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length}))"
        )
        self.checked[name] = found
        serious = [v for v in found if v["impact"] in ("serious", "critical")]
        assert serious == [], f"{name}: {serious}"


def _login(page: Any, base: str, name: str, path: str) -> None:
    page.goto(f"{base}{path}")
    page.fill("#username-local", name)
    page.fill("#password-local", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}{path}")


def _token(site: Site, who: str) -> str:
    ring = open_ring(site.settings, site.store, auto_maintain_seconds=None)
    token, _ = mint_access_token(
        ring,
        site.settings,
        sub=site.ids[who],
        client_id="researcher-tool",
        scope=("openid", "ga4gh_passport_v1"),
        grant=f"g-{who}-{time.time_ns()}",
        now=int(time.time()),
    )
    return token


def test_researcher_is_refused_applies_two_members_approve_researcher_downloads_chair_revokes(
    live: tuple[Site, str], browser: Any, axe_source: str
) -> None:
    site, base = live
    shots = Shots(
        Path(os.environ.get("BROKER_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "applications-flow", axe_source
    )
    file_url = f"{base}/data/EGAD-A1/reads.bin"

    # 1. The researcher's tool is refused: 403 with what is required and where to apply.
    refused = requests.get(file_url, headers={"Authorization": f"Bearer {_token(site, 'researcher')}"}, timeout=10)
    assert refused.status_code == 403
    apply_link = refused.json()["apply"]
    assert apply_link == f"{base}/account/apply?datasets=EGAD-A1" and refused.json()["required"]["dataset"] == "EGAD-A1"
    tool = browser.new_context(extra_http_headers={"Authorization": f"Bearer {_token(site, 'researcher')}"})
    refused_page = tool.new_page()
    refused_page.goto(file_url)
    assert '"apply"' in refused_page.content()
    shots.take(refused_page, "researcher-403-with-apply-link")
    tool.close()

    # 2. The researcher follows the link, first sends the form half filled in, then applies.
    researcher = browser.new_context().new_page()
    researcher.goto(apply_link)  # not logged in yet: the login page, then back to the form
    researcher.fill("#username-local", "researcher")
    researcher.fill("#password-local", PASSWORD)
    researcher.click("button:has-text('Log in')")
    researcher.wait_for_url(apply_link)
    shots.check(researcher, "apply-form")
    researcher.fill("#title", "Rare kidney variants")
    researcher.click("button:has-text('Submit application')")
    assert researcher.is_visible("#institution-error") and researcher.input_value("#title") == "Rare kidney variants"
    shots.check(researcher, "apply-form-errors")
    shots.take(researcher, "researcher-form-errors-beside-fields")
    researcher.check("input[name=purpose_codes][value='DUO:0000007']")
    researcher.fill("#purpose_text", "Association study of rare variants in a kidney disease cohort.")
    researcher.fill("#institution", "Example University")
    researcher.check("input[name=accepted_terms]")
    researcher.click("button:has-text('Submit application')")
    researcher.wait_for_selector("#app-state")
    assert researcher.inner_text("#app-state") == "submitted"
    application_url = researcher.url
    shots.check(researcher, "application-submitted")
    shots.take(researcher, "researcher-application-submitted")

    # 3. Member A comments and approves (1 of 2).
    member_a = browser.new_context().new_page()
    _login(member_a, base, "member-a", "/dac")
    member_a.click("#queue")
    shots.check(member_a, "dac-queue")
    shots.take(member_a, "member-a-queue-shows-names")
    member_a.click("a:has-text('Rare kidney variants')")
    member_a.fill("#comment-text", "Which cohort will you use?")
    member_a.click("button:has-text('Add comment')")
    member_a.wait_for_selector("text=Which cohort will you use?")
    member_a.click("button:has-text('Approve')")
    member_a.wait_for_selector("text=waiting for 1 more member")
    assert member_a.inner_text("#approvals").startswith("1 of 2")
    shots.check(member_a, "dac-application")
    shots.take(member_a, "member-a-commented-and-approved-1-of-2")

    # 4. Member B approves: the second approval makes the grant.
    member_b = browser.new_context().new_page()
    _login(member_b, base, "member-a2", "/dac")
    member_b.goto(member_a.url)
    member_b.click("button:has-text('Approve')")
    member_b.wait_for_selector("#app-state")
    assert member_b.inner_text("#app-state") == "approved"
    shots.take(member_b, "member-b-approved-grant-made")

    # 5. The researcher downloads the file, and sees the grant with its real end date.
    got = requests.get(file_url, headers={"Authorization": f"Bearer {_token(site, 'researcher')}"}, timeout=10)
    assert got.status_code == 200 and got.content == DATA
    researcher.goto(f"{base}/account/visas")
    assert researcher.is_visible("li.grant .state-live") and researcher.is_visible("fieldset.visa")
    shots.check(researcher, "account-with-grant")
    shots.take(researcher, "researcher-grant-live-and-visa-after-download")

    # 6. The chair revokes; the researcher is refused again and sees why.
    chair = browser.new_context().new_page()
    _login(chair, base, "chair-a", "/dac")
    chair.goto(member_a.url)
    chair.fill("#revoke-reason", "Data shared outside the approved project")
    chair.click("button:has-text('Revoke access')")
    chair.wait_for_selector("text=Closed: Data shared outside the approved project")
    shots.take(chair, "chair-revoked")
    chair.goto(f"{base}/dac/datasets/EGAD-A1?show=all")
    shots.check(chair, "dataset-page")
    shots.take(chair, "chair-dataset-page-grants-applications-history")
    again = requests.get(file_url, headers={"Authorization": f"Bearer {_token(site, 'researcher')}"}, timeout=10)
    assert again.status_code == 403
    researcher.goto(application_url)
    assert "Data shared outside the approved project" in researcher.inner_text("#closed-reason")
    assert "Which cohort will you use?" in researcher.inner_text("ul.thread")
    shots.check(researcher, "application-revoked")
    shots.take(researcher, "researcher-sees-why-access-was-revoked")
    print(f"screenshots in {shots.folder}; axe-core checked {len(shots.checked)} pages")
