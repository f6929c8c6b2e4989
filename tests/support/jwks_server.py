"""A real JWKS server for tests: HTTPS with a trustme CA (or plain http), on a free loopback port.

Every request and every accepted connection is counted, so a test can prove that a fetch
did or did not happen ("zero packets", THREAT-MODEL JWT-05). Routes are set per path and
can be changed while the server runs (key rotation, outages, redirects), and can misbehave
on purpose: status, headers, no Content-Length, a delay before answering, a body dripped
byte by byte, headers dripped byte by byte, a generated body of any size.

Use::

    ca = trustme.CA()
    with JwksServer(ca=ca) as server:          # https://127.0.0.1:<port>
        key = TestKey.ec("k1")
        server.serve_jwks({"keys": [key.public_jwk()]})
        session = server.session()            # requests.Session trusting the CA
        ...
        assert server.hits("/jwks.json") == 1

``JwksServer()`` without a CA serves plain http; ``host="::1"`` listens on IPv6 loopback.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import requests
import trustme
from cryptography.hazmat.primitives.asymmetric import ec, rsa


@dataclass
class Route:
    """How the server answers one path."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    delay: float = 0.0  # seconds before the status line
    drip: float = 0.0  # seconds between body bytes (one byte at a time)
    header_drip: float = 0.0  # seconds between bytes of the status line and headers
    stream: Callable[[], Iterable[bytes]] | None = None  # a generated body instead of ``body``


