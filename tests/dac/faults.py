"""Cutting a store in the middle of a change: the kernel's fault hook, and a TCP proxy in front of Redis.

- :func:`fail_once`: a kernel ``fault`` hook that raises StoreUnavailable the first time the
  transaction reaches ``point`` (SQLite ``before_commit``, Redis ``before_exec``): the change is
  cut before it commits, as a crash or a full disk would cut it.
- :class:`CuttingProxy`: forwards a client's connections to a real redis-server; armed, it cuts
  the connection that carries the next ``EXEC`` (the commit of a transaction), either before the
  ``EXEC`` reaches the server (``"before"``: the server discards the queued block) or after the
  server answered it, without passing the answer on (``"after"``: the change committed, and the
  caller only sees the connection drop). After the cut the server stays unreachable through the
  proxy (new connections are closed at once) until :meth:`CuttingProxy.restore`, as in a network
  partition; so the caller's call fails with StoreUnavailable instead of being run again at once
  on a fresh connection (redis-py reports a connection lost under WATCH as a WatchError, on
  which the kernel runs the transaction again).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Literal

from broker.store.base import StoreUnavailable

EXEC = b"*1\r\n$4\r\nEXEC\r\n"
Mode = Literal["before", "after"]


def fail_once(point: str) -> Callable[[str], None]:
    """A fault hook raising StoreUnavailable at the first ``point`` it sees, and never again."""
    fired = threading.Event()

    def fault(name: str) -> None:
        if name == point and not fired.is_set():
            fired.set()
            raise StoreUnavailable(f"injected fault at {name}")

    return fault


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()


class CuttingProxy:
    """A loopback TCP proxy to Redis that cuts the connection of the next transaction's EXEC when armed."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.fired = threading.Event()
        self.down = threading.Event()
        self._mode: Mode | None = None
        self._partition = True
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="cutting-proxy", daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def arm(self, mode: Mode, partition: bool = True) -> None:
        """Cut the next EXEC's connection; with ``partition``, refuse new connections until :meth:`restore`."""
        with self._lock:
            self._mode = mode
            self._partition = partition
            self.fired.clear()

    def restore(self) -> None:
        """The server is reachable through the proxy again."""
        self.down.clear()

    def _cut(self, *socks: socket.socket) -> None:
        if self._partition:
            self.down.set()
        _close(*socks)
        self.fired.set()

    def _take(self) -> Mode | None:
        """The armed mode, disarming it (one cut per arm)."""
        with self._lock:
            mode, self._mode = self._mode, None
            return mode

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                _close(client)
                continue
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, server]
            swallow = threading.Event()
            threading.Thread(target=self._commands, args=(client, server, swallow), daemon=True).start()
            threading.Thread(target=self._replies, args=(server, client, swallow), daemon=True).start()

    def _commands(self, client: socket.socket, server: socket.socket, swallow: threading.Event) -> None:
        tail = b""
        try:
            while data := client.recv(65536):
                window = tail + data
                at = window.find(EXEC)
                mode = self._take() if at >= 0 else None
                if mode == "before":
                    server.sendall(data[: max(0, at - len(tail))])  # everything up to the EXEC, not the EXEC
                    self._cut(client, server)
                    return
                if mode == "after":
                    swallow.set()  # the server's answer to this EXEC never reaches the client
                server.sendall(data)
                tail = window[-(len(EXEC) - 1) :]  # a split EXEC is found next time; a whole one only once
        except OSError:
            pass

    def _replies(self, server: socket.socket, client: socket.socket, swallow: threading.Event) -> None:
        pending = b""
        try:
            while data := server.recv(65536):
                if not swallow.is_set():
                    client.sendall(data)
                    continue
                # The answers of MULTI and of each queued command are simple strings ("+OK", "+QUEUED");
                # the first answer that is not one is EXEC's: the server has run the block. Cut there.
                pending += data
                while pending.startswith(b"+") and b"\r\n" in pending:
                    pending = pending[pending.index(b"\r\n") + 2 :]
                if pending and not pending.startswith(b"+"):
                    self._cut(client, server)
                    return
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.close()
