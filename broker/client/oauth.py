"""OAuth and OpenID Connect as a command-line client: discovery, device flow, refresh,
token exchange and userinfo, against any broker that publishes a discovery document.

- Discovery (OpenID Connect Discovery 1.0 section 4): ``<broker>/.well-known/openid-configuration``;
  its ``issuer`` must be the broker URL the user gave (section 4.3), and every endpoint must
  be https (or loopback http).
- Device flow (RFC 8628): the user code and the verification URL are printed, a browser is
  opened when one can be (never required); polling waits ``interval`` seconds between tries,
  5 more after each ``slow_down`` (section 3.5), and stops at ``expires_in``.
- Refresh (RFC 6749 section 6) when the access token has less than :data:`REFRESH_MARGIN`
  seconds left; a broker that rotates refresh tokens returns a new one, which is saved at
  once (atomically, under the file lock, after re-reading the file in case another command
  refreshed first).
- Token exchange (RFC 8693, GA4GH AAI 1.2): ``requested_token_type`` is the GA4GH passport
  token type; ``resource`` narrows the passport's audience.

The client is public by default (:data:`DEFAULT_CLIENT_ID`, no secret: a secret shipped with a
command-line tool is no secret). A site may register a confidential client for it; its secret
is then read from a file at login and kept in the token file.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from broker.client.credentials import CredentialStore, Login
from broker.client.http import EXIT_USAGE, Basic, Bearer, ClientError, Http, check_url, printable

DEFAULT_CLIENT_ID = "ga4gh-cli"
SCOPES = "openid ga4gh_passport_v1 profile email"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
PASSPORT_TOKEN_TYPE = "urn:ga4gh:params:oauth:token-type:passport"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
REFRESH_MARGIN = 60  # seconds of life left below which an access token is renewed first
MAX_INTERVAL = 60
MAX_DEVICE_WAIT = 30 * 60


def not_logged_in(broker: str | None) -> ClientError:
    where = broker or "URL"
    return ClientError("not_logged_in", f"Not logged in; run: ga4gh-broker login --broker {where}")


@dataclass(frozen=True)
class Discovery:
    """The endpoints of a broker, from its discovery document."""

    issuer: str
    token_endpoint: str
    device_authorization_endpoint: str | None
    userinfo_endpoint: str | None


def discover(http: Http, broker: str) -> Discovery:
    """Fetch and check ``<broker>/.well-known/openid-configuration``."""
    check_url(broker, "broker URL")
    url = broker.rstrip("/") + "/.well-known/openid-configuration"
    status, doc, _ = http.json("GET", url)
    if status != 200 or not doc:
        raise ClientError("no_discovery", f"{printable(broker)} has no OpenID discovery document (HTTP {status}).")
    issuer = doc.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != broker.rstrip("/"):
        raise ClientError(
            "issuer_mismatch",
            f"The discovery document of {printable(broker)} names another issuer ({printable(issuer)}); refusing it.",
        )
    token = doc.get("token_endpoint")
    if not isinstance(token, str):
        raise ClientError("no_token_endpoint", "The broker's discovery document names no token endpoint.")
    device = doc.get("device_authorization_endpoint")
    userinfo = doc.get("userinfo_endpoint")
    return Discovery(
        issuer=issuer,
        token_endpoint=check_url(token, "token endpoint"),
        device_authorization_endpoint=check_url(device, "device endpoint") if isinstance(device, str) else None,
        userinfo_endpoint=check_url(userinfo, "userinfo endpoint") if isinstance(userinfo, str) else None,
    )


def _client_auth(client_id: str, secret: str | None, form: dict[str, str]) -> Basic | None:
    """Basic authentication for a confidential client; ``client_id`` in the form for a public one."""
    if secret:
        return Basic(client_id, secret)
    form["client_id"] = client_id
    return None


def _oauth_error(body: dict[str, Any], status: int) -> tuple[str, str]:
    code = body.get("error") if isinstance(body.get("error"), str) else f"http_{status}"
    text = body.get("error_description") if isinstance(body.get("error_description"), str) else ""
    return printable(code, 60), printable(text, 300)


def _expires_at(body: dict[str, Any], now: float) -> int:
    lifetime = body.get("expires_in")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
        lifetime = 300  # RFC 6749 5.1 leaves it optional: assume short, refresh early
    return int(now) + min(lifetime, 10 * 365 * 86400)


def _check_token_answer(body: dict[str, Any]) -> str:
    token = body.get("access_token")
    if not isinstance(token, str) or not token or len(token) > 64 * 1024:
        raise ClientError("bad_token_answer", "The broker's token answer has no usable access token.")
    if str(body.get("token_type", "")).lower() != "bearer":
        raise ClientError("bad_token_answer", "The broker's token answer is not a Bearer token.")
    return token


@dataclass
class DeviceLogin:
    """Runs the device flow; ``sleep`` and ``clock`` are injectable so the waits are testable."""

    http: Http
    out: TextIO
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    open_browser: bool = True

    def run(self, discovery: Discovery, client_id: str, secret: str | None, scope: str = SCOPES) -> Login:
        if discovery.device_authorization_endpoint is None:
            raise ClientError("no_device_flow", "This broker does not offer the device flow (RFC 8628).")
        form = {"scope": scope}
        auth = _client_auth(client_id, secret, form)
        status, body, _ = self.http.json("POST", discovery.device_authorization_endpoint, data=form, auth=auth)
        if status != 200:
            code, text = _oauth_error(body, status)
            hint = f" Is the client {client_id!r} registered at this broker?" if code in ("invalid_client",) else ""
            raise ClientError("device_start_failed", f"The broker refused to start the login ({code}: {text}).{hint}")
        device_code, user_code = body.get("device_code"), body.get("user_code")
        verify_uri = body.get("verification_uri")
        if not all(isinstance(v, str) and v for v in (device_code, user_code, verify_uri)):
            raise ClientError("bad_device_answer", "The broker's device answer lacks a code or a URL.")
        assert isinstance(device_code, str) and isinstance(user_code, str) and isinstance(verify_uri, str)
        complete = body.get("verification_uri_complete")
        interval = body.get("interval", 5)
        interval = min(max(interval if isinstance(interval, int) and not isinstance(interval, bool) else 5, 1), 60)
        lifetime = body.get("expires_in", 600)
        lifetime = min(lifetime if isinstance(lifetime, int) and lifetime > 0 else 600, MAX_DEVICE_WAIT)
        print(f"To log in, open {printable(verify_uri)}", file=self.out)
        print(f"and enter the code: {printable(user_code, 40)}", file=self.out)
        if isinstance(complete, str):
            print(f"(or open {printable(complete)} directly)", file=self.out)
        self.out.flush()
        if self.open_browser and isinstance(complete, str) and complete.startswith(("https://", "http://")):
            _try_browser(complete)
        deadline = self.clock() + lifetime
        poll = {"grant_type": DEVICE_GRANT, "device_code": device_code}
        while True:
            self.sleep(interval)
            if self.clock() > deadline:
                raise ClientError("login_expired", "The code expired before the login was approved; run login again.")
            form = dict(poll)
            auth = _client_auth(client_id, secret, form)
            started = time.time()
            status, body, _ = self.http.json("POST", discovery.token_endpoint, data=form, auth=auth)
            if status == 200:
                token = _check_token_answer(body)
                refresh = body.get("refresh_token")
                return Login(
                    broker=discovery.issuer,
                    client_id=client_id,
                    token_endpoint=discovery.token_endpoint,
                    userinfo_endpoint=discovery.userinfo_endpoint,
                    access_token=token,
                    expires_at=_expires_at(body, started),
                    scope=str(body.get("scope", scope)),
                    refresh_token=refresh if isinstance(refresh, str) else None,
                    client_secret=secret,
                )
            code, text = _oauth_error(body, status)
            if code == "authorization_pending":
                continue
            if code == "slow_down":
                interval = min(interval + 5, MAX_INTERVAL)  # RFC 8628 3.5
                continue
            if code == "access_denied":
                raise ClientError("login_denied", "The login was denied in the browser.")
            if code == "expired_token":
                raise ClientError("login_expired", "The code expired before the login was approved; run login again.")
            raise ClientError("login_failed", f"The broker refused the login ({code}: {text}).")


def _try_browser(url: str) -> None:
    """Open ``url`` in a graphical browser if this session has one; never fail, never block on a text browser."""
    if not sys.stdout.isatty():
        return
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return
    with contextlib.suppress(Exception):  # a browser is a convenience; the printed URL is the way in
        webbrowser.open(url, new=2)


class TokenSource:
    """A login's access token, renewed when needed; shared by the threads of one command."""

    def __init__(self, http: Http, store: CredentialStore, login: Login, clock: Callable[[], float] = time.time):
        self.http = http
        self.store = store
        self.login = login
        self.clock = clock
        self._lock = threading.Lock()

    @property
    def broker(self) -> str:
        return self.login.broker

    def access_token(self) -> str:
        """A token with at least :data:`REFRESH_MARGIN` seconds to live (refreshing first if needed)."""
        with self._lock:
            if self.login.expires_at - self.clock() < REFRESH_MARGIN:
                self._refresh(self.login.access_token)
            return self.login.access_token

    def bearer(self) -> Bearer:
        return Bearer(self.access_token())

    def refresh_after_401(self, rejected: str) -> bool:
        """The broker refused ``rejected``: renew once (unless another thread already did). True if renewed."""
        with self._lock:
            if self.login.access_token != rejected:
                return True
            if not self.login.refresh_token:
                return False
            self._refresh(rejected)
            return True

    def _refresh(self, stale: str) -> None:
        with self.store.locked():
            current = self.store.login_for(self.login.broker)
            if current is not None and current.access_token != stale and current.expires_at - self.clock() > 0:
                self.login = current  # another command refreshed meanwhile: its tokens are ours
                if current.expires_at - self.clock() >= REFRESH_MARGIN:
                    return
            login = current or self.login
            if not login.refresh_token:
                raise ClientError(
                    "login_expired", f"Your login has expired; run: ga4gh-broker login --broker {login.broker}"
                )
            form = {"grant_type": "refresh_token", "refresh_token": login.refresh_token}
            auth = _client_auth(login.client_id, login.client_secret, form)
            started = self.clock()
            status, body, _ = self.http.json("POST", check_url(login.token_endpoint), data=form, auth=auth)
            if status != 200:
                code, _text = _oauth_error(body, status)
                raise ClientError(
                    "login_expired",
                    f"Your login is no longer accepted ({code}); run: ga4gh-broker login --broker {login.broker}",
                )
            token = _check_token_answer(body)
            refresh = body.get("refresh_token")
            login.access_token = token
            login.expires_at = _expires_at(body, started)
            if isinstance(refresh, str) and refresh:
                login.refresh_token = refresh  # rotation: the old one is spent
            if isinstance(body.get("scope"), str):
                login.scope = body["scope"]
            self.store.save(login, make_current=False)
            self.login = login


