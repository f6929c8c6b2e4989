"""Stopping a server process a test started: politely first, then for sure."""

from __future__ import annotations

import subprocess
from typing import IO, Any


def stop_process(process: subprocess.Popen[Any] | None, log: IO[Any] | None = None, grace: float = 10.0) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; close the process's log file if any."""
    if process is not None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if log is not None:
        log.close()
