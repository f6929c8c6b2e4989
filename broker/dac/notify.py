"""E-mail about applications: submitted (to the DAC), returned, approved, rejected, revoked, comments.

:class:`EmailNotifier` is an application-service notice hook (:class:`~broker.dac.applications.Notice`).
The hook only puts the notice on a queue, so a decision never waits for, or fails because of,
the mail server: one sender thread per process (started on the first notice, never at import)
writes the messages and sends each through SMTP, retrying a failed send ``attempts`` times with a
doubling wait, then logging that it gave up (without the message body or any credential).

What a message holds: what happened, the application's title and datasets, the reason the
committee gave, and the address of the page to open. Never a token, a password, a CSRF value or
an identity's linked upstream subjects: a link only, and the reader logs in to see more.
"""

from __future__ import annotations

import logging
import queue
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import urlencode

from broker.dac.applications import Notice
from broker.dac.identities import IdentityLookup, email_of
from broker.dac.members import Roles
from broker.dac.records import Grant
from broker.dac.settings import NotificationSettings

log = logging.getLogger("broker.dac.notify")

#: Subjects of the application notices (the expiry reminder is :meth:`EmailNotifier.remind`).
SUBJECTS = {
    "submitted": "New application to review",
    "returned": "Your application was returned for changes",
    "approved": "Your application was approved",
    "rejected": "Your application was rejected",
    "revoked": "Your access was revoked",
    "comment": "New message about an application",
}


@dataclass(frozen=True)
class Mail:
    """One message to send: recipients, subject and plain-text body."""

    to: tuple[str, ...]
    subject: str
    body: str


#: Sends one message or raises (smtplib errors, OSError); replaced in tests of the retry logic only.
Transport = Callable[[Mail], None]


class EmailNotifier:
    """Turns notices into e-mail and sends them in the background with retries (see the module docstring)."""

    def __init__(
        self,
        settings: NotificationSettings,
        issuer: str,
        roles: Roles,
        identities: IdentityLookup,
        *,
        product: str = "GA4GH broker",
        transport: Transport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.base = issuer.rstrip("/")
        self.roles = roles
        self.identities = identities
        self.product = product
        self.transport: Transport = transport or self._smtp
        self.sleep = sleep
        self._queue: queue.Queue[Mail | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self.given_up = 0

    # ------------------------------------------------------------------ the hook

    def __call__(self, notice: Notice) -> None:
        """Queue the mail for ``notice`` (never blocks, never raises for a mail problem)."""
        mail = self.compose(notice)
        if mail is None:
            return
        self._start()
        self._queue.put(mail)

    def compose(self, notice: Notice) -> Mail | None:
        """The message for ``notice``, or None when nobody is to be told."""
        app = notice.application
        from_applicant_side = self.roles.role(notice.actor, app.dac) is None
        to_dac = notice.event == "submitted" or (notice.event == "comment" and from_applicant_side)
        if to_dac:
            people = [m.identity_id for m in self.roles.members(app.dac)]
            link = f"{self.base}/dac/applications/{app.id}"
        else:
            people = [app.applicant]
            link = f"{self.base}/account/applications/{app.id}"
        emails = {email_of(self.identities, who) for who in people if who != notice.actor}
        if not to_dac:
            emails |= {e for e in app.co_applicants if e != email_of(self.identities, notice.actor)}
        recipients = tuple(sorted(e for e in emails if e))
        if not recipients:
            return None
        subject = f"[{self.product}] {SUBJECTS.get(notice.event, 'Application update')}: {app.title or app.id}"
        lines = [
            f"{SUBJECTS.get(notice.event, 'Application update')}.",
            "",
            f"Application: {app.title or '(untitled)'}",
            f"Datasets: {', '.join(app.datasets)}",
            f"State: {app.state}",
        ]
        if notice.reason and notice.event != "comment":
            lines.append(f"Reason given: {notice.reason}")
        if notice.event == "comment":
            lines.append("A message was added to the application's thread.")
        lines += ["", f"Open it here (you will be asked to log in): {link}", ""]
        return Mail(recipients, subject[:200], "\n".join(lines))

    def remind(self, grant: Grant) -> bool:
        """Queue the "your access ends soon" mail for ``grant`` (with the link to apply again); False
        when the holder has no e-mail."""
        email = email_of(self.identities, grant.identity_id)
        if not email:
            return False
        end = datetime.fromtimestamp(grant.end, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        link = f"{self.base}/account/apply?{urlencode({'datasets': grant.dataset})}"
        body = "\n".join(
            [
                f"Your access to {grant.dataset} ends on {end}.",
                "",
                f"To keep access, apply for a renewal before then (you will be asked to log in): {link}",
                "",
            ]
        )
        self._start()
        self._queue.put(Mail((email,), f"[{self.product}] Your access to {grant.dataset} ends soon"[:200], body))
        return True

    # ------------------------------------------------------------------ the sender

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="dac-mail", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            mail = self._queue.get()
            try:
                if mail is None:
                    return
                self._deliver(mail)
            finally:
                self._queue.task_done()

    def _deliver(self, mail: Mail) -> None:
        wait = self.settings.retry_seconds
        for attempt in range(1, self.settings.attempts + 1):
            try:
                self.transport(mail)
                self.sent += 1
                return
            except (smtplib.SMTPException, OSError) as exc:
                log.warning(
                    "e-mail %r to %d recipient(s): attempt %d of %d failed (%s)",
                    mail.subject,
                    len(mail.to),
                    attempt,
                    self.settings.attempts,
                    exc.__class__.__name__,
                )
                if attempt < self.settings.attempts:
                    self.sleep(wait)
                    wait *= 2
        self.given_up += 1
        log.error("e-mail %r given up after %d attempts", mail.subject, self.settings.attempts)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued message was sent or given up (commands call it before exiting)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self._queue.unfinished_tasks

    def _smtp(self, mail: Mail) -> None:
        s = self.settings
        assert s.smtp_host is not None
        message = EmailMessage()
        message["From"] = s.sender
        message["To"] = ", ".join(mail.to)
        message["Subject"] = mail.subject
        message["Message-ID"] = make_msgid(domain="ga4gh-broker")
        message.set_content(mail.body)
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if s.security == "tls":
            client = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.timeout_seconds, context=context)
        else:
            client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_seconds)
        with client:
            if s.security == "starttls":
                client.starttls(context=context)
            if s.username and s.password is not None:
                client.login(s.username, s.password.get_secret_value())
            client.send_message(message)


def notifiers(
    settings: NotificationSettings, issuer: str, roles: Roles, identities: IdentityLookup, product: str
) -> Sequence[EmailNotifier]:
    """The notifier the settings ask for: one when an SMTP host is set, none otherwise."""
    if settings.smtp_host is None:
        return ()
    return (EmailNotifier(settings, issuer, roles, identities, product=product),)
