"""Logging of a serving process: one handler, no credential in any line, one line per store outage.

:func:`logging_config` is the ``logging.config.dictConfig`` of ``serve`` (the server applies it in
its master and in every worker). It has one handler, on stderr, with two filters:

- :class:`RedactSecrets` rewrites every record, at every level and from every logger (ours, the
  server's, libraries'), so that no credential reaches the log: ``Authorization``/``Cookie``
  header values, ``Bearer``/``Basic`` credentials, anything shaped like a JWS or JWT, the values
  of query or form parameters that carry codes, tokens, signatures or secrets, and passwords in
  URLs. It applies to the message with its arguments and to the traceback text. It is the last
  line of defence, not the first: the access log never writes query strings, and no part of the
  broker logs a request's headers.
- :class:`QuietStoreOutage` keeps a store outage from flooding the log: records caused by
  :class:`~broker.store.base.StoreUnavailable` (a traceback per failed request, a warning per
  refused call) are dropped, except the two lines :mod:`broker.store.deadline` writes per outage
  (``broker.store.outage``), and at most one other line per ``interval`` seconds, without its
  traceback, saying how many were dropped since the last one.

Library loggers that print URLs or request lines (urllib3, werkzeug) stay at INFO or above even
when ``log_level`` is DEBUG: at DEBUG they print outbound URLs with their query strings.

The redaction patterns are written here rather than taken from a library because none fits
the broker's own parameter names (``user_code``, signed-URL ``sig``); they are tested against
every credential the broker handles (tests/availability/test_log_secrets.py).
"""

from __future__ import annotations

import logging
import logging.config
import re
import threading
import time
from typing import Any

from broker.store.base import StoreUnavailable

REDACTED = "[redacted]"
OUTAGE_LOGGER = "broker.store.outage"

# Parameter names whose values are credentials, in a query string, a form body or a JSON-ish dump.
SECRET_PARAMETERS = (
    "access_token",
    "actor_token",
    "api_key",
    "apikey",
    "assertion",
    "client_assertion",
    "client_secret",
    "code",
    "code_verifier",
    "device_code",
    "id_token",
    "id_token_hint",
    "key",
    "nonce",
    "password",
    "passwd",
    "refresh_token",
    "secret",
    "sig",
    "signature",
    "state",
    "subject_token",
    "token",
    "user_code",
    "x-amz-credential",
    "x-amz-security-token",
    "x-amz-signature",
)
_PARAM_NAMES = "|".join(re.escape(name) for name in sorted(SECRET_PARAMETERS, key=len, reverse=True))

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Header lines or dumps: Authorization: ..., 'Cookie': '...', proxy-authorization=...
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key|api-key)(['\"]?\s*[:=]\s*['\"]?)"
            r"[^\r\n'\",}]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    # Credentials by scheme anywhere in text.
    (re.compile(r"(?i)\b(bearer|basic|dpop|digest|negotiate)(\s+)[A-Za-z0-9._~+/=:-]{6,}"), rf"\1\2{REDACTED}"),
    # JWS / JWT compact serialisations (base64url of a JSON header starts with "ey").
    (re.compile(r"\bey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), REDACTED),
    # name=value where name is a credential parameter (query strings, form bodies, key=value logs).
    (
        re.compile(rf"(?i)(^|[?&;\s,(\[{{'\"])({_PARAM_NAMES})(['\"]?\s*[=:]\s*['\"]?)[^&\s'\",;)}}\]#]+"),
        rf"\1\2\3{REDACTED}",
    ),
    # user:password@ in URLs (redis://:pw@host, https://user:pw@host).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/\s@]*:)[^@\s/]+@"), rf"\1{REDACTED}@"),
)


def redact(text: str) -> str:
    """``text`` with every credential this module knows replaced by ``[redacted]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites each record's message and traceback text through :func:`redact` (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed format string must still be logged, and redacted
            message = f"{record.msg!r} {record.args!r}"
        record.msg = redact(message)
        record.args = None
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def about_store_outage(record: logging.LogRecord) -> bool:
    """True when ``record`` is caused by, or reports, a StoreUnavailable."""
    if record.exc_info and record.exc_info[1] is not None:
        seen: set[int] = set()
        exc: BaseException | None = record.exc_info[1]
        while exc is not None and id(exc) not in seen:
            if isinstance(exc, StoreUnavailable):
                return True
            seen.add(id(exc))
            exc = exc.__cause__ or exc.__context__
    args = record.args if isinstance(record.args, tuple) else ((record.args,) if record.args else ())
    for arg in args:
        if isinstance(arg, StoreUnavailable):
            return True
        if isinstance(arg, str) and arg in ("store_unavailable", "StoreUnavailable"):
            return True
    return False


class QuietStoreOutage(logging.Filter):
    """Drops records about a store outage but one per ``interval`` seconds (see the module docstring)."""

    def __init__(self, name: str = "", interval: float = 60.0) -> None:
        super().__init__(name)
        self.interval = interval
        self._lock = threading.Lock()
        self._last: float | None = None
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == OUTAGE_LOGGER or not about_store_outage(record):
            return True
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last < self.interval:
                self._dropped += 1
                return False
            dropped, self._dropped, self._last = self._dropped, 0, now
        summary = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            summary = f"{summary} ({record.exc_info[0].__name__})"
        held = f"{dropped} similar lines held back since the last one" if dropped else "similar lines held back"
        record.msg = f"{summary} [store unavailable; {held}, at most one a {self.interval:.0f} s is written]"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


def logging_config(level: str) -> dict[str, Any]:
    """The dictConfig of a serving process at ``level`` (DEBUG, INFO, WARNING or ERROR)."""
    quiet = level if level in ("WARNING", "ERROR") else "INFO"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "outage": {"()": QuietStoreOutage},
            "redact": {"()": RedactSecrets},
        },
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"},
            "access": {"format": "%(asctime)s ACCESS [%(process)d] %(message)s"},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "plain",
                "filters": ["outage", "redact"],
            },
            "access": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "access",
                "filters": ["redact"],
            },
        },
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "_granian": {"level": quiet, "handlers": ["stderr"], "propagate": False},
            "granian.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
            "werkzeug": {"level": quiet},
            "urllib3": {"level": quiet},
            "requests": {"level": quiet},
            "authlib": {"level": quiet},
            "redis": {"level": quiet},
            "asyncio": {"level": quiet},
        },
    }


def configure(level: str) -> None:
    """Apply :func:`logging_config` to this process."""

    logging.config.dictConfig(logging_config(level))
    logging.getLogger("broker.serve").debug("logging at %s, credentials redacted", level)
