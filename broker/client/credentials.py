"""The token file: where a logged-in user's tokens live between commands.

``$XDG_CONFIG_HOME/ga4gh-broker/credentials.json`` (``~/.config/ga4gh-broker/`` when
``XDG_CONFIG_HOME`` is unset or not absolute, as the XDG base directory spec says). The
folder is 0700 and the file 0600 from the moment it exists: it is created with ``O_EXCL`` at
mode 0600 under a temporary name, written, flushed to disk and renamed over the old file
(``os.replace``), so a reader sees the old tokens or the new ones, never a torn file, and a
rotated refresh token is never lost half-written. A file found readable by others is
tightened to 0600 on the next read. Symlinks are not followed when reading.

One file holds the logins of several brokers (keyed by the broker's issuer URL); the last
login is the default. Refreshes take an exclusive ``flock`` on ``credentials.lock``, and
re-read the file under it, so two commands never spend the same refresh token (a broker
that detects refresh-token reuse would end the whole login).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import stat
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from broker.client.http import EXIT_USAGE, ClientError

APP_DIR = "ga4gh-broker"
FILE_NAME = "credentials.json"
LOCK_NAME = "credentials.lock"
MAX_FILE_BYTES = 1024 * 1024
FORMAT_VERSION = 1


@dataclass
class Login:
    """One broker's tokens and the endpoints to renew and use them (no ID token is kept)."""

    broker: str  # the issuer, exactly as its discovery document names it
    client_id: str
    token_endpoint: str
    userinfo_endpoint: str | None
    access_token: str
    expires_at: int
    scope: str
    refresh_token: str | None = None
    client_secret: str | None = None  # only for a confidential client the user registered

    def __repr__(self) -> str:  # tokens never appear in a repr (tracebacks, debuggers, logs)
        return f"Login(broker={self.broker!r}, client_id={self.client_id!r}, expires_at={self.expires_at})"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Login:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        try:
            login = cls(**values)
        except TypeError:
            raise ClientError("bad_credentials_file", "The credentials file is damaged; log in again.") from None
        if not isinstance(login.access_token, str) or not isinstance(login.expires_at, int):
            raise ClientError("bad_credentials_file", "The credentials file is damaged; log in again.")
        return login


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The client's config folder (XDG base directory rules)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path(env.get("HOME") or Path.home()) / ".config"
    return root / APP_DIR


def normalize_broker(url: str) -> str:
    """The key a broker is stored under: its URL without a trailing '/'."""
    return url.rstrip("/")


@dataclass
class CredentialStore:
    """The token file of one user (see the module docstring)."""

    directory: Path

    @classmethod
    def default(cls) -> CredentialStore:
        return cls(config_dir())

    @property
    def path(self) -> Path:
        return self.directory / FILE_NAME

    def _ensure_dir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(self.directory)
        if not stat.S_ISDIR(st.st_mode):
            raise ClientError("bad_config_dir", f"{self.directory} is not a folder.", EXIT_USAGE)
        if stat.S_IMODE(st.st_mode) & 0o077 and st.st_uid == os.getuid():
            os.chmod(self.directory, 0o700)

    def read(self) -> dict[str, Any]:
        """The whole file ({} when there is none)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ClientError("bad_credentials_file", f"Cannot read {self.path}: {exc.strerror}.") from None
        try:
            st = os.fstat(fd)
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.fchmod(fd, 0o600)  # never left readable by others
            data = os.read(fd, MAX_FILE_BYTES + 1)
        finally:
            os.close(fd)
        if len(data) > MAX_FILE_BYTES:
            raise ClientError("bad_credentials_file", f"{self.path} is too large; remove it and log in again.")
        try:
            content = json.loads(data)
        except ValueError:
            raise ClientError("bad_credentials_file", f"{self.path} is damaged; remove it and log in again.") from None
        return content if isinstance(content, dict) else {}

    def write(self, content: dict[str, Any]) -> None:
        """Replace the file atomically (0600 from creation, fsync'd, renamed into place)."""
        self._ensure_dir()
        temp = self.directory / f".{FILE_NAME}.{secrets.token_hex(6)}.tmp"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (json.dumps(content, indent=1, sort_keys=True) + "\n").encode("utf-8"))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(temp, self.path)
        with contextlib.suppress(OSError):  # make the rename itself durable
            dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def login_for(self, broker: str | None) -> Login | None:
        """The login of ``broker`` (None: the default one), or None when there is none."""
        content = self.read()
        logins = content.get("brokers", {})
        if not isinstance(logins, dict):
            return None
        key = normalize_broker(broker) if broker else content.get("current")
        data = logins.get(key) if isinstance(key, str) else None
        return Login.from_json(data) if isinstance(data, dict) else None

    def save(self, login: Login, make_current: bool = True) -> None:
        content = self.read()
        logins = content.get("brokers") if isinstance(content.get("brokers"), dict) else {}
        assert isinstance(logins, dict)
        logins[normalize_broker(login.broker)] = asdict(login)
        content = {"version": FORMAT_VERSION, "brokers": logins, "current": content.get("current")}
        if make_current or not content["current"]:
            content["current"] = normalize_broker(login.broker)
        self.write(content)

    def forget(self, broker: str) -> None:
        content = self.read()
        logins = content.get("brokers")
        if isinstance(logins, dict) and logins.pop(normalize_broker(broker), None) is not None:
            if content.get("current") == normalize_broker(broker):
                content["current"] = None
            self.write(content)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock between processes of this user (held around a refresh)."""
        self._ensure_dir()
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
