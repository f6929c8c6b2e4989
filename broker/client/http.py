"""The client's one HTTP layer: bounded, and careful with credentials.

- Every request has a connect and a read timeout; JSON answers are read up to
  :data:`MAX_JSON_BYTES` and must be a JSON object.
- Tokens only travel over https, or plain http to a loopback address (a broker on this
  machine, as in development and tests): :func:`check_url` refuses anything else before a
  request is made.
- Each request carries an explicit ``auth`` object, so ``requests`` never adds a ``.netrc``
  credential (it does so only when ``auth`` is None), while proxy settings from the
  environment still apply.
- Text from a server is untrusted: :func:`printable` removes control characters (terminal
  escape sequences included) before anything is shown.
"""

from __future__ import annotations

import ipaddress
import json
import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlsplit

import requests
from requests.auth import AuthBase

MAX_JSON_BYTES = 4 * 1024 * 1024
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
USER_AGENT = "ga4gh-broker-client"

# Exit codes of the commands.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class ClientError(Exception):
    """A failure a person can act on: ``code`` for programs, ``message`` for people, ``exit`` status."""

    def __init__(self, code: str, message: str, exit_status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_status = exit_status


class Bearer(AuthBase):
    """``Authorization: Bearer`` (set as auth, so no ``.netrc`` credential replaces it)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:  # never show the token in a traceback or a log
        return "Bearer(<hidden>)"


class Basic(AuthBase):
    """HTTP Basic client authentication (RFC 6749 2.3.1: form-encoded id and secret)."""

    def __init__(self, client_id: str, secret: str) -> None:
        self._auth = requests.auth.HTTPBasicAuth(_form_encode(client_id), _form_encode(secret))

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        signed: requests.PreparedRequest = self._auth(request)
        return signed

    def __repr__(self) -> str:
        return "Basic(<hidden>)"


class NoAuth(AuthBase):
    """No credential at all (and so none from ``.netrc`` either)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


def _form_encode(value: str) -> str:
    return quote_plus(value)


def is_loopback_host(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str = "URL") -> str:
    """``url`` if tokens may be sent to it (https, or http to loopback); else :class:`ClientError`."""
    if not isinstance(url, str) or len(url) > 2048:
        raise ClientError("bad_url", f"The {what} is not a usable URL.", EXIT_USAGE)
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and is_loopback_host(parts.hostname):
        return url
    raise ClientError(
        "insecure_url",
        f"The {what} {printable(url)} is neither https nor on this machine; tokens are never sent there.",
        EXIT_USAGE,
    )


def printable(text: object, limit: int = 500) -> str:
    """Server text made safe to print: control and format characters removed, length bounded."""
    out = "".join(c for c in str(text)[: limit * 2] if c in " \t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs"))
    return out if len(out) <= limit else out[: limit - 1] + "…"


@dataclass
class Http:
    """A ``requests`` session with the client's rules; one per command (thread-safe for our use)."""

    session: requests.Session

    @classmethod
    def create(cls) -> Http:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return cls(session)

    def request(
        self, method: str, url: str, *, auth: AuthBase | None = None, stream: bool = False, **kwargs: Any
    ) -> requests.Response:
        """One request to a checked URL, never following a redirect to somewhere tokens must not go."""
        check_url(url)
        try:
            return self.session.request(
                method,
                url,
                auth=auth or NoAuth(),
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                allow_redirects=False,
                stream=stream,
                **kwargs,
            )
        except requests.exceptions.SSLError as exc:
            raise ClientError("tls_error", f"TLS failed for {printable(url)}: {printable(exc, 200)}") from None
        except requests.exceptions.Timeout:
            raise ClientError("timeout", f"{printable(url)} did not answer in time.") from None
        except requests.exceptions.RequestException as exc:
            raise ClientError("unreachable", f"Cannot reach {printable(url)} ({exc.__class__.__name__}).") from None

    def json(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any], requests.Response]:
        """Status, the JSON object body ({} when there is none or it is not JSON) and the response."""
        response = self.request(method, url, stream=True, **kwargs)
        try:
            body = read_json(response)
        finally:
            response.close()
        return response.status_code, body, response


def read_json(response: requests.Response, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The response's JSON object, read up to ``limit`` bytes; {} for anything else."""
    data = bytearray()
    try:
        for chunk in response.iter_content(65536):
            data += chunk
            if len(data) > limit:
                raise ClientError("answer_too_large", f"The server's answer is larger than {limit} bytes.")
    except requests.exceptions.RequestException:
        raise ClientError("broken_answer", "The server's answer broke off.") from None
    try:
        value = json.loads(bytes(data))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
