"""One real ``ga4gh-broker demo`` process for the demo tests, in its own folder on a free port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.parts import free_port
from tests.support.processes import stop_process


@dataclass
class RunningDemo:
    folder: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def demo_command(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``ga4gh-broker ARGS`` as a user types it (no BROKER_* settings from the test's environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        check=False,
    )


@pytest.fixture(scope="session")
def running_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    """``ga4gh-broker demo --dir DIR --port P`` started as a user starts it, ready when /readyz answers."""
    home = tmp_path_factory.mktemp("demo")
    port = free_port()
    log_path = home / "demo.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed by stop_process
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "broker", "demo", "--dir", "the-demo", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=home,
        env=env,
    )
    demo = RunningDemo(home / "the-demo", port, process, log_path)
    try:
        deadline = time.monotonic() + 120  # first start: accounts (scrypt), files, keys on a busy machine
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the demo exited: {demo.output()[-3000:]}")
            try:
                if requests.get(demo.url + "readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the demo did not become ready: {demo.output()[-3000:]}")
        yield demo
    finally:
        stop_process(process, log)