@dataclass(frozen=True)
class TestKey:
    """A signing key pair for tests, with its public JWK."""

    kid: str
    alg: str
    private: Any

    __test__ = False  # not a pytest test class

    @classmethod
    def ec(cls, kid: str) -> TestKey:
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def rsa(cls, kid: str, bits: int = 2048) -> TestKey:
        return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @property
    def public(self) -> Any:
        return self.private.public_key()

    def public_jwk(self, **extra: Any) -> dict[str, Any]:
        """The public JWK with ``kid``, ``alg`` and ``use: sig``; ``extra`` overrides or adds members."""
        algo = jwt.algorithms.ECAlgorithm if self.alg == "ES256" else jwt.algorithms.RSAAlgorithm
        jwk = dict(algo.to_jwk(self.public, as_dict=True))
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        jwk.update(extra)
        return {k: v for k, v in jwk.items() if v is not None}

    def private_jwk(self) -> dict[str, Any]:
        algo = jwt.algorithms.ECAlgorithm if self.alg == "ES256" else jwt.algorithms.RSAAlgorithm
        return {**algo.to_jwk(self.private, as_dict=True), "kid": self.kid, "alg": self.alg}

    def sign(self, payload: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(payload, self.private, algorithm=self.alg, headers={"kid": self.kid, **(headers or {})})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: JwksServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        route = owner._hit(path, self.headers)
        if route is None:
            self.send_error(404)
            return
        with contextlib.suppress(OSError):  # the client hung up (as a capped reader should)
            self._answer(owner, path, route)

    def _answer(self, owner: JwksServer, path: str, route: Route) -> None:
        if route.delay and owner._stopping.wait(route.delay):
            return
        body = route.body if route.stream is None else None
        head = [f"HTTP/1.0 {route.status} {_reason(route.status)}"]
        headers = dict(route.headers)
        if body is not None and route.content_length and "Content-Length" not in headers:
            headers["Content-Length"] = str(len(body))
        head += [f"{k}: {v}" for k, v in headers.items()]
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if route.header_drip:
            for i in range(len(raw_head)):
                self.wfile.write(raw_head[i : i + 1])
                self.wfile.flush()
                if owner._stopping.wait(route.header_drip):
                    return
        else:
            self.wfile.write(raw_head)
        chunks: Iterable[bytes] = [body] if body is not None else route.stream()  # type: ignore[misc]
        for chunk in chunks:
            if route.drip:
                for i in range(len(chunk)):
                    self.wfile.write(chunk[i : i + 1])
                    self.wfile.flush()
                    owner._sent(path, 1)
                    if owner._stopping.wait(route.drip):
                        return
            else:
                self.wfile.write(chunk)
                owner._sent(path, len(chunk))
        self.wfile.flush()

    def do_POST(self) -> None:
        self.server.owner._hit(self.path.split("?", 1)[0], self.headers)
        self.send_error(405)


def _reason(status: int) -> str:
    return BaseHTTPRequestHandler.responses.get(status, ("Status",))[0]


class JwksServer:
    """A threaded HTTP(S) server the test owns; counts hits per path and accepted connections."""

    def __init__(self, ca: trustme.CA | None = None, host: str = "127.0.0.1") -> None:
        self.ca = ca
        self.host = host
        self._lock = threading.Lock()
        self._routes: dict[str, Route] = {}
        self._hits: dict[str, int] = {}
        self._bytes: dict[str, int] = {}
        self._connections = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._context: ssl.SSLContext | None = None
        self.ca_path: str | None = None  # PEM bundle of the CA (https only): give it to ``verify=``
        self.last_headers: dict[str, str] = {}

    # ------------------------------------------------------------------ life cycle

    def start(self) -> JwksServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_cls = type("_BoundServer", (_Server,), {"address_family": family})
        server = server_cls((self.host, 0), _Handler, bind_and_activate=True)
        server.owner = self
        if self.ca is not None:
            self._tmp = tempfile.TemporaryDirectory(prefix="jwks-ca-")
            self.ca_path = str(Path(self._tmp.name) / "ca.pem")
            self.ca.cert_pem.write_to_path(self.ca_path)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.ca.issue_cert("127.0.0.1", "localhost", "::1").configure_cert(context)
            self._context = context
        original_get_request = server.get_request

        def get_request() -> tuple[socket.socket, Any]:
            sock, addr = original_get_request()
            with self._lock:
                self._connections += 1
            if self._context is not None:
                sock = self._context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            return sock, addr

        server.get_request = get_request  # type: ignore[method-assign]
        original_finish = server.finish_request

        def finish_request(request: Any, client_address: Any) -> None:
            if isinstance(request, ssl.SSLSocket):
                request.settimeout(5)
                try:
                    request.do_handshake()
                except (ssl.SSLError, OSError):
                    return  # e.g. a client that does not trust our CA
            original_finish(request, client_address)

        server.finish_request = finish_request  # type: ignore[method-assign]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"jwks-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return int(self._server.server_address[1])

    @property
    def scheme(self) -> str:
        return "https" if self.ca is not None else "http"

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url(self, path: str = "/jwks.json") -> str:
        return self.base_url + path

    def session(self) -> requests.Session:
        """A requests session that trusts this server's CA (https) and ignores proxy settings."""
        session = requests.Session()
        session.trust_env = False
        if self.ca_path is not None:
            session.verify = self.ca_path
        return session

    # ------------------------------------------------------------------ behaviour

    def serve(self, path: str, route: Route) -> None:
        with self._lock:
            self._routes[path] = route

    def serve_jwks(
        self, jwks: Any, path: str = "/jwks.json", content_type: str = "application/json", status: int = 200
    ) -> None:
        body = jwks if isinstance(jwks, bytes) else json.dumps(jwks).encode()
        self.serve(path, Route(status=status, body=body, headers={"Content-Type": content_type}))

    def serve_keys(self, *keys: TestKey, path: str = "/jwks.json") -> None:
        self.serve_jwks({"keys": [k.public_jwk() for k in keys]}, path=path)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        self.serve(
            path, Route(status=status, headers={"Location": location, "Content-Type": "application/json"}, body=b"{}")
        )

    def remove(self, path: str) -> None:
        with self._lock:
            self._routes.pop(path, None)

    # ------------------------------------------------------------------ counters

    def hits(self, path: str | None = None) -> int:
        """Requests received for ``path`` (every path when None)."""
        with self._lock:
            return sum(self._hits.values()) if path is None else self._hits.get(path, 0)

    @property
    def connections(self) -> int:
        """TCP connections accepted (a refused-before-fetch URL must leave this at 0)."""
        with self._lock:
            return self._connections

    def bytes_sent(self, path: str) -> int:
        with self._lock:
            return self._bytes.get(path, 0)

    def reset_counts(self) -> None:
        with self._lock:
            self._hits.clear()
            self._bytes.clear()
            self._connections = 0

    def _hit(self, path: str, headers: Any) -> Route | None:
        with self._lock:
            self._hits[path] = self._hits.get(path, 0) + 1
            self.last_headers = {k: v for k, v in headers.items()}
            return self._routes.get(path)

    def _sent(self, path: str, n: int) -> None:
        with self._lock:
            self._bytes[path] = self._bytes.get(path, 0) + n
