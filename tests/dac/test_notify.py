"""E-mail notifications through a real SMTP server (aiosmtpd on a free loopback port).

The DAC hears of a submission; the applicant and co-applicants hear of a return, an approval, a
rejection and a revocation; a failing send is retried, and a mail server that is down never
blocks or fails a decision. No message carries a token or a secret.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from broker.cli import Context
from broker.cli.applications import register
from broker.dac.applications import Answers
from broker.dac.grants import GrantRequest
from broker.dac.services import DacServices
from broker.dac.settings import NotificationSettings
from tests.dac.conftest import DAY, ISSUER, T0, Clock, SettingsWithDac, dac_config, services
from tests.support.legacy_store import Store
from tests.support.parts import free_port, in_ci

ANSWERS = Answers(
    title="Kidney variants",
    purpose_codes=["DUO:0000007"],
    purpose_text="Association study.",
    institution="Example University",
    co_applicants=["researcher-2@example.org"],
)
SMTP_PASSWORD = "smtp-password-never-in-mail"


def _aiosmtpd() -> Any:
    try:
        from aiosmtpd.controller import Controller  # optional test dependency: skipped loudly when absent
    except ImportError:
        message = "REAL PART MISSING: aiosmtpd (pip install -e '.[test]') for the SMTP notification tests"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return Controller


class Inbox:
    """An aiosmtpd handler keeping every message; ``refuse`` answers the first N DATA commands with 451."""

    def __init__(self, refuse: int = 0) -> None:
        self.messages: list[tuple[list[str], Any]] = []
        self.refuse = refuse

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse > 0:
            self.refuse -= 1
            return "451 4.3.0 try again later"
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=default)))
        return "250 OK"

    def wait(self, count: int, seconds: float = 20.0) -> list[tuple[list[str], Any]]:
        deadline = time.monotonic() + seconds
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.messages


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    controller_cls = _aiosmtpd()
    inbox = Inbox()
    port = free_port()
    controller = controller_cls(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def settings_with(tmp_path: Path, port: int, **mail: Any) -> SettingsWithDac:
    notifications = NotificationSettings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        sender="dac@broker.example",
        retry_seconds=0.05,
        password=SecretStr(SMTP_PASSWORD),
        **mail,
    )
    return SettingsWithDac(issuer=ISSUER, data_dir=str(tmp_path / "data"), dac=dac_config(notifications=notifications))


@pytest.fixture
def settings(tmp_path: Path, smtp: tuple[Inbox, int]) -> SettingsWithDac:
    return settings_with(tmp_path, smtp[1])


def test_the_dac_hears_of_a_submission_and_the_applicants_of_the_decision(
    svc: DacServices, smtp: tuple[Inbox, int], store: Store
) -> None:
    inbox, _ = smtp
    app = svc.applications.create("researcher", ["EGAD-A1"], ANSWERS)
    svc.applications.submit("researcher", app.id)
    (to_dac,) = inbox.wait(1)
    assert sorted(to_dac[0]) == ["chair-a@example.org", "member-a@example.org"]
    assert to_dac[1]["From"] == "dac@broker.example" and "New application to review" in to_dac[1]["Subject"]
    assert f"{ISSUER.rstrip('/')}/dac/applications/{app.id}" in to_dac[1].get_content()

    svc.applications.approve("member-a", app.id, T0 + 30 * DAY, "Fits the consent.")
    messages = inbox.wait(2)
    recipients, approved = messages[1]
    assert sorted(recipients) == ["researcher-2@example.org", "researcher@example.org"]
    body = approved.get_content()
    assert "approved" in approved["Subject"] and "Reason given: Fits the consent." in body
    assert f"/account/applications/{app.id}" in body
    for message in messages:
        raw = message[1].as_string()
        assert SMTP_PASSWORD not in raw and "eyJ" not in raw and "csrf" not in raw.lower()


def test_revocation_and_return_tell_the_researcher_why(svc: DacServices, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    first = svc.applications.create("researcher", ["EGAD-A1"], ANSWERS)
    svc.applications.submit("researcher", first.id)
    svc.applications.send_back("chair-a", first.id, "Name the cohort.")
    second = svc.applications.create("researcher", ["A-9"], ANSWERS)
    svc.applications.submit("researcher", second.id)
    svc.applications.approve("member-a", second.id, T0 + 30 * DAY)
    svc.applications.revoke("chair-a", second.id, "Data shared outside the project.")
    subjects = {m["Subject"].split("] ")[1].split(":")[0]: m.get_content() for _, m in inbox.wait(5)}
    assert "Reason given: Name the cohort." in subjects["Your application was returned for changes"]
    assert "Reason given: Data shared outside the project." in subjects["Your access was revoked"]


def test_a_refused_send_is_retried_until_the_server_takes_it(
    svc: DacServices, smtp: tuple[Inbox, int], store: Store
) -> None:
    inbox, _ = smtp
    inbox.refuse = 2
    app = svc.applications.create("researcher", ["EGAD-A1"], ANSWERS)
    svc.applications.submit("researcher", app.id)
    (delivered,) = inbox.wait(1)
    assert "New application to review" in delivered[1]["Subject"]
    (mailer,) = svc.notifiers
    assert mailer.flush() and mailer.sent == 1 and mailer.given_up == 0


def test_a_mail_server_that_is_down_never_blocks_or_fails_a_decision(
    tmp_path: Path, store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    down = settings_with(tmp_path, free_port(), attempts=2)  # nothing listens there
    svc = services(down, store.kernel, clock=clock)  # type: ignore[attr-defined]
    app = svc.applications.create("researcher", ["EGAD-A1"], ANSWERS)
    started = time.monotonic()
    svc.applications.submit("researcher", app.id)
    decided = svc.applications.approve("member-a", app.id, T0 + 30 * DAY)
    assert decided.state == "approved" and time.monotonic() - started < 5  # not waiting for the mail
    (mailer,) = svc.notifiers
    assert mailer.flush() and mailer.given_up == 2 and mailer.sent == 0
    assert "given up after 2 attempts" in caplog.text and SMTP_PASSWORD not in caplog.text


def test_remind_tells_holders_of_expiring_grants_once_with_a_link_to_renew(
    settings: SettingsWithDac, svc: DacServices, smtp: tuple[Inbox, int], capsys: pytest.CaptureFixture[str]
) -> None:
    inbox, _ = smtp
    now = int(time.time())
    soon = svc.grants.grant("chair-a", GrantRequest("researcher", "EGAD-A1", end=now + 5 * DAY))
    svc.grants.grant("chair-a", GrantRequest("researcher-2", "EGAD-A1", end=now + 200 * DAY))

    def remind() -> int:
        parser = argparse.ArgumentParser(prog="ga4gh-broker")
        register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["applications", "remind", "--as", "chair-a", "--days", "30"])
        return int(args.handler(Context(args=args, _settings=settings)) or 0)

    assert remind() == 0 and "reminded 1 holder(s)" in capsys.readouterr().out
    ((recipients, message),) = inbox.wait(1)
    assert recipients == ["researcher@example.org"] and "EGAD-A1 ends soon" in message["Subject"]
    assert f"{ISSUER.rstrip('/')}/account/apply?datasets=EGAD-A1" in message.get_content()
    assert soon.identity_id == "researcher"
    assert remind() == 0 and "reminded 0 holder(s)" in capsys.readouterr().out  # once per grant and end
