"""One store deadline per request, and a circuit breaker: a stalled store costs seconds once, not per call.

:class:`DeadlineKernel` wraps any :class:`~broker.store.kernel.Kernel` (pure composition: it adds
no state to the store, and the conformance suite passes through it unchanged). It adds two things:

**A deadline per request.** :func:`store_deadline` opens a scope (the web server opens one per
request) with one deadline for every store call made inside it. A call inside a scope runs on a
small pool of helper threads while the caller waits at most until the deadline: when it passes,
the caller gets :class:`~broker.store.base.StoreUnavailable` at once, whatever the backend's own
per-call timeout, so a request that makes five calls against a hanging store waits one deadline,
not five timeouts. A call that would start after the deadline is not started. Outside a scope
(background threads, the command line) calls run on the caller's thread, bounded by the backend's
own timeout, with no overhead.

A call given up at the deadline keeps running on its helper thread until the backend's timeout
ends it: its outcome is unknown to the caller, exactly as when a network reply is lost (a write may
still commit; a ``take`` may still consume). That is the contract of ``StoreUnavailable`` already
(:mod:`broker.store.redis_kernel` never retries for the same reason), and every caller treats it
as "not done, try again" or as a denial. Helper threads are bounded (``max_threads``); calls
queued behind busy helpers wait within the same deadline and are cancelled if it passes first.

**A circuit breaker per process.** When a call fails with StoreUnavailable (the backend's timeout,
a refused connection, a locked SQLite file), the breaker opens: for ``open_seconds`` every call
fails at once with StoreUnavailable, without touching the backend, so threads stop piling up
behind a dead store. Then one call is let through as a probe (the others still fail fast while it
runs); if it succeeds the breaker closes, else it stays open for another ``open_seconds``. Errors
that prove the store answered (:class:`~broker.store.base.StoreError` other than unavailable,
ValueError for bad input) do not count against it.

The breaker logs one WARNING when an outage starts and one INFO line when it ends (with how long
it lasted and how many calls were refused meanwhile), never one line per failed call
(``broker.store.outage``). :meth:`DeadlineKernel.outage` tells whether one is in progress, so a
log filter can keep other loggers quiet about it (:mod:`broker.serve.logs`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from broker.store.base import AuditRecord, Health, StoreError, StoreUnavailable
from broker.store.kernel import Closeable, Item, Kernel, Tx, Write

T = TypeVar("T")

log = logging.getLogger("broker.store.outage")

#: Default seconds the breaker stays open after a failure before it lets one probe through.
OPEN_SECONDS = 5.0
#: Default most helper threads running store calls for deadline scopes at once (per process).
MAX_HELPER_THREADS = 32

# The deadline (time.monotonic() seconds) of the scope this code runs in; None outside any scope.
_deadline: ContextVar[float | None] = ContextVar("broker_store_deadline", default=None)


@contextlib.contextmanager
def store_deadline(seconds: float) -> Iterator[None]:
    """Every store call of a :class:`DeadlineKernel` made inside shares one deadline, ``seconds`` from now.

    Scopes nest: an inner scope never extends the deadline of the one around it.
    """
    if not seconds > 0:
        raise ValueError(f"a store deadline must be a positive number of seconds, got {seconds!r}")
    outer = _deadline.get()
    mine = time.monotonic() + seconds
    token = _deadline.set(mine if outer is None else min(outer, mine))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining_seconds() -> float | None:
    """Seconds left before the current scope's deadline (may be negative); None outside any scope."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


@dataclass(frozen=True)
class BreakerState:
    """What :meth:`CircuitBreaker.state` reports (for /readyz and tests)."""

    state: str  # "closed" | "open" | "probing"
    since: float | None  # monotonic time the outage started (None when closed)
    refused: int  # calls refused at once during the current outage


