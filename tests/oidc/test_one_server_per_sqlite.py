"""Issue 11 item 9: a second ``serve`` on the SQLite file of a running one refuses to start, with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.oidc.broker_process import BrokerProcess
from tests.support.parts import free_port


def _second_serve(first: BrokerProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", "-c", str(first.config_path), "serve", "--bind", f"127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=60,
        env=first._env(),
    )


def test_two_serve_processes_on_one_sqlite_file_are_refused_at_start(tmp_path: Path) -> None:
    first = BrokerProcess(directory=tmp_path / "broker", workers=1).start()
    try:
        second = _second_serve(first)
        assert second.returncode == 1, (second.returncode, second.stderr[-500:])
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "already uses the SQLite store" in lines[0], second.stderr[-500:]
        assert requests.get(first.url("/readyz"), timeout=10).status_code == 200  # the first one is untouched
    finally:
        first.stop()
    # the lock ends with the server that held it: the same data directory serves again
    again = BrokerProcess(directory=tmp_path / "broker", workers=1).start()
    again.stop()
