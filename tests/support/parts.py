"""Finding the real parts tests run against, and free loopback ports.

A missing part skips its tests with a loud reason on a developer machine, and fails
them under CI (``CI=true``), where ``.ci/run`` has installed every part.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_binary(name: str, why: str) -> str:
    """Path of an executable, or skip (fail under CI) with the reason."""
    path = shutil.which(name)
    if path is None:
        message = f"REAL PART MISSING: {name!r} not found on PATH ({why}); install it (see README 'Tests')"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` (a loopback address) right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
