"""A master killed outright takes its workers with it, so a restart gets the port at once (issue 11 item 3).

Without this, orphaned workers kept the listening socket for about 30 s without accepting, and a
supervisor's restart of ``serve`` failed with EADDRINUSE.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import requests

from tests.availability.deployment import Broker

RESTART_WITHIN_SECONDS = 8.0

pytestmark = pytest.mark.slow  # real serve processes


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped does not hold sockets: not alive)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_kill_9_of_the_master_frees_the_port_for_a_new_serve_within_seconds(tmp_path: Path) -> None:
    first = Broker(tmp_path / "broker", settings={"server": {"workers": 2, "threads": 4}}).start()
    try:
        assert first.process is not None
        workers = _children(first.process.pid)
        assert len(workers) == 2
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=5)
        killed_at = time.monotonic()

        deadline = killed_at + 5
        while any(_alive(w) for w in workers):
            assert time.monotonic() < deadline, "workers outlived their master"
            time.sleep(0.05)

        second = Broker(tmp_path / "broker", port=first.port, settings={"server": {"workers": 2, "threads": 4}})
        second.start(wait=False)
        try:
            second.wait_ready(seconds=RESTART_WITHIN_SECONDS)
            assert time.monotonic() - killed_at < RESTART_WITHIN_SECONDS
            assert requests.get(f"{second.url}/healthz", timeout=2).status_code == 200
            assert "Address already in use" not in second.log_text()
        finally:
            second.stop()
    finally:
        first.stop()
