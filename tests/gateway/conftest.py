"""Gateway fixtures: a data folder, a real nginx (upstream file server and the example front),
and the gateway itself on a real HTTP server in a thread."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.gateway.service import AuditEvent
from broker.gateway.settings import DatasetSettings, DataStoreSettings, GatewaySettings
from tests.gateway.support import (
    EXAMPLES,
    Grant,
    Nginx,
    ServerThread,
    TableAuthorizer,
    build_app,
    render,
    upstream_server_conf,
)
from tests.support.parts import free_port

UPSTREAM_KEY = "upstream-secret-key-0123456789"
TOKENS = {
    "tok-ds1": Grant(
        "alice@example.org", frozenset({"ds1", "off1", "web1", "weboff", "webredirect", "webbroken", "hmb1"})
    ),
    "tok-ds2": Grant("bob@example.org", frozenset({"ds2"})),
    "tok-none": Grant("carol@example.org", frozenset()),
}


@dataclass
class Files:
    root: Path
    small: bytes
    nested: bytes
    spaced: bytes
    secret: bytes
    outside: bytes


@pytest.fixture(scope="session")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("store")
    rnd = random.Random(7)
    small = rnd.randbytes(100_003)
    nested = rnd.randbytes(4096)
    spaced = rnd.randbytes(777)
    secret = b"ds2 secret " * 100
    outside = b"outside every dataset"
    (root / "ds1" / "dir").mkdir(parents=True)
    (root / "ds2").mkdir()
    (root / "ds1" / "small.bin").write_bytes(small)
    (root / "ds1" / "dir" / "nested.bin").write_bytes(nested)
    (root / "ds1" / "name with space & ü.bin").write_bytes(spaced)
    (root / "ds1" / "empty.bin").write_bytes(b"")
    (root / "ds2" / "secret.bin").write_bytes(secret)
    (root / "outside.bin").write_bytes(outside)
    (root / "hmb1").mkdir()  # dataset hmb1: only for a declared purpose (TableAuthorizer.purposes)
    (root / "hmb1" / "cohort.bin").write_bytes(nested)
    (root / "ds1" / "link-out").symlink_to(root / "ds2" / "secret.bin")
    (root / "ds1" / "link-etc").symlink_to("/etc/hostname")
    (root / "ds1" / "link-dir").symlink_to(root / "ds2")
    (root / "ds1" / "link-in").symlink_to(root / "ds1" / "small.bin")
    os.mkfifo(root / "ds1" / "fifo")
    with open(root / "ds1" / "big.bin", "wb") as f:  # sparse: 256 MiB of zeros, no disk used
        f.truncate(256 * 1024 * 1024)
    return Files(root, small, nested, spaced, secret, outside)


@dataclass
class Stack:
    """The session's real parts: nginx upstream + example front, and the gateway."""

    files: Files
    gateway: ServerThread
    authorizer: TableAuthorizer
    settings: GatewaySettings
    nginx: Nginx
    upstream_port: int
    front_port: int
    audit: list[AuditEvent]

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def front(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    def upstream_log(self) -> list[str]:
        path = self.nginx.directory / "upstream.log"
        return path.read_text().splitlines() if path.exists() else []


def stack_settings(root: Path, upstream_port: int, **overrides: object) -> GatewaySettings:
    stores = {
        "local": DataStoreSettings(kind="directory", path=str(root), offload_location="/_gateway/local/"),
        "archive": DataStoreSettings(
            kind="http",
            base_url=f"http://127.0.0.1:{upstream_port}/",
            headers={"X-Api-Key": UPSTREAM_KEY},
            offload_location="/_gateway/archive/",
        ),
    }
    datasets = {
        "ds1": DatasetSettings(store="local", prefix="ds1"),
        "ds2": DatasetSettings(store="local", prefix="ds2"),
        "off1": DatasetSettings(store="local", prefix="ds1", mode="offload"),
        "web1": DatasetSettings(store="archive", prefix="ds1"),
        "weboff": DatasetSettings(store="archive", prefix="ds1", mode="offload"),
        "webredirect": DatasetSettings(store="archive", prefix="redirect"),
        "webbroken": DatasetSettings(store="archive", prefix="broken"),
        "hmb1": DatasetSettings(store="local", prefix="hmb1"),
    }
    values: dict[str, object] = {
        "stores": stores,
        "datasets": datasets,
        "decision_prefix": "/files/",
        "cors_origins": ["https://viewer.example"],
    }
    values.update(overrides)
    return GatewaySettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack(files: Files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    upstream_port, front_port = free_port(), free_port()
    settings = stack_settings(files.root, upstream_port)
    authorizer = TableAuthorizer(dict(TOKENS), purposes={"hmb1": "DUO:0000006"})
    audit: list[AuditEvent] = []
    app = build_app(settings, authorizer, tmp_path_factory.mktemp("gwdata"), audit=audit.append)
    gateway = ServerThread(app)
    nginx_dir = tmp_path_factory.mktemp("nginx")
    front = render(
        EXAMPLES / "gateway-server.conf",
        {
            "LISTEN": f"127.0.0.1:{front_port}",
            "GATEWAY_ADDR": f"127.0.0.1:{gateway.port}",
            "LOCAL_STORE_ROOT": f"{files.root}/",
            "ARCHIVE_URL": f"http://127.0.0.1:{upstream_port}/",
            "ARCHIVE_API_KEY": UPSTREAM_KEY,
            "FILES_ROOT": f"{files.root}/",
        },
    )
    upstream = (
        "log_format upstream_rec '$request_method $request_uri|auth=$http_authorization|cookie=$http_cookie"
        "|key=$http_x_api_key|range=$http_range';\n"
        + upstream_server_conf(upstream_port, files.root).replace(
            "root ", f"access_log {nginx_dir}/upstream.log upstream_rec;\n    root ", 1
        )
    )
    nginx = Nginx(nginx_dir, {"front": front, "upstream": upstream}).start()
    with gateway:
        try:
            nginx.wait(upstream_port, front_port)
            yield Stack(files, gateway, authorizer, settings, nginx, upstream_port, front_port, audit)
        finally:
            nginx.stop()


AUTH = {"Authorization": "Bearer tok-ds1"}
