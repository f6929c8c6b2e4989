"""A real ``ga4gh-broker serve`` for the availability tests: settings, a dataset, a passport.

The broker serves one dataset ``ds1`` from a directory store (a large file, so slow readers
have something to read slowly) under a policy that admits a ControlledAccessGrants visa from
our own DAC source. The test signs that visa and the passport carrying it with the broker's
own key ring (file storage, read from the same data directory), exactly as the broker itself
would, so a decision request exercises the whole path: JOSE, the verifier, the policy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.support.parts import free_port

BROKER = str(Path(sys.executable).parent / "ga4gh-broker")
DAC = "https://dac.availability.example/"
LARGE_FILE_BYTES = 8 * 1024 * 1024
POLICY = f"""
datasets:
  ds1:
    description: The availability tests' dataset, for holders of a grant from the test DAC
    read:
      visa:
        type: ControlledAccessGrants
        value: const:{DAC}ds1
        source: const:{DAC}
        by: dac
"""


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without BROKER_* overrides, so only the test's settings file counts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env.update(extra or {})
    return env


@dataclass
class Broker:
    """One ``ga4gh-broker serve`` process with its own directory, settings file and log."""

    directory: Path
    port: int = field(default_factory=free_port)
    settings: dict[str, Any] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    dev: bool = False

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.directory / "broker.yaml"

    @property
    def log(self) -> Path:
        return self.directory / "serve.log"

    def write(self) -> None:
        """The settings file, the policy and the dataset's files."""
        data_root = self.directory / "objects"
        (data_root / "ds1").mkdir(parents=True, exist_ok=True)
        large = data_root / "ds1" / "large.bin"
        if not large.exists():
            large.write_bytes(os.urandom(LARGE_FILE_BYTES))
        policies = self.directory / "policies"
        policies.mkdir(exist_ok=True)
        (policies / "datasets.yaml").write_text(POLICY)
        base: dict[str, Any] = {
            "issuer": self.issuer,
            "data_dir": str(self.directory / "data"),
            "policy": {"directory": str(policies), "watch": False},
            "gateway": {
                "stores": {"local": {"kind": "directory", "path": str(data_root)}},
                "datasets": {"ds1": {"store": "local", "prefix": "ds1"}},
            },
        }
        merged = _merge(base, self.settings)
        self.config.write_text(yaml.safe_dump(merged))

    def start(self, wait: bool = True, extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Broker:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.write()
        argv = [BROKER, "-c", str(self.config), "serve", "--bind", f"127.0.0.1:{self.port}", *extra_args]
        if self.dev:
            argv.append("--dev")
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=clean_env(env))
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, seconds: float = 40) -> None:
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while True:
            assert self.process.poll() is None, (
                f"serve exited with {self.process.returncode}:\n{self.log_text()[-3000:]}"
            )
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            assert time.monotonic() < deadline, f"/readyz never answered 200:\n{self.log_text()[-3000:]}"
            time.sleep(0.1)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def passport(self, sub: str = "alice", dataset: str = "ds1") -> str:
        """A passport from this broker, carrying its own grant visa for ``dataset``."""
        from broker.core.issue import mint_passport, mint_visa
        from broker.core.models import CONTROLLED_ACCESS_GRANTS, VisaObject
        from broker.settings import load_settings
        from broker.store import open_kernel
        from tests.support.keys import open_ring

        settings = load_settings(self.config, environ={})
        kernel = open_kernel(settings.store, settings.sqlite_path)
        try:
            ring = open_ring(settings, kernel, auto_maintain_seconds=None)
            ring.signing_key()  # read the keys now, while the store is open
        finally:
            kernel.close()
        now = int(time.time())
        visa = VisaObject(
            type=CONTROLLED_ACCESS_GRANTS, asserted=now - 60, value=f"{DAC}{dataset}", source=DAC, by="dac"
        )
        token = mint_visa(ring, self.issuer, sub, visa, exp=now + 3600)
        return mint_passport(ring, self.issuer, sub, [token], lifetime=3600, audience=self.issuer.rstrip("/"))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
