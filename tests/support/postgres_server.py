"""Real PostgreSQL servers for tests: a primary, a synchronous streaming replica, kill -9 and promote.

Every cluster is made by ``initdb`` in a temp folder of its own and listens on a free loopback
port (never the machine's own server on 5432; trust authentication on 127.0.0.1 only, no Unix
socket, unless a test names more addresses and networks: the deployment tests' hosts in network
namespaces connect over a bridge). The binaries are Debian's PostgreSQL 15 (``/usr/lib/postgresql/15/bin``, or
``$PG_BIN``); when they are missing, tests skip with "REAL PART MISSING" (and fail under CI).

PostgreSQL refuses to run as root, so when the tests run as root the servers run as the
``postgres`` account (created by Debian's package) and their folder is handed to it.

Each server is started directly (``postgres -D``); :meth:`kill` sends SIGKILL to the postmaster
and every process under it at once, as a crash of the machine's database would, and
:meth:`pause` freezes them all (SIGSTOP); :meth:`promote` uses ``pg_ctl promote``.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.parts import free_port, in_ci

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
START_SECONDS = 30.0


def pg_binary(name: str) -> str:
    """Path of a PostgreSQL program, or skip (fail under CI) with "REAL PART MISSING"."""
    folder = Path(os.environ.get("PG_BIN", DEFAULT_BIN))
    candidate = folder / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    message = (
        f"REAL PART MISSING: PostgreSQL 15 program {name!r} not found in {folder} "
        "(PostgreSQL backend tests start their own clusters); install Debian's postgresql-15 "
        "(see .ci/run) or set PG_BIN"
    )
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def _run_as() -> tuple[int, int] | None:
    """The (uid, gid) servers run as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam("postgres")
    except KeyError:
        message = "REAL PART MISSING: running as root and there is no 'postgres' account to run PostgreSQL as"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return account.pw_uid, account.pw_gid


def _free_port() -> int:
    while True:
        port = free_port()
        if port != 5432:
            return port


