"""Where the key ring keeps its keys: 0600 files (default) or the store, encrypted.

Both backends hold :class:`~broker.store.base.KeyRecord` values and offer the same five
operations, so the ring's rotation logic is written once:

- ``load_if_changed(token)``: the records and a change token, or None when nothing changed
  since ``token`` (cheap: the ring asks at most about once a second);
- ``save(record)`` / ``delete(kid)``: atomic for readers in other processes;
- ``lock()``: a lock held across processes (and machines, for the store) while the ring
  decides and writes a rotation, so concurrent rotations never create two keys;
- ``seal(kid, alg, pem)`` / ``private_pem(record)``: what ``KeyRecord.private`` holds.

Files (``FileKeyStorage``): one JSON file per key, ``<kid>.json``, holding the public JWK,
the schedule and the private key as a PKCS#8 PEM. Files are 0600 in a 0700 directory and
written by temp file + fsync + rename, so a reader sees the old or the new file, never half.
A key file that group or others may read is refused: it may have leaked.

Store (``StoreKeyStorage``): kernel records of kind ``signing-key``, the private key sealed
with ``keys.encryption_secret`` (see :mod:`broker.keys.encryption`); the cross-process lock is
a record written with the kernel's ``add`` (exactly one holder) that expires on its own, so a
holder that dies releases it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from broker.keys import encryption
from broker.keys.errors import KeyRingError, KeyStorageError
from broker.keys.records import SIGNING_KEYS, KeyRecord
from broker.store.kernel import Kernel
from broker.store.records import Records

LOCK_TIMEOUT_SECONDS = 30.0
LOCK_POLL_SECONDS = 0.02
STORE_LOCK_KIND = "keyring-lock"
STORE_LOCK_KEY = "rotation"
STORE_LOCK_TTL_SECONDS = 60  # far longer than a rotation takes; frees the lock if the holder dies

# Our kids are RFC 7638 SHA-256 thumbprints: 43 base64url characters. Only such names are
# ever joined to the key directory, so a kid can never be a path.
KID_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
_KEY_FILE = re.compile(r"([A-Za-z0-9_-]{43})\.json")
_TEMP_PREFIX = ".tmp-"
_FILE_FORMAT = 1


class KeyStorage(Protocol):
    """What the ring needs from a place that keeps keys."""

    name: str

    def load_if_changed(self, token: Any) -> tuple[Any, list[KeyRecord]] | None: ...
    def save(self, record: KeyRecord) -> None: ...
    def delete(self, kid: str) -> None: ...
    def lock(self) -> contextlib.AbstractContextManager[None]: ...
    def seal(self, kid: str, alg: str, private_pem: bytes) -> bytes: ...
    def private_pem(self, record: KeyRecord) -> bytes: ...
    def tidy(self) -> None: ...


def check_kid(kid: str) -> str:
    """``kid`` if it has the shape of our thumbprints, else :class:`KeyRingError`."""
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        raise KeyRingError(f"not a key id of this ring: {kid!r:.60}")
    return kid


# --------------------------------------------------------------------------- files


class FileKeyStorage:
    """One 0600 JSON file per key in a 0700 directory (``settings.keys_path``)."""

    name = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    # reading -----------------------------------------------------------------

    def _listing(self) -> list[tuple[str, os.stat_result]]:
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise KeyStorageError(f"cannot list key directory {self.directory}: {exc.strerror}") from None
        found = []
        for entry in entries:
            if _KEY_FILE.fullmatch(entry.name):
                try:
                    found.append((entry.name, entry.stat(follow_symlinks=False)))
                except FileNotFoundError:  # removed between listing and stat: it is gone
                    continue
        return sorted(found, key=lambda item: item[0])

    def load_if_changed(self, token: Any) -> tuple[Any, list[KeyRecord]] | None:
        """Read every key file, unless no key file changed (name, inode, mtime, size) since ``token``.

        A rename gives the file a new inode, so the token changes on every save even
        where the file system's timestamps are coarse.
        """
        listing = self._listing()
        new_token = tuple((name, st.st_ino, st.st_mtime_ns, st.st_size) for name, st in listing)
        if token is not None and new_token == token:
            return None
        self._check_directory()
        records = []
        for name, st in listing:
            record = self._read(self.directory / name, st)
            if record is not None:
                records.append(record)
        return new_token, records

    def _check_directory(self) -> None:
        try:
            st = self.directory.stat()
        except FileNotFoundError:
            return
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise KeyStorageError(
                f"key directory {self.directory} is writable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 700 {self.directory}"
            )

    def _read(self, path: Path, st: os.stat_result) -> KeyRecord | None:
        if not stat.S_ISREG(st.st_mode):
            raise KeyStorageError(f"key file {path} is not a regular file")
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise KeyStorageError(
                f"key file {path} is readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"treat the key as leaked: rotate with --immediate, then chmod 600 {path}"
            )
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:  # deleted after listing: a removal in progress
            return None
        except (OSError, ValueError) as exc:
            raise KeyStorageError(f"key file {path} is unreadable: {exc.__class__.__name__}") from None
        try:
            record = _record_from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyStorageError(f"key file {path} is malformed: {exc}") from None
        if f"{record.kid}.json" != path.name:
            raise KeyStorageError(f"key file {path} holds kid {record.kid!r}, not the kid its name says")
        return record

    # writing -----------------------------------------------------------------

    def _ensure_directory(self) -> None:
        if not self.directory.exists():
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)  # mkdir's mode is filtered by the umask
        self._check_directory()

    def save(self, record: KeyRecord) -> None:
        """Write ``<kid>.json`` atomically: 0600 temp file, fsync, rename, fsync the directory."""
        check_kid(record.kid)
        self._ensure_directory()
        body = json.dumps(_record_to_json(record), indent=1).encode("utf-8")
        fd, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix=".json", dir=self.directory)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.directory / f"{record.kid}.json")
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        self._sync_directory()

    def delete(self, kid: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / f"{check_kid(kid)}.json")
        self._sync_directory()

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def tidy(self) -> None:
        """Remove temp files a crashed writer left (called with the lock held, so none is live)."""
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                if entry.name.startswith(_TEMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive ``flock`` on ``<dir>/.lock``: excludes other processes and threads."""
        self._ensure_directory()
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise KeyRingError(
                            f"another process has held the key ring lock {self.directory / '.lock'} "
                            f"for over {LOCK_TIMEOUT_SECONDS:.0f} s"
                        ) from None
                    time.sleep(LOCK_POLL_SECONDS)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # private keys ------------------------------------------------------------

    def seal(self, kid: str, alg: str, private_pem: bytes) -> bytes:
        return private_pem  # protected by the file mode, not by encryption

    def private_pem(self, record: KeyRecord) -> bytes:
        return record.private


