"""Workers die with the process that started them, so a crashed master never leaves the port held.

When the serving master is killed outright (``kill -9``, the OOM killer), its workers would
otherwise live on, holding the listening socket without anyone to restart them, and the
supervisor's restart of ``serve`` fails with EADDRINUSE. Each worker therefore asks Linux to
send it SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and then checks that the
parent it expects is still its parent, which closes the race with a parent that died before the
call. SIGKILL, not SIGTERM: with the master gone nothing coordinates a graceful stop, and the port
must be free at once.

Linux sends the signal when the *thread* that forked the worker ends; the server forks workers
from its main thread, which lives as long as the master. On other systems :func:`die_with_parent`
falls back to a watchdog thread that polls the parent's pid once a second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading

log = logging.getLogger("broker.serve")

PR_SET_PDEATHSIG = 1
WATCHDOG_INTERVAL_SECONDS = 1.0


def _prctl_pdeathsig(sig: int) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
    except OSError:
        return False
    if libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        return False
    return True


def _watchdog(parent: int) -> None:
    stop = threading.Event()
    while not stop.wait(WATCHDOG_INTERVAL_SECONDS):
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent: int) -> None:
    """Make this process end when ``parent`` (the pid that started it) ends; at once if it already has."""
    if not _prctl_pdeathsig(signal.SIGKILL):
        threading.Thread(target=_watchdog, args=(parent,), name="parent-watchdog", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the request above took effect
        os.kill(os.getpid(), signal.SIGKILL)
