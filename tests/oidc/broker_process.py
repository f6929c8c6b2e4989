"""A real broker in its own process on a free loopback port, for the OIDC tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.support.parts import free_port
from tests.support.processes import stop_process


@dataclass
class BrokerProcess:
    """``ga4gh-broker serve`` (gunicorn, the production server) with its own data directory and settings."""

    directory: Path
    settings: dict[str, Any] = field(default_factory=dict)
    port: int = 0
    workers: int = 2
    process: subprocess.Popen[bytes] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self, path: str) -> str:
        return self.issuer.rstrip("/") + path

    @property
    def config_path(self) -> Path:
        return self.directory / "settings.yaml"

    def write_settings(self) -> None:
        data = {"issuer": self.issuer, "data_dir": str(self.directory / "data"), **self.settings}
        self.config_path.write_text(yaml.safe_dump(data), encoding="utf-8")

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``ga4gh-broker -c <settings> ARGS`` against this broker's data."""
        return subprocess.run(
            [sys.executable, "-m", "broker", "-c", str(self.config_path), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env=self._env(),
        )

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
        return env

    def start(self) -> BrokerProcess:
        self.port = self.port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.write_settings()
        log = open(self.directory / "broker.log", "wb")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "broker",
                "-c",
                str(self.config_path),
                "serve",
                "--workers",
                str(self.workers),
                "--bind",
                f"127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"broker exited: {self.log_text()[-2000:]}")
            try:
                if requests.get(self.url("/readyz"), timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"broker did not become ready: {self.log_text()[-2000:]}")

    def log_text(self) -> str:
        path = self.directory / "broker.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process, getattr(self, "_log", None))

    def discovery(self) -> dict[str, Any]:
        return json.loads(requests.get(self.url("/.well-known/openid-configuration"), timeout=5).text)
