"""A broker on several "machines" for the deployment tests: hosts on their own loopback address, one nginx.

Each :class:`Host` is one ``ga4gh-broker serve`` (the production server, its own worker
processes) in a network namespace of its own (tests.deploy.network), or else bound to a loopback
address of its own (127.0.0.2, 127.0.0.3, ...), with its own data folder, as one machine of a
deployment would be; every host reads the same settings (same
issuer, same PostgreSQL store, signing keys sealed in the store), so together they are one
broker. :class:`Front` is a real nginx on 127.0.0.1 balancing over them, the way an operator puts
one in front: a host that refuses or drops a connection is skipped for a while, and a GET that
failed on one host is tried on the next (never a POST, which may have been done).

:meth:`Host.crash` ends a host as a power cut would: SIGKILL to the server and every one of its
processes at once, nothing flushed, no goodbye to nginx or PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.gateway.support import Nginx
from tests.support.parts import free_port
from tests.support.processes import stop_process

BROKER = str(Path(sys.executable).parent / "ga4gh-broker")
START_SECONDS = 60.0


def clean_env() -> dict[str, str]:
    """This environment without BROKER_* overrides, so only the settings file counts."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ga4gh-broker -c CONFIG ARGS`` as an operator runs it on a host."""
    return subprocess.run(
        [BROKER, "-c", str(config), *args], capture_output=True, text=True, timeout=120, check=False, env=clean_env()
    )


@dataclass
class Host:
    """One machine: ``ga4gh-broker serve`` on ``address``, with its own folder, settings file and log."""

    directory: Path
    address: str
    settings: dict[str, Any]
    workers: int = 2
    port: int = 0
    netns: str | None = None  # the network namespace it runs in; None: this one
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def config(self) -> Path:
        return self.directory / "broker.yaml"

    @property
    def log(self) -> Path:
        return self.directory / "serve.log"

    def write(self) -> Path:
        """This host's settings file: the shared settings with its own data folder."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = {**self.settings, "data_dir": str(self.directory / "data")}
        self.config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return self.config

    def start(self) -> Host:
        """Start ``serve`` (not waiting: see :meth:`wait_ready`)."""
        self.port = self.port or free_port(self.address)
        self.write()
        argv = ["ip", "netns", "exec", self.netns] if self.netns else []  # exec: the server keeps the pid
        argv += [BROKER, "-c", str(self.config), "serve", "--bind", f"{self.address}:{self.port}"]
        argv += ["--workers", str(self.workers)]
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=clean_env())
        return self

    def wait_ready(self, seconds: float = START_SECONDS) -> None:
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while True:
            assert self.process.poll() is None, f"serve on {self.address} exited:\n{self.log_text()[-3000:]}"
            with suppress(requests.RequestException):
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            assert time.monotonic() < deadline, f"{self.url}/readyz never answered 200:\n{self.log_text()[-3000:]}"
            time.sleep(0.2)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def pids(self) -> list[int]:
        """The server process and its workers."""
        assert self.process is not None
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        found = [int(p) for p in children.read_text().split()] if children.exists() else []
        return [pid, *found]

    def crash(self) -> None:
        """SIGKILL the server and all its workers at once (the machine is gone)."""
        assert self.process is not None
        with suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGSTOP)  # no new worker while we look
        for pid in self.pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.process, grace=15)


FRONT_CONF = """
upstream brokers {{
{servers}
    keepalive 16;
}}

server {{
    listen 127.0.0.1:{port};
    server_name _;
    large_client_header_buffers 4 32k;
    merge_slashes off;

    location / {{
        proxy_pass http://brokers;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 2s;
        proxy_read_timeout 30s;
        # A host that refused or dropped the connection: the next one gets the request, for
        # GET and HEAD only (nginx never repeats a POST unless told to; the DAC client retries).
        proxy_next_upstream error timeout;
        proxy_next_upstream_tries 2;
    }}
}}
"""


@dataclass
class Front:
    """A real nginx on 127.0.0.1 in front of every host (round robin, a failed host out for 5 s)."""

    directory: Path
    hosts: list[Host]
    port: int = field(default_factory=free_port)
    nginx: Nginx | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Front:
        servers = "\n".join(f"    server {h.address}:{h.port} max_fails=1 fail_timeout=5s;" for h in self.hosts)
        self.nginx = Nginx(self.directory, {"front": FRONT_CONF.format(servers=servers, port=self.port)}).start()
        self.nginx.wait(self.port)
        return self

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