def _record_to_json(record: KeyRecord) -> dict[str, Any]:
    return {
        "format": _FILE_FORMAT,
        "kid": record.kid,
        "alg": record.alg,
        "created_at": record.created_at,
        "not_before": record.not_before,
        "retired_at": record.retired_at,
        "remove_after": record.remove_after,
        "public_jwk": record.public_jwk,
        "private_key_pem": record.private.decode("ascii"),
    }


def _record_from_json(data: Any) -> KeyRecord:
    if not isinstance(data, dict) or data.get("format") != _FILE_FORMAT:
        raise ValueError(f"expected a key record of format {_FILE_FORMAT}")

    def integer(name: str, optional: bool = False) -> int | None:
        value = data.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name} must be an integer")
        return value

    kid, alg, jwk, pem = data.get("kid"), data.get("alg"), data.get("public_jwk"), data.get("private_key_pem")
    if not isinstance(kid, str) or not isinstance(alg, str) or not isinstance(jwk, dict) or not isinstance(pem, str):
        raise ValueError("kid, alg, public_jwk and private_key_pem are required")
    return KeyRecord(
        kid=kid,
        alg=alg,
        public_jwk=jwk,
        private=pem.encode("ascii"),
        created_at=integer("created_at"),  # type: ignore[arg-type]
        not_before=integer("not_before"),  # type: ignore[arg-type]
        retired_at=integer("retired_at", optional=True),
        remove_after=integer("remove_after", optional=True),
    )


# --------------------------------------------------------------------------- store


class StoreKeyStorage:
    """Keys as ``signing-key`` records of the store kernel, private keys sealed with the encryption secret."""

    name = "store"

    def __init__(self, kernel: Kernel, encryption_secret: str) -> None:
        if not encryption_secret:
            raise KeyRingError("keys.storage is 'store' but keys.encryption_secret is not set")
        self.kernel = kernel
        self.keys = Records(kernel, SIGNING_KEYS)
        self._secret = encryption_secret

    def load_if_changed(self, token: Any) -> tuple[Any, list[KeyRecord]] | None:
        """One scan of the kind; the records themselves are the change token."""
        records = sorted(self.keys.scan(), key=lambda r: r.kid)
        if token is not None and records == token:
            return None
        return records, records

    def save(self, record: KeyRecord) -> None:
        self.keys.put(record)

    def delete(self, kid: str) -> None:
        self.keys.delete(check_kid(kid))

    def tidy(self) -> None:
        """Nothing to tidy: the store writes whole records."""

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the ``keyring-lock`` record: the kernel's ``add`` succeeds for exactly one holder."""
        holder = {"holder": secrets.token_hex(8), "pid": os.getpid()}
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while not self.kernel.add(
            STORE_LOCK_KIND, STORE_LOCK_KEY, holder, expires_at=int(time.time()) + STORE_LOCK_TTL_SECONDS
        ):
            if time.monotonic() > deadline:
                raise KeyRingError(
                    f"another process has held the key ring lock in the store for over {LOCK_TIMEOUT_SECONDS:.0f} s"
                )
            time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            self.kernel.take(STORE_LOCK_KIND, STORE_LOCK_KEY)

    def seal(self, kid: str, alg: str, private_pem: bytes) -> bytes:
        return encryption.seal(private_pem, self._secret, kid, alg)

    def private_pem(self, record: KeyRecord) -> bytes:
        return encryption.unseal(record.private, self._secret, record.kid, record.alg)
