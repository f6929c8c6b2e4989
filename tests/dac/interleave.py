"""Deterministic interleavings of two DAC changes in two processes, on a shared real store.

:class:`PausedChange` starts a second process (``spawn``: a fresh interpreter with its own store
client) that runs one DAC change and stops it inside its store transaction, at the kernel's
fault hook: SQLite's ``before_commit`` (the transaction has read, decided and written, and holds
the write lock) or Redis's ``before_exec`` (it has read and WATCHed, and queued its writes). The
test then runs the competing change in its own process and releases the paused one. Whatever
the backend does next (SQLite: the competitor waits for the lock; Redis: the paused EXEC finds a
watched key changed and runs the change again on the new state), the outcome must keep every
acknowledged revocation.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker.dac.errors import DacError
from broker.settings import Settings
from broker.store import open_kernel
from tests.dac.conftest import services

PAUSE_POINTS = {"sqlite": "before_commit", "redis": "before_exec"}
WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Outcome:
    """What the change in the other process answered: ``ok`` with the record's fields, or a DacError's code."""

    ok: bool
    code: str | None = None
    record: dict[str, Any] | None = None


def _child(settings: Settings, now: float, action: str, args: dict[str, Any], reached: Any, go: Any, out: Any) -> None:
    kernel = open_kernel(settings.store, settings.sqlite_path)
    svc = services(settings, kernel, clock=lambda: now)
    point = PAUSE_POINTS[settings.store.backend]
    paused = threading.Event()

    def fault(name: str) -> None:
        if name == point and not paused.is_set():  # the first attempt only; a re-run goes straight through
            paused.set()
            reached.set()
            if not go.wait(WAIT_SECONDS):
                raise RuntimeError("never released")

    kernel.fault = fault  # type: ignore[attr-defined]
    change: Callable[[], Any] = {
        "renew": lambda: svc.grants.renew(args["actor"], args["grant"], args["end"], args.get("reason", "")),
        "revoke": lambda: svc.grants.revoke(args["actor"], args["grant"], args["reason"]),
        "vouch": lambda: svc.registered.vouch(args["actor"], args["identity"], args.get("reason", "")),
        "revoke_registered": lambda: svc.registered.revoke(args["actor"], args["record"], args["reason"]),
        "approve": lambda: svc.applications.approve(args["actor"], args["application"], args["end"]),
        "withdraw": lambda: svc.applications.withdraw(args["actor"], args["application"], args.get("reason", "")),
    }[action]
    try:
        out.put(Outcome(ok=True, record=vars(change()).copy()))
    except DacError as exc:
        out.put(Outcome(ok=False, code=exc.code))
    except BaseException as exc:  # seen by the test as an outcome, never lost in the child's stderr
        out.put(Outcome(ok=False, code=f"crash: {exc.__class__.__name__}: {exc}"))
    finally:
        reached.set()
        kernel.close()


class PausedChange:
    """One DAC change running in another process, paused inside its transaction until :meth:`release`."""

    def __init__(self, settings: Settings, now: float, action: str, **args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._reached = ctx.Event()
        self._go = ctx.Event()
        self._out = ctx.Queue()
        self._process = ctx.Process(
            target=_child, args=(settings, now, action, args, self._reached, self._go, self._out), daemon=True
        )
        self._process.start()
        if not self._reached.wait(WAIT_SECONDS):
            self._process.kill()
            raise AssertionError("the other process never reached its transaction")

    def release(self) -> Outcome:
        """Let the paused transaction go on; what the change answered in the end."""
        self._go.set()
        outcome: Outcome = self._out.get(timeout=WAIT_SECONDS)
        self._process.join(WAIT_SECONDS)
        return outcome


def meanwhile(change: Callable[[], Any], paused: PausedChange, settle: float = 0.3) -> tuple[Any, Outcome]:
    """Run ``change`` here while ``paused`` waits in the other process, then release it.

    ``change`` runs in a thread: on SQLite it blocks on the write lock the paused transaction
    holds, so the other process is released after ``settle`` seconds (or at once when
    ``change`` finished, as on Redis). Returns (``change``'s answer or DacError, the other's outcome).
    """
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(change())
        except DacError as exc:
            result.append(exc)
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(settle)
    other = paused.release()
    thread.join(WAIT_SECONDS)
    assert result, "the change in this process never finished"
    if isinstance(result[0], BaseException) and not isinstance(result[0], DacError):
        raise result[0]
    return result[0], other