def load_tokens(http: Http, store: CredentialStore, broker: str | None) -> TokenSource:
    login = store.login_for(broker)
    if login is None:
        raise not_logged_in(broker)
    return TokenSource(http, store, login)


def userinfo(tokens: TokenSource) -> dict[str, Any]:
    """The OpenID Connect userinfo of the logged-in user (one renewal on a 401)."""
    endpoint = tokens.login.userinfo_endpoint
    if endpoint is None:
        raise ClientError("no_userinfo", "This broker has no userinfo endpoint.")
    for attempt in (1, 2):
        token = tokens.access_token()
        status, body, _ = tokens.http.json("GET", check_url(endpoint), auth=Bearer(token))
        if status == 200:
            return body
        if status == 401 and attempt == 1 and tokens.refresh_after_401(token):
            continue
        if status == 401:
            raise ClientError(
                "login_expired", f"Your login is no longer accepted; run: ga4gh-broker login --broker {tokens.broker}"
            )
        code, text = _oauth_error(body, status)
        raise ClientError("userinfo_failed", f"The broker refused userinfo ({code}: {text}).")
    raise AssertionError("unreachable")


def exchange_for_passport(tokens: TokenSource, resource: str | None) -> str:
    """A passport JWT for the logged-in user (RFC 8693 token exchange)."""
    login = tokens.login
    form = {
        "grant_type": EXCHANGE_GRANT,
        "subject_token": tokens.access_token(),
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": PASSPORT_TOKEN_TYPE,
    }
    if resource is not None:
        if not resource.startswith(("https://", "http://")) or "#" in resource or len(resource) > 2000:
            raise ClientError("bad_resource", "--resource must be an absolute http(s) URL without a fragment.", 2)
        form["resource"] = resource
    auth = _client_auth(login.client_id, login.client_secret, form)
    status, body, _ = tokens.http.json("POST", check_url(login.token_endpoint), data=form, auth=auth)
    if status == 200:
        passport = body.get("access_token")
        if body.get("issued_token_type") != PASSPORT_TOKEN_TYPE or not isinstance(passport, str) or not passport:
            raise ClientError("bad_passport_answer", "The broker's answer is not a passport.")
        return passport
    code, text = _oauth_error(body, status)
    if code in ("invalid_client", "unauthorized_client"):
        raise ClientError(
            "passport_needs_client_auth",
            f"This broker gives passports only to clients it can authenticate ({code}: {text}). "
            f"The client {login.client_id!r} is public; ask the broker's operator for a confidential client "
            "and log in with --client-id ID --client-secret-file FILE.",
        )
    raise ClientError("passport_refused", f"The broker refused the passport ({code}: {text}).")


def read_secret_file(path: str) -> str:
    """A client secret from a file (first line), never from the command line (it would show in ps)."""
    try:
        with open(path, encoding="utf-8") as fh:
            secret = fh.readline(4097).strip()
    except OSError as exc:
        raise ClientError(
            "bad_secret_file", f"Cannot read the client secret file: {exc.strerror}.", EXIT_USAGE
        ) from None
    if not secret or len(secret) > 4096:
        raise ClientError("bad_secret_file", "The client secret file is empty or too long.", EXIT_USAGE)
    return secret
