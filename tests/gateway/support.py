"""Real parts for the gateway tests: servers in threads, a real nginx, a recording upstream,
raw-socket HTTP, and a table authorizer standing in for the passport engine (layer 1).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import socketserver
import string
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from broker.gateway.authorize import INVALID_TOKEN, MISSING_TOKEN, AccessDecision
from broker.gateway.service import AuditEvent
from broker.gateway.settings import GatewaySettings
from broker.gateway.wiring import init_app
from tests.support.parts import free_port, require_binary

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "nginx"


# --------------------------------------------------------------------------- authorizer


@dataclass
class Grant:
    subject: str
    datasets: frozenset[str]
    expires_at: int = 2_000_000_000


@dataclass
class TableAuthorizer:
    """Tokens to grants; records every question so tests can prove what was (not) asked.

    ``purposes`` names the one purpose a dataset demands (exact match, a stand-in for DUO
    reasoning); ``purposes_seen`` records the purpose of every question, in order.
    """

    tokens: dict[str, Grant]
    calls: list[tuple[str | None, str, str, tuple[str, ...]]] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    lock: threading.Lock = field(default_factory=threading.Lock)
    purposes: dict[str, str] = field(default_factory=dict)
    purposes_seen: list[str | None] = field(default_factory=list)

    def authorize(
        self,
        bearer: str | None,
        dataset: str,
        object_path: str,
        action: str = "read",
        *,
        passports: Sequence[str] = (),
        purpose: str | None = None,
    ) -> AccessDecision:
        with self.lock:
            self.calls.append((bearer, dataset, object_path, tuple(passports)))
            self.purposes_seen.append(purpose)
        if bearer == "explode":
            raise RuntimeError("authorizer bug")
        presented = ([bearer] if bearer is not None else []) + list(passports)
        if not presented:
            return AccessDecision.denied(401, MISSING_TOKEN, "A bearer token is required.")
        for token in presented:
            grant = self.tokens.get(token)
            if grant is None:
                return AccessDecision.denied(401, INVALID_TOKEN, "The token is not valid.")
            if grant.expires_at <= self.clock():
                return AccessDecision.denied(401, INVALID_TOKEN, "The token has expired.")
            if dataset in grant.datasets:
                wanted = self.purposes.get(dataset)
                if wanted is not None and purpose != wanted:
                    code = "purpose_missing" if purpose is None else "purpose_incompatible"
                    return AccessDecision.denied(
                        403, code, f"This dataset is for {wanted} only.", subject=grant.subject
                    )
                return AccessDecision.allowed(
                    grant.subject,
                    "visa_matched",
                    expires_at=grant.expires_at,
                    visas_used=(f"jti-{dataset}",),
                    basis={"rule": f"{dataset}-read"},
                )
        return AccessDecision.denied(
            403,
            "no_matching_visa",
            "No visa grants access to this dataset.",
            subject=self.tokens[presented[0]].subject,
            required={
                "dataset": dataset,
                "any_of": [{"type": "ControlledAccessGrants", "value": f"https://dac/{dataset}"}],
            },
        )


def build_app(
    settings: GatewaySettings,
    authorizer: Any,
    data_dir: Path | None = None,
    audit: Callable[[AuditEvent], None] | None = None,
) -> Flask:
    app = Flask("gateway-test")
    init_app(app, authorizer, settings, data_dir=data_dir, audit=audit)
    return app


# --------------------------------------------------------------------------- servers


class ServerThread:
    """A Werkzeug WSGI server on a free loopback port, in a thread (threaded requests)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.server: BaseWSGIServer = make_server("127.0.0.1", self.port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def wait_port(port: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def render(template: Path, values: dict[str, str]) -> str:
    """Fill ${NAME} placeholders (nginx's own $variables are left alone)."""
    return string.Template(template.read_text()).safe_substitute(values)


@dataclass
class Nginx:
    """A real nginx (Debian) with the example nginx.conf and the given server blocks."""

    directory: Path
    servers: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        binary = require_binary("nginx", "the gateway's offload and http-store modes run against a real nginx")
        self.directory.mkdir(parents=True, exist_ok=True)
        conf_dir = self.directory / "servers"
        conf_dir.mkdir(exist_ok=True)
        for name, text in self.servers.items():
            (conf_dir / f"{name}.conf").write_text(text)
        main = render(
            EXAMPLES / "nginx.conf",
            {
                "PREFIX": str(self.directory),
                "SERVER_CONF": str(conf_dir / "*.conf"),
                "USER_DIRECTIVE": "user root;" if os.geteuid() == 0 else "",
            },
        )
        conf = self.directory / "nginx.conf"
        conf.write_text(main)
        self.process = subprocess.Popen(
            [binary, "-p", str(self.directory), "-c", str(conf), "-e", str(self.directory / "error.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self

    def wait(self, *ports: int) -> None:
        for port in ports:
            try:
                wait_port(port, 10, self.process)
            except RuntimeError:
                raise RuntimeError(self.errors()) from None

    def errors(self) -> str:
        path = self.directory / "error.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def upstream_server_conf(port: int, root: Path) -> str:
    """An nginx file server used as the gateway's `http` store (a real upstream)."""
    return f"""
server {{
    listen 127.0.0.1:{port};
    root {root};
    location / {{ max_ranges 64; }}
    location /redirect/ {{ return 302 http://127.0.0.2:9/stolen; }}
    location /broken/ {{ return 500; }}
}}
"""


# --------------------------------------------------------------------------- raw HTTP


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool  # the body was delimited correctly (Content-Length met / last chunk seen)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def raw_exchange(port: int, payload: bytes, timeout: float = 5.0) -> tuple[list[RawResponse], bytes]:
    """Send bytes, read until the server closes; parse every response that came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = bytearray()
        try:
            while True:
                part = sock.recv(65536)
                if not part:
                    break
                data += part
        except TimeoutError:
            pass
        except ConnectionResetError:
            pass
    return parse_responses(bytes(data))


def raw_get(port: int, target: str, headers: dict[str, str] | None = None, method: str = "GET") -> RawResponse:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    responses, _ = raw_exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    assert len(responses) == 1, responses
    return responses[0]


def parse_responses(data: bytes, head_only: bool = False) -> tuple[list[RawResponse], bytes]:
    out: list[RawResponse] = []
    rest = data
    while rest.startswith(b"HTTP/"):
        head, sep, rest = rest.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        _, status, reason = [*lines[0].split(" ", 2), ""][:3]
        headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
        resp = RawResponse(int(status), reason, headers, b"", True)
        length = resp.header("Content-Length")
        if head_only or int(status) in (204, 304) or 100 <= int(status) < 200:
            pass
        elif (resp.header("Transfer-Encoding") or "").lower() == "chunked":
            body = bytearray()
            complete = False
            while True:
                size_line, sep, rest = rest.partition(b"\r\n")
                if not sep:
                    break
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    _, _, rest = rest.partition(b"\r\n")
                    complete = True
                    break
                body += rest[:size]
                if len(rest) < size + 2:
                    rest = b""
                    break
                rest = rest[size + 2 :]
            resp.body, resp.complete = bytes(body), complete
        elif length is not None:
            n = int(length)
            resp.body, rest = rest[:n], rest[n:]
            resp.complete = len(resp.body) == n
        else:
            resp.body, rest = rest, b""
        out.append(resp)
    return out, rest


# --------------------------------------------------------------------------- recording upstream


@dataclass
class Recorded:
    method: str
    target: str
    headers: list[tuple[str, str]]

    def names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


Handler = Callable[[Recorded, socket.socket], None]


class RecordingUpstream:
    """A raw-socket HTTP/1.1 server that records each request and answers via a handler.

    Raw sockets let a test send what no well-behaved server would: lying lengths, control
    characters in headers, a connection cut mid-body.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Recorded] = []
        recorder = self

        class _Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    part = sock.recv(65536)
                    if not part:
                        return
                    data += part
                head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
                method, target, _ = head[0].split(" ", 2)
                headers = [(k, v.strip()) for k, _, v in (line.partition(":") for line in head[1:])]
                rec = Recorded(method, target, headers)
                recorder.requests.append(rec)
                with contextlib.suppress(OSError):
                    recorder.handler(rec, sock)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> RecordingUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def respond(sock: socket.socket, status: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    sock.sendall(head.encode("latin-1") + body)
