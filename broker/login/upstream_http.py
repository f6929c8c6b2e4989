"""Bounded HTTP exchanges with an upstream OpenID Provider (discovery, token, userinfo).

An upstream is configured by the operator, but whoever runs it (or its DNS, or a network
in between) may misbehave; a login must then fail quickly and cleanly, never hang a worker
or fill its memory (THREAT-MODEL RP-10, FT-10). So every exchange here is fenced:

- the URL passes :func:`broker.trust.fetch.check_url` (https; plain http only to a loopback
  host and only with ``trust.fetch.allow_http_loopback``; no userinfo, fragment, backslash
  or control character), checked right before the request;
- our session ignores proxy variables and ``.netrc`` and keeps no cookies; redirects are
  never followed (a 3xx is a failure);
- time: the whole exchange, headers and body, must finish within ``timeout_seconds``. The
  request runs in its own thread and the caller waits at most that long: a server that
  drips its headers (which no socket timeout bounds) is abandoned, and the abandoned
  thread ends at its next socket timeout;
- size: a ``Content-Length`` above ``max_bytes`` is refused before reading, and the body
  is read in pieces and dropped as soon as it passes ``max_bytes``; only
  ``Content-Encoding: identity`` is accepted, so nothing is ever decompressed;
- content: JSON bodies are parsed by :func:`broker.core.jose.loads_strict` (no duplicate
  members, bounded depth, no NaN) and must be objects.

Errors are :class:`UpstreamHttpError` with a machine-readable ``reason``; messages never
carry the body, a token or a secret.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import requests
import urllib3

from broker.core.jose import JoseError, loads_strict
from broker.errors import BrokerError
from broker.trust.fetch import BoundedReadError, FetchError, check_url, new_session, read_bounded

USER_AGENT = "ga4gh-broker-login"
#: How much longer than the exchange's own deadline the caller waits for its thread.
WAIT_MARGIN_SECONDS = 0.5


class UpstreamHttpError(BrokerError):
    """An exchange with the upstream failed; ``reason`` is a machine-readable code.

    Reasons: ``bad_url``, ``timeout``, ``connection``, ``tls``, ``redirect``, ``too_large``,
    ``compressed``, ``bad_status``, ``bad_content_type``, ``bad_json``.
    """

    status = 502
    code = "upstream_failed"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class HttpLimits:
    """Bounds of one exchange: the whole of it within ``timeout_seconds``, at most ``max_bytes`` read."""

    timeout_seconds: float
    max_bytes: int
    allow_http_loopback: bool
    max_json_depth: int = 16


@dataclass(frozen=True)
class UpstreamResponse:
    """A response read within the limits: status, media type (lower case, no parameters), body."""

    status: int
    media_type: str
    body: bytes

    def json_object(self, max_depth: int) -> dict[str, Any]:
        """The body as a strict JSON object, else :class:`UpstreamHttpError` (``bad_json``)."""
        try:
            value = loads_strict(self.body, max_depth, "response")
        except JoseError as exc:
            raise UpstreamHttpError("bad_json", exc.detail) from None
        if not isinstance(value, dict):
            raise UpstreamHttpError("bad_json", "the response is not a JSON object")
        return value


def exchange(
    method: str,
    url: str,
    limits: HttpLimits,
    *,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> UpstreamResponse:
    """One bounded request (see the module docstring); any status is returned, the caller judges it."""
    try:
        check_url(url, limits.allow_http_loopback)
    except FetchError as exc:
        raise UpstreamHttpError("bad_url", str(exc)) from None
    session = new_session()
    outcome: Future[UpstreamResponse] = Future()
    deadline = time.monotonic() + limits.timeout_seconds

    def run() -> None:
        try:
            outcome.set_result(_request(session, method, url, limits, headers or {}, form, deadline))
        except BaseException as exc:  # handed to the waiting caller, never lost
            outcome.set_exception(exc)

    threading.Thread(target=run, name="upstream-http", daemon=True).start()
    try:
        return outcome.result(timeout=limits.timeout_seconds + WAIT_MARGIN_SECONDS)
    except FutureTimeout:
        session.close()
        raise UpstreamHttpError("timeout", f"no complete answer within {limits.timeout_seconds} s") from None


def _request(
    session: requests.Session,
    method: str,
    url: str,
    limits: HttpLimits,
    headers: dict[str, str],
    form: dict[str, str] | None,
    deadline: float,
) -> UpstreamResponse:
    sent = {"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": USER_AGENT, **headers}
    timeout = (limits.timeout_seconds, limits.timeout_seconds)
    try:
        with session.request(
            method, url, data=form, headers=sent, allow_redirects=False, stream=True, timeout=timeout
        ) as response:
            return _read(response, limits.max_bytes, deadline)
    except requests.exceptions.SSLError:
        raise UpstreamHttpError("tls", "TLS failure (certificate not trusted or handshake failed)") from None
    except (requests.exceptions.Timeout, urllib3.exceptions.ReadTimeoutError, TimeoutError):
        raise UpstreamHttpError("timeout", f"no answer within {limits.timeout_seconds} s") from None
    except requests.exceptions.ConnectionError:
        raise UpstreamHttpError("connection", "connection failed") from None
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise UpstreamHttpError("connection", f"request failed ({exc.__class__.__name__})") from None
    finally:
        session.close()


def _read(response: requests.Response, max_bytes: int, deadline: float) -> UpstreamResponse:
    status = response.status_code
    if 300 <= status < 400:
        raise UpstreamHttpError("redirect", f"HTTP {status} redirect: not followed")
    media = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    kinds = {"bad_length": "bad_content_type"}
    try:
        body = read_bounded(response, max_bytes, deadline)
    except BoundedReadError as exc:
        raise UpstreamHttpError(kinds.get(exc.kind, exc.kind), str(exc)) from None
    return UpstreamResponse(status=status, media_type=media, body=body)


def require_json(response: UpstreamResponse, max_depth: int, what: str) -> dict[str, Any]:
    """A 200 ``application/json`` object, else :class:`UpstreamHttpError` naming ``what``."""
    if response.status != 200:
        raise UpstreamHttpError("bad_status", f"{what} answered HTTP {response.status}")
    if response.media_type != "application/json":
        shown = response.media_type[:60] or "none"
        raise UpstreamHttpError("bad_content_type", f"{what} answered Content-Type {shown!r}, not application/json")
    return response.json_object(max_depth)
