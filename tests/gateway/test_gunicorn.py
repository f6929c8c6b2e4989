"""The gateway in its own processes: gunicorn (the production server), and nginx in front
of it with the shipped configuration. Streaming by sendfile with flat worker memory, and
request smuggling through both (THREAT-MODEL PX-07, PX-12, PX-13)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.gateway.conftest import AUTH, Files
from tests.gateway.support import EXAMPLES, ROOT, Nginx, raw_exchange, render, wait_port
from tests.support.parts import free_port, require_binary


@dataclass
class Deployment:
    gunicorn: subprocess.Popen[bytes]
    port: int
    front_port: int
    canary: Path

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.gunicorn.pid}/task/{self.gunicorn.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def canary_hits(self) -> int:
        return len(self.canary.read_text().splitlines()) if self.canary.exists() else 0


@pytest.fixture(scope="module")
def deployment(files: Files, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require_binary("nginx", "nginx fronts gunicorn in the full-chain tests")
    work = tmp_path_factory.mktemp("gunicorn")
    config = work / "config.json"
    canary = work / "canary.log"
    config.write_text(json.dumps({"root": str(files.root), "data_dir": str(work / "data"), "canary": str(canary)}))
    port, front_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            "1",
            "--worker-class",
            "sync",
            "--bind",
            f"127.0.0.1:{port}",
            "--access-logfile",
            "-",
            "--log-level",
            "warning",
            "tests.gateway.gunicorn_app:create()",
        ],
        cwd=ROOT,
        env={"GATEWAY_TEST_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    front = render(
        EXAMPLES / "gateway-server.conf",
        {
            "LISTEN": f"127.0.0.1:{front_port}",
            "GATEWAY_ADDR": f"127.0.0.1:{port}",
            "LOCAL_STORE_ROOT": f"{files.root}/",
            "ARCHIVE_URL": "http://127.0.0.1:9/",
            "ARCHIVE_API_KEY": "unused",
            "FILES_ROOT": f"{files.root}/",
        },
    )
    nginx = Nginx(work / "nginx", {"front": front}).start()
    try:
        wait_port(port, 20, process)
        nginx.wait(front_port)
        yield Deployment(process, port, front_port, canary)
    finally:
        nginx.stop()
        process.terminate()
        process.wait(10)


def test_gunicorn_streams_full_ranged_and_multipart(deployment: Deployment, files: Files) -> None:
    url = f"http://127.0.0.1:{deployment.port}/data/ds1/small.bin"
    r = requests.get(url, headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.content == files.small
    r = requests.get(url, headers={**AUTH, "Range": "bytes=1000-1999"}, timeout=10)
    assert r.status_code == 206 and r.content == files.small[1000:2000]
    r = requests.get(url, headers={**AUTH, "Range": "bytes=-10"}, timeout=10)
    assert r.content == files.small[-10:]
    r = requests.get(url, headers={**AUTH, "Range": "bytes=0-1,10-11"}, timeout=10)
    assert r.status_code == 206 and len(r.content) == int(r.headers["Content-Length"])
    assert requests.get(url, timeout=10).status_code == 401


def test_offload_through_nginx_in_front_of_gunicorn(deployment: Deployment, files: Files) -> None:
    r = requests.get(f"http://127.0.0.1:{deployment.front_port}/data/off1/small.bin", headers=AUTH, timeout=10)
    assert r.status_code == 200 and r.content == files.small and "nginx" in r.headers["Server"]


def _peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_px13_worker_memory_is_flat_from_small_to_256_mib_files(deployment: Deployment, files: Files) -> None:
    [worker] = deployment.worker_pids()
    base = f"http://127.0.0.1:{deployment.port}/data/ds1/"
    assert requests.get(base + "small.bin", headers=AUTH, timeout=10).status_code == 200
    after_small = _peak_kib(worker)
    total = 0
    with requests.get(base + "big.bin", headers=AUTH, timeout=60, stream=True) as r:
        for chunk in r.iter_content(1 << 20):
            total += len(chunk)
    assert total == 256 * 2**20
    after_big = _peak_kib(worker)
    assert after_big - after_small < 8 * 1024, (after_small, after_big)
    assert after_big < 64 * 1024


# ------------------------------------------------------------------ PX-07 request smuggling

CANARY = b"GET /admin/canary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
SMUGGLING = {
    "cl_and_te": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_xchunked": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te_chunked_identity": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n"
    b"\r\n0\r\n\r\n",
    "te_leading_space_name": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\n Transfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    "te_tab": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\tchunked\r\nContent-Length: 3\r\n"
    b"\r\n0\r\n\r\n",
    "te_duplicate": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Transfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "two_content_lengths": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
    b"Content-Length: 39\r\n\r\n",
    "content_length_plus": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nContent-Length: +39\r\n\r\n",
    "space_before_colon": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nContent-Length : 39\r\n\r\n",
    "bare_lf": b"GET /data/ds1/small.bin HTTP/1.1\nHost: x\nContent-Length: 0\n\n",
    "chunk_size_overflow": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"ffffffffffffffffffff1\r\n",
    "chunk_extension": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'0;ext="x\r\n\r\n',
    "get_with_body": b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 39\r\n\r\n",
}


def _exchange(port: int, payload: bytes) -> list[int]:
    responses, _ = raw_exchange(port, payload, timeout=1)
    return [r.status for r in responses]


@pytest.mark.parametrize("name", list(SMUGGLING))
@pytest.mark.parametrize("via", ["gunicorn", "nginx_then_gunicorn"])
def test_px07_smuggled_request_never_reaches_the_app(deployment: Deployment, name: str, via: str) -> None:
    port = deployment.port if via == "gunicorn" else deployment.front_port
    before = deployment.canary_hits()
    statuses = _exchange(port, SMUGGLING[name] + CANARY)
    time.sleep(0.05)
    assert deployment.canary_hits() == before, f"{via}/{name}: smuggled request executed ({statuses})"
    assert len(statuses) <= 1 or all(s >= 400 for s in statuses[1:]), statuses
    assert all(s != 200 for s in statuses[:1]) or name == "get_with_body", statuses


def test_px07_canary_itself_is_counted(deployment: Deployment) -> None:
    before = deployment.canary_hits()
    assert _exchange(deployment.port, CANARY) == [200]
    assert deployment.canary_hits() == before + 1


def test_px12_slow_clients_do_not_block_the_nginx_front(deployment: Deployment, files: Files) -> None:
    slow = []
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", deployment.front_port))
            s.sendall(b"GET /data/ds1/small.bin HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
            slow.append(s)
        started = time.monotonic()
        r = requests.get(f"http://127.0.0.1:{deployment.front_port}/data/ds1/small.bin", headers=AUTH, timeout=10)
        assert r.status_code == 200 and r.content == files.small
        assert time.monotonic() - started < 2
    finally:
        for s in slow:
            s.close()
