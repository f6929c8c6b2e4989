"""A misbehaving upstream IdP over real HTTP, for what oidc-provider will not do (THREAT-MODEL RP-03..RP-05, RP-10).

One werkzeug server in a thread hosts several *tenants*, each an issuer of its own
(``<base>/t/<name>``) with its own behaviour, so a broker can have one connector per tenant
and each discovery document stays fixed for the broker's cache. A tenant's ``mode`` (changed
by the test between logins) says how the authorization, token and userinfo answers go wrong.
It keeps the protocol honest otherwise: client authentication and the PKCE verifier are
checked at the token endpoint, and the ID token carries the nonce the broker sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from broker.keys.jwk import public_jwk

CLIENT_ID = "broker"
CLIENT_SECRET = "fake-idp-secret-" + "f" * 24
SUB = "fake-user-1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Tenant:
    """One issuer on the fake server: its discovery overrides and its current misbehaviour."""

    name: str
    discovery: dict[str, Any] = field(default_factory=dict)  # merged over the honest document
    mode: str = "good"
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)  # code -> what /authorize saw


class FakeIdp:
    """The server; ``hits[(tenant, endpoint)]`` counts requests."""

    def __init__(self) -> None:
        self.tenants: dict[str, Tenant] = {}
        self.hits: Counter[tuple[str, str]] = Counter()
        self.es_keys = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in ("es-1", "es-2")}
        self.rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.stray_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.stray_es = ec.generate_private_key(ec.SECP256R1())
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.base = f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeIdp:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()

    def tenant(self, name: str, **discovery: Any) -> Tenant:
        self.tenants[name] = Tenant(name, dict(discovery))
        return self.tenants[name]

    def issuer(self, name: str) -> str:
        return f"{self.base}/t/{name}"

    # ------------------------------------------------------------------ WSGI

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        parts = request.path.split("/", 3)  # "", "t", name, rest
        tenant = self.tenants.get(parts[2]) if len(parts) == 4 and parts[1] == "t" else None
        if tenant is None:
            return Response("no such tenant", 404)(environ, start_response)
        endpoint = parts[3]
        self.hits[(tenant.name, endpoint)] += 1
        handler = {
            ".well-known/openid-configuration": self._discovery,
            "authorize": self._authorize,
            "token": self._token,
            "userinfo": self._userinfo,
            "jwks": self._jwks,
        }.get(endpoint)
        response = handler(tenant, request) if handler else Response("not found", 404)
        return response(environ, start_response)

    def _discovery(self, tenant: Tenant, request: Request) -> Response:
        iss = self.issuer(tenant.name)
        document = {
            "issuer": iss,
            "authorization_endpoint": f"{iss}/authorize",
            "token_endpoint": f"{iss}/token",
            "userinfo_endpoint": f"{iss}/userinfo",
            "jwks_uri": f"{iss}/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic"],
            "authorization_response_iss_parameter_supported": True,
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
        }
        document.update(tenant.discovery)
        return _json(document)

    def _jwks(self, tenant: Tenant, request: Request) -> Response:
        keys = [
            {**public_jwk(k.public_key()), "kid": kid, "alg": "ES256", "use": "sig"} for kid, k in self.es_keys.items()
        ]
        keys.append({**public_jwk(self.rsa_key.public_key()), "kid": "rs-1", "alg": "RS256", "use": "sig"})
        return _json({"keys": keys})

    def _authorize(self, tenant: Tenant, request: Request) -> Response:
        args = request.args
        code = secrets.token_urlsafe(24)
        tenant.pending[code] = {
            "nonce": args.get("nonce"),
            "challenge": args.get("code_challenge"),
            "redirect_uri": args.get("redirect_uri"),
            "client_id": args.get("client_id"),
        }
        params = {"code": code, "state": args.get("state", ""), "iss": self.issuer(tenant.name)}
        if tenant.mode == "iss_missing":
            del params["iss"]
        elif tenant.mode == "iss_wrong":
            params["iss"] = self.issuer("someone-else")
        elif tenant.mode == "error_evil":
            params = {
                "error": "access_denied",
                "error_description": "<script>alert(1)</script>\r\nX-Evil: 1",
                "state": args.get("state", ""),
                "iss": self.issuer(tenant.name),
            }
        response = Response("", 302)
        response.headers["Location"] = f"{args.get('redirect_uri')}?{urlencode(params)}"
        return response

    def _token(self, tenant: Tenant, request: Request) -> Response:
        auth = request.authorization
        if auth is None or (auth.username, auth.password) != (CLIENT_ID, CLIENT_SECRET):
            return _json({"error": "invalid_client"}, 401)
        seen = tenant.pending.pop(request.form.get("code", ""), None)
        verifier = request.form.get("code_verifier", "")
        if (
            seen is None
            or _b64(hashlib.sha256(verifier.encode()).digest()) != seen["challenge"]
            or request.form.get("redirect_uri") != seen["redirect_uri"]
        ):
            return _json({"error": "invalid_grant"}, 400)
        mode = tenant.mode
        if mode == "html200":
            return Response("<html><body>Welcome!</body></html>", 200, content_type="text/html")
        if mode == "status500":
            return _json({"error": "server_error"}, 500)
        if mode == "drip":
            return Response(_drip(), 200, content_type="application/json", direct_passthrough=True)
        if mode == "stall":
            time.sleep(4)
        if mode == "huge":
            return Response(_huge(), 200, content_type="application/json", direct_passthrough=True)
        body: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": self.id_token(tenant, seen["nonce"]),
        }
        if mode == "mac":
            body["token_type"] = "mac"
        if mode == "no_id_token":
            del body["id_token"]
        return _json(body)

    def _userinfo(self, tenant: Tenant, request: Request) -> Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _json({"error": "invalid_token"}, 401)
        if tenant.mode == "userinfo_other_sub":
            return _json({"sub": "someone-else", "name": "Mallory"})
        if tenant.mode == "userinfo_no_sub":
            return _json({"name": "Mallory"})
        return _json({"sub": SUB, "name": "Fake User", "eduperson_scoped_affiliation": ["member@fake.example"]})

    # ------------------------------------------------------------------ ID tokens

    def id_token(self, tenant: Tenant, nonce: str | None) -> str:
        """An ID token as the tenant's mode has it (honest unless the mode names a fault)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer(tenant.name),
            "sub": SUB,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
        }
        header: dict[str, Any] = {"kid": "es-1", "typ": "JWT"}
        key: Any = self.es_keys["es-1"]
        alg = "ES256"
        mode = tenant.mode
        if mode == "wrong_iss":
            claims["iss"] = self.issuer("someone-else")
        elif mode == "wrong_aud":
            claims["aud"] = "another-client"
        elif mode == "no_sub":
            del claims["sub"]
        elif mode == "no_iat":
            del claims["iat"]
        elif mode == "iat_future":
            claims.update(iat=now + 3600, exp=now + 7200)
        elif mode == "expired":
            claims.update(iat=now - 7200, exp=now - 3600)
        elif mode == "wrong_nonce":
            claims["nonce"] = "not-the-nonce-we-were-sent"
        elif mode == "azp_mismatch":
            claims.update(aud=[CLIENT_ID, "another-client"], azp="another-client")
        elif mode == "multi_aud_no_azp":
            claims["aud"] = [CLIENT_ID, "another-client"]
        elif mode == "kid_absent_multiple_keys":
            del header["kid"]
        elif mode == "bad_sig_es256":
            key = self.stray_es
        elif mode == "bad_sig_rs256":
            key, alg, header["kid"] = self.stray_rsa, "RS256", "rs-1"
        elif mode == "good_rs256":
            key, alg, header["kid"] = self.rsa_key, "RS256", "rs-1"
        elif mode == "typ_access_token":
            header["typ"] = "at+jwt"
        elif mode == "hs256":
            return jwt.encode(claims, CLIENT_SECRET, algorithm="HS256", headers={"kid": "es-1"})
        elif mode == "alg_none":
            head = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
            return f"{head}.{_b64(json.dumps(claims).encode())}."
        return jwt.encode(claims, key, algorithm=alg, headers=header)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status, content_type="application/json")


def _drip() -> Iterator[bytes]:
    """A JSON body one byte at a time, for far longer than any sane timeout."""
    for _ in range(60):
        yield b" "
        time.sleep(0.25)
    yield b"{}"


def _huge() -> Iterator[bytes]:
    """About 10 MB of JSON, with no Content-Length."""
    yield b'{"access_token": "'
    chunk = b"a" * 65536
    for _ in range(160):
        yield chunk
    yield b'", "token_type": "Bearer"}'