class CircuitBreaker:
    """Closed, open for ``open_seconds`` after a failure, then one probe (see the module docstring).

    Thread-safe; one per process and backend. ``clock`` is monotonic seconds (tests pass their own).
    """

    def __init__(
        self, backend: str, open_seconds: float = OPEN_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not open_seconds > 0:
            raise ValueError(f"open_seconds must be positive, got {open_seconds!r}")
        self.backend = backend
        self.open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._open_until: float | None = None  # None: closed
        self._probing = False
        self._outage_started: float | None = None
        self._refused = 0
        self._detail = ""

    def state(self) -> BreakerState:
        with self._lock:
            if self._open_until is None:
                return BreakerState("closed", None, 0)
            return BreakerState("probing" if self._probing else "open", self._outage_started, self._refused)

    def admit(self) -> bool:
        """Before a call: True if it is the probe, False for a normal call; StoreUnavailable when open."""
        with self._lock:
            if self._open_until is None:
                return False
            now = self._clock()
            if self._probing or now < self._open_until:
                self._refused += 1
                wait = max(0.0, self._open_until - now)
                raise StoreUnavailable(
                    f"{self.backend}: store unavailable ({self._detail}); failing fast, next probe in {wait:.1f} s"
                )
            self._probing = True
            return True

    def now(self) -> float:
        """The breaker's clock (callers stamp a call's start with it)."""
        return self._clock()

    def succeeded(self, probe: bool, started: float | None = None) -> None:
        """After a call the store answered (whatever the answer); ``started``: when the call was admitted."""
        with self._lock:
            if self._open_until is None:
                return
            if not probe and self._probing:
                return  # a call admitted before the outage answered; the probe decides
            if (
                not probe
                and started is not None
                and self._outage_started is not None
                and started < self._outage_started
            ):
                return  # its answer was on its way before the store stalled: it says nothing about now
            started = self._outage_started if self._outage_started is not None else self._clock()
            refused = self._refused
            self._open_until = None
            self._probing = False
            self._outage_started = None
            self._refused = 0
        log.info(
            "store available again (%s) after %.1f s; %d calls were refused meanwhile",
            self.backend,
            self._clock() - started,
            refused,
        )

    def failed(self, exc: StoreUnavailable, probe: bool) -> None:
        """After a call failed with StoreUnavailable: open (or keep open) the breaker."""
        with self._lock:
            now = self._clock()
            starting = self._open_until is None
            self._open_until = now + self.open_seconds
            if probe:
                self._probing = False
            if starting:
                self._outage_started = now
                self._refused = 0
                self._detail = _one_line(str(exc))
        if starting:
            log.warning(
                "store unavailable (%s): %s; failing fast, probing once every %.1f s until it answers",
                self.backend,
                _one_line(str(exc)),
                self.open_seconds,
            )

    def released(self, probe: bool) -> None:
        """After a call ended without saying anything about availability (e.g. the caller's bug)."""
        if probe:
            with self._lock:
                self._probing = False


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class DeadlineKernel:
    """A :class:`~broker.store.kernel.Kernel` that adds request deadlines and a circuit breaker to ``inner``.

    ``open_seconds``: how long the breaker fails calls at once after a failure. ``max_threads``:
    the most helper threads running calls for deadline scopes at once. ``clock`` drives the breaker.
    """

    def __init__(
        self,
        inner: Kernel,
        *,
        open_seconds: float = OPEN_SECONDS,
        max_threads: int = MAX_HELPER_THREADS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads!r}")
        self.inner = inner
        self.backend = inner.backend
        self.breaker = CircuitBreaker(inner.backend, open_seconds, clock)
        self._max_threads = max_threads
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()

    # ------------------------------------------------------------------ machinery

    def outage(self) -> bool:
        """True while the breaker is open or probing (an outage is in progress)."""
        return self.breaker.state().state != "closed"

    def _executor(self) -> ThreadPoolExecutor:
        """The helper pool of this process (a forked child never uses its parent's threads)."""
        with self._pool_lock:
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=self._max_threads, thread_name_prefix="store-call")
                self._pool_pid = os.getpid()
            return self._pool

    def _outcome(self, fn: Callable[[], T], probe: bool, started: float) -> T:
        """Run ``fn`` and tell the breaker what it showed about the store."""
        try:
            result = fn()
        except StoreUnavailable as exc:
            self.breaker.failed(exc, probe)
            raise
        except (StoreError, ValueError, LookupError, TypeError):
            self.breaker.succeeded(probe, started)  # the store answered; the request was wrong
            raise
        except BaseException:
            self.breaker.released(probe)
            raise
        self.breaker.succeeded(probe, started)
        return result

    def _call(self, fn: Callable[[], T]) -> T:
        left = remaining_seconds()
        if left is not None and left <= 0:
            raise StoreUnavailable(f"{self.backend}: this request's store deadline has passed")
        started = self.breaker.now()
        probe = self.breaker.admit()
        if left is None:
            return self._outcome(fn, probe, started)
        future: Future[T] = self._executor().submit(self._outcome, fn, probe, started)
        try:
            return future.result(timeout=left)
        except FutureTimeout:
            if future.cancel():  # still queued behind busy helpers: it never runs
                self.breaker.released(probe)
            raise StoreUnavailable(
                f"{self.backend}: no answer within this request's store deadline ({left:.2f} s left when called)"
            ) from None

    # ------------------------------------------------------------------ the kernel

    def health(self) -> Health:
        return self._call(self.inner.health)

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pool_pid == os.getpid():
            pool.shutdown(wait=False, cancel_futures=True)
        self.inner.close()

    def get(self, kind: str, key: str) -> dict[str, Any] | None:
        return self._call(lambda: self.inner.get(kind, key))

    def get_many(self, kind: str, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        return self._call(lambda: self.inner.get_many(kind, keys))

    def find(self, kind: str, term: str) -> list[Item]:
        return self._call(lambda: self.inner.find(kind, term))

    def scan(self, kind: str) -> Iterator[Item]:
        """The inner scan, each page fetched under the deadline and the breaker."""
        iterator = self._call(lambda: self.inner.scan(kind))
        while True:
            item = self._call(lambda: next(iterator, None))
            if item is None:
                return
            yield item

    def put(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> None:
        self._call(lambda: self.inner.put(kind, key, value, expires_at=expires_at, terms=terms))

    def add(
        self, kind: str, key: str, value: dict[str, Any], *, expires_at: int | None = None, terms: Sequence[str] = ()
    ) -> bool:
        return self._call(lambda: self.inner.add(kind, key, value, expires_at=expires_at, terms=terms))

    def take(self, kind: str, key: str) -> dict[str, Any] | None:
        return self._call(lambda: self.inner.take(kind, key))

    def delete(self, kind: str, key: str) -> bool:
        return self._call(lambda: self.inner.delete(kind, key))

    def incr(self, kind: str, key: str, *, expires_at: int) -> int:
        return self._call(lambda: self.inner.incr(kind, key, expires_at=expires_at))

    def update(self, kind: str, key: str, fn: Callable[[dict[str, Any] | None], Write | None]) -> dict[str, Any] | None:
        return self._call(lambda: self.inner.update(kind, key, fn))

    def transact(self, fn: Callable[[Tx], T]) -> T:
        return self._call(lambda: self.inner.transact(fn))

    def audit_append(self, event: dict[str, Any], at: int) -> AuditRecord:
        return self._call(lambda: self.inner.audit_append(event, at))

    def audit_records(self, after_seq: int = 0) -> Iterator[AuditRecord]:
        iterator = self._call(lambda: self.inner.audit_records(after_seq))
        while True:
            record = self._call(lambda: next(iterator, None))
            if record is None:
                return
            yield record

    def audit_last_seq(self) -> int:
        return self._call(self.inner.audit_last_seq)

    def kinds(self) -> list[str]:
        return self._call(self.inner.kinds)

    def purge_expired(self) -> None:
        self._call(self.inner.purge_expired)

    def terms_of(self, kind: str, key: str) -> tuple[str, ...]:
        return self._call(lambda: self.inner.terms_of(kind, key))

    def audit_restore(self, records: Iterable[AuditRecord]) -> int:
        """Passed through without a deadline: an operator's import, not a request."""
        return self.inner.audit_restore(records)

    def audit_truncate(self, through_seq: int) -> int:
        """Passed through without a deadline: an operator's archive step, not a request."""
        return self.inner.audit_truncate(through_seq)

    def listen_audit(self, on_seq: Callable[[int], None]) -> Closeable | None:
        """The inner kernel's change notifications (a background connection of its own)."""
        return self.inner.listen_audit(on_seq)