@dataclass
class PostgresServer:
    """One cluster in ``root/name``, started by the tests; ``url`` reaches its ``postgres`` database."""

    root: Path
    name: str = "primary"
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    account: tuple[int, int] | None = None
    #: Addresses it listens on besides 127.0.0.1, and the networks (CIDR) trusted to connect from
    #: there (the deployment tests' hosts in network namespaces); loopback only when empty.
    listen: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()

    @property
    def data(self) -> Path:
        return self.root / self.name

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        """Run a PostgreSQL program as the server account; its output is in the error when it fails."""
        kwargs: dict[str, Any] = {}
        if self.account is not None:
            kwargs = {"user": self.account[0], "group": self.account[1], "extra_groups": []}
        done = subprocess.run(args, capture_output=True, timeout=timeout, check=False, cwd=self.root, **kwargs)
        if done.returncode != 0:
            output = done.stderr.decode(errors="replace")
            raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {output}")

    def init(self) -> PostgresServer:
        """initdb: UTF-8, C locale, trust authentication (loopback only: see ``start``)."""
        self._run(
            pg_binary("initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        if self.clients:
            hba = self.data / "pg_hba.conf"
            lines = "".join(f"host all all {net} trust\nhost replication all {net} trust\n" for net in self.clients)
            hba.write_text(hba.read_text() + lines)
        return self

    def start(self, **settings: str) -> PostgresServer:
        """Start the postmaster in a session of its own and wait until it accepts connections."""
        options = {
            "port": str(self.port),
            "listen_addresses": ",".join(("127.0.0.1", *self.listen)),
            "unix_socket_directories": "",
            "max_connections": "200",
            "fsync": "on",
            "synchronous_commit": "on",
            "logging_collector": "off",
            "log_min_messages": "warning",
            **settings,
        }
        args = [pg_binary("postgres"), "-D", str(self.data)]
        for key, value in options.items():
            args += ["-c", f"{key}={value}"]
        kwargs: dict[str, Any] = {}
        if self.account is not None:
            kwargs = {"user": self.account[0], "group": self.account[1], "extra_groups": []}
        log = open(self.root / f"{self.name}.log", "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=log, start_new_session=True, cwd=self.root, **kwargs
            )
        finally:
            log.close()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                assert self.process is not None
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"postgres {self.name} did not start on port {self.port}: {exc}; {self.log()}"
                    ) from None
                time.sleep(0.05)

    def log(self) -> str:
        path = self.root / f"{self.name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser, outside any transaction."""
        with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as conn:
            cur = conn.execute(sql.encode())
            return cur.fetchall() if cur.description else []

    def base_backup(self, data: Path, standby: bool = False) -> None:
        """``pg_basebackup`` of this running server into the new data folder ``data`` (WAL streamed
        along, so the copy is consistent); ``standby``: with the settings of a streaming replica (-R)."""
        self._run(
            pg_binary("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-D",
            str(data),
            *(["-R"] if standby else []),
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        )

    def replica(self, name: str = "replica") -> PostgresServer:
        """A streaming replica of this server (pg_basebackup -R), started and made synchronous.

        ``synchronous_standby_names = '*'`` on this primary: from then on a commit returns only
        once the replica has flushed it, so a promoted replica holds every acknowledged write.
        """
        standby = PostgresServer(self.root, name, account=self.account, listen=self.listen, clients=self.clients)
        self.base_backup(standby.data, standby=True)
        standby.start(hot_standby="on")
        self.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
        self.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + START_SECONDS
        while self.execute("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'") == []:
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {name} never became synchronous; {standby.log()}")
            time.sleep(0.05)
        return standby

    def _processes(self) -> list[int]:
        """The postmaster and every process under it (backends make themselves group leaders, so
        a signal to the postmaster's process group would miss them)."""
        assert self.process is not None
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found = [self.process.pid]
        for pid in found:
            found.extend(child for child, parent in parents.items() if parent == pid)
        return found

    def _signal_all(self, sig: signal.Signals) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)  # no new children while we look
        for pid in self._processes():
            with suppress(ProcessLookupError):
                os.kill(pid, sig)

    def kill(self) -> None:
        """SIGKILL the postmaster and all its backends at once (a crash: nothing is flushed or said)."""
        if self.process is not None and self.process.poll() is None:
            self._signal_all(signal.SIGKILL)
            self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP every process of the cluster: connections stay open but nothing answers."""
        self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        for pid in self._processes():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def promote(self) -> None:
        """``pg_ctl promote -w``: the replica becomes a primary that accepts writes."""
        self._run(pg_binary("pg_ctl"), "promote", "-D", str(self.data), "-w", "-t", "30")

    def stop(self) -> None:
        """Fast shutdown (SIGINT); SIGKILL when it does not end in 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.resume()
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=10)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            self.kill()


class PostgresCluster:
    """A temp folder holding one or more servers the tests own; ``close`` stops them and removes it.

    ``listen`` and ``clients`` are given to every server made here (see :class:`PostgresServer`).
    """

    def __init__(self, listen: tuple[str, ...] = (), clients: tuple[str, ...] = ()) -> None:
        pg_binary("initdb")
        self.account = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="broker-pg-"))
        os.chmod(self.root, 0o700)
        if self.account is not None:
            os.chown(self.root, *self.account)
        self.servers: list[PostgresServer] = []
        self.listen, self.clients = listen, clients

    def primary(self, name: str = "primary") -> PostgresServer:
        server = PostgresServer(self.root, name, account=self.account, listen=self.listen, clients=self.clients).init()
        self.servers.append(server)
        return server.start()

    def replica_of(self, primary: PostgresServer, name: str = "replica") -> PostgresServer:
        standby = primary.replica(name)
        self.servers.append(standby)
        return standby

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


_shared: PostgresServer | None = None
_shared_lock = threading.Lock()


def shared_postgres() -> PostgresServer:
    """One primary for this test process (made on first use, stopped at exit); tests use schemas of their own."""
    global _shared
    with _shared_lock:
        if _shared is None:
            cluster = PostgresCluster()
            try:
                _shared = cluster.primary()
            except BaseException:
                cluster.close()
                raise
            atexit.register(cluster.close)
        return _shared
