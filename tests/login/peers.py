"""Real peers for the login tests: oidc-provider (tests/peers/idp.mjs) and a JWKS server of a visa issuer."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from broker.keys.jwk import public_jwk
from tests.support.parts import in_ci, require_binary
from tests.support.processes import stop_process

PEERS = Path(__file__).resolve().parents[1] / "peers"


def require_oidc_provider() -> str:
    """The node binary, once tests/peers has oidc-provider; else skip (fail under CI)."""
    node = require_binary("node", "the oidc-provider upstream IdP")
    if not (PEERS / "node_modules" / "oidc-provider").is_dir():
        message = "REAL PART MISSING: run `npm ci --prefix tests/peers`"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return node


@dataclass
class NodeIdp:
    """``node tests/peers/idp.mjs``: an upstream OpenID Provider on a free loopback port."""

    directory: Path
    clients: list[dict[str, Any]]
    accounts: dict[str, dict[str, Any]]
    issuer: str = ""
    process: subprocess.Popen[str] | None = None

    def start(self) -> NodeIdp:
        node = require_oidc_provider()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "idp.json"
        config.write_text(json.dumps({"clients": self.clients, "accounts": self.accounts}), encoding="utf-8")
        self._log = open(self.directory / "idp.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [node, str(PEERS / "idp.mjs"), str(config)], stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError("idp.mjs did not start: " + (self.directory / "idp.log").read_text())
        self.issuer = json.loads(line)["issuer"]
        return self

    def url(self, path: str) -> str:
        return self.issuer + path

    def stats(self) -> dict[str, int]:
        return requests.get(self.url("/__test/stats"), timeout=5).json()

    def rotate(self) -> str:
        return str(requests.post(self.url("/__test/rotate"), timeout=5).json()["kid"])

    def stop(self) -> None:
        stop_process(self.process, getattr(self, "_log", None))


class _JwksHandler(BaseHTTPRequestHandler):
    server: JwksServer

    def do_GET(self) -> None:
        self.server.hits += 1
        body = json.dumps(self.server.jwks).encode()
        if self.path != "/jwks.json":
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class JwksServer(ThreadingHTTPServer):
    """Serves one JWK Set at ``/jwks.json`` on loopback, counting hits."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        super().__init__(("127.0.0.1", 0), _JwksHandler)
        self.jwks = jwks
        self.hits = 0
        self.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/jwks.json"


@dataclass
class VisaIssuer:
    """A third-party visa issuer (e.g. a DAC's REMS) whose visas an upstream IdP hands out."""

    iss: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    kid: str = "visa-key-1"
    server: JwksServer | None = None

    def start(self) -> VisaIssuer:
        jwk = {**public_jwk(self.key.public_key()), "kid": self.kid, "alg": "ES256", "use": "sig"}
        self.server = JwksServer({"keys": [jwk]})
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def jku(self) -> str:
        assert self.server is not None
        return self.server.url

    def visa(self, sub: str, value: str, *, jku: str | None = None, lifetime: int = 3600) -> str:
        now = int(time.time())
        payload = {
            "iss": self.iss,
            "sub": sub,
            "iat": now,
            "exp": now + lifetime,
            "jti": f"visa-{sub}-{now}-{value[-6:]}",
            "ga4gh_visa_v1": {
                "type": "ControlledAccessGrants",
                "asserted": now - 60,
                "value": value,
                "source": "https://dac.test.example/",
                "by": "dac",
            },
        }
        headers = {"kid": self.kid, "jku": jku or self.jku, "typ": "vnd.ga4gh.visa+jwt"}
        return jwt.encode(payload, self.key, algorithm="ES256", headers=headers)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
