"""Browser test: Debian's chromium, headless, driven by playwright against a real server on loopback.

A DAC member logs in, grants, sees the grant, revokes it; the researcher sees the visa appear and
disappear. On failure a screenshot of each page is kept in ``$BROKER_TEST_ARTIFACTS`` (default:
the test's tmp directory, which pytest keeps for the last runs). Page load times are printed
(``-s``), never asserted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from broker.core.models import CONTROLLED_ACCESS_GRANTS
from tests.dac.web import PASSWORD, Site, make_site
from tests.support.parts import free_port, require_binary


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Site, str]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site = make_site(tmp_path / "data", issuer=base + "/")
    server = make_server("127.0.0.1", port, site.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="broker-live", daemon=True)
    thread.start()
    yield site, base
    server.shutdown()
    thread.join(timeout=5)
    site.store.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium = require_binary("chromium", "browser tests of the DAC pages")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        yield instance
        instance.close()


def _login(page: Any, base: str, name: str, path: str) -> None:
    page.goto(f"{base}{path}")
    page.fill("#username-local", name)
    page.fill("#password-local", PASSWORD)
    page.click("button:has-text('Log in')")
    page.wait_for_url(f"{base}{path}")


def _timed(page: Any, url: str, times: dict[str, list[float]], name: str) -> None:
    started = time.perf_counter()
    page.goto(url, wait_until="load")
    times.setdefault(name, []).append(time.perf_counter() - started)


def test_member_grants_and_revokes_and_researcher_sees_the_visa_come_and_go(
    live: tuple[Site, str], browser: Any, tmp_path: Path
) -> None:
    site, base = live
    artifacts = Path(os.environ.get("BROKER_TEST_ARTIFACTS", tmp_path / "screenshots"))
    member = browser.new_context().new_page()
    researcher = browser.new_context().new_page()
    times: dict[str, list[float]] = {}
    try:
        _login(member, base, "chair-a", "/dac")
        assert "DAC A" in member.content() and "DAC B" not in member.content()
        member.click("a:has-text('EGAD-A1')")
        member.wait_for_url(f"{base}/dac/datasets/EGAD-A1")
        assert member.is_visible("#no-grants")
        member.fill("#identity", site.ids["researcher"])
        member.fill("#reason", "study <b>1</b>")
        member.click("button:has-text('Grant')")
        member.wait_for_selector("fieldset.grant")
        assert member.inner_text("fieldset.grant code.identity") == site.ids["researcher"]
        assert "study <b>1</b>" in member.inner_text("fieldset.grant")  # shown as text, not markup

        _login(researcher, base, "researcher", "/account/visas")
        assert researcher.inner_text("fieldset.visa legend") == CONTROLLED_ACCESS_GRANTS
        assert researcher.inner_text("fieldset.visa code.value") == f"{base}/datasets/EGAD-A1"

        for _ in range(5):
            _timed(member, f"{base}/dac", times, "/dac")
            _timed(member, f"{base}/dac/datasets/EGAD-A1", times, "/dac/datasets/<id>")
            _timed(researcher, f"{base}/account/visas", times, "/account/visas")
            _timed(researcher, f"{base}/healthz", times, "/healthz (baseline)")

        member.fill("fieldset.grant input[name=reason]", "study ended")
        member.click("fieldset.grant button:has-text('Revoke')")
        member.wait_for_selector("text=Revoked at")
        researcher.goto(f"{base}/account/visas")
        assert researcher.is_visible("#no-visas")
    except Exception:
        artifacts.mkdir(parents=True, exist_ok=True)
        member.screenshot(path=str(artifacts / "member.png"), full_page=True)
        researcher.screenshot(path=str(artifacts / "researcher.png"), full_page=True)
        print(f"screenshots kept in {artifacts}")
        raise
    medians = {name: sorted(values)[len(values) // 2] for name, values in times.items()}
    baseline = medians["/healthz (baseline)"]
    for name, median in medians.items():
        print(f"page load {name}: median {median * 1000:.1f} ms ({median / baseline:.1f}x /healthz)")
