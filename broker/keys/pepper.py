"""The server pepper: a secret key for the fast keyed hash of client secrets the broker generates.

Client secrets we generate carry 256 bits of entropy, so a slow password KDF adds nothing but
cost, and that cost is what an attacker buys with every guess (issue 11 item 2: one scrypt,
16 MiB, per request). They are stored as HMAC-SHA-256 under this pepper instead
(:mod:`broker.oidc.passwords`); a stolen store alone then does not even let one test a guess.

Where the pepper lives, never in the settings file in the clear:

- ``keys.storage: file``: ``client-secret-pepper`` in the key directory, 32 random bytes,
  0600 like the key files. It is created once, by whichever process needs it first, through a
  temporary file linked into place (``link`` fails if another process won the race, and that
  process's file is then read), so every process of one broker uses the same pepper. A file
  that group or others may read is refused, as a key file is.
- ``keys.storage: store``: derived with HKDF-SHA-256 from ``keys.encryption_secret`` (the
  passphrase that already seals the private keys in the store), so every machine of a
  multi-node broker has the same pepper with nothing more to copy.

Losing the pepper makes the stored client secrets unverifiable (issue new ones with
``clients add``); it must be backed up with the keys.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.keys.errors import KeyStorageError
from broker.keys.settings import KeySettings

PEPPER_FILE = "client-secret-pepper"
PEPPER_BYTES = 32
_HKDF_INFO = b"ga4gh-broker client-secret pepper v1"


def load_pepper(settings: KeySettings, directory: Path) -> bytes:
    """The pepper of this broker (see the module docstring); created on first use for file storage."""
    if settings.storage == "store":
        assert settings.encryption_secret is not None  # the settings check requires it for store storage
        hkdf = HKDF(algorithm=hashes.SHA256(), length=PEPPER_BYTES, salt=None, info=_HKDF_INFO)
        return hkdf.derive(settings.encryption_secret.get_secret_value().encode("utf-8"))
    return _file_pepper(directory)


def _file_pepper(directory: Path) -> bytes:
    path = directory / PEPPER_FILE
    if not path.exists():
        _create(directory, path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise KeyStorageError(f"cannot read the client-secret pepper {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if stat.S_IMODE(os.fstat(fh.fileno()).st_mode) & 0o077:
            raise KeyStorageError(f"the client-secret pepper {path} is readable by group or others (chmod 600)")
        data = fh.read(PEPPER_BYTES + 1)
    if len(data) != PEPPER_BYTES:
        raise KeyStorageError(f"the client-secret pepper {path} is not {PEPPER_BYTES} bytes")
    return data


def _create(directory: Path, path: Path) -> None:
    """Write a new pepper at ``path`` unless another process already did (atomic: temp file + link)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    temp = directory / f".{PEPPER_FILE}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(PEPPER_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs is used
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
