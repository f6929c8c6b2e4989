"""The researcher's Crypt4GH keys in the client: send the public one, decrypt with the secret one.

``--crypt4gh-key FILE`` reads the ``crypt4gh-keygen`` public key file, checks it with the same
strict parser the gateway uses, and sends the base64 of the whole file in ``Crypt4GH-Public-Key``
(the gateway then serves encrypted datasets re-encrypted to that key; the DRS checksum the
download is verified against is the one of that re-encrypted stream).

``--crypt4gh-secret-key FILE`` also decrypts: once a file is downloaded and its sha-256
verified, it is decrypted with the ``crypt4gh`` package into the same name without ``.c4gh``
(or with ``.decrypted`` added), through a ``.part`` file renamed into place. The secret key's
passphrase comes from ``C4GH_PASSPHRASE`` (as for the ``crypt4gh`` command) or is asked for on the
terminal; it is never printed or logged, and the ``crypt4gh`` package's own DEBUG logging (which
names keys) is turned off for the decryption.
"""

from __future__ import annotations

import base64
import getpass
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from crypt4gh.lib import decrypt as c4gh_decrypt

from broker.client.http import EXIT_USAGE, ClientError
from broker.gateway.c4gh.errors import Crypt4GHError
from broker.gateway.c4gh.keys import MAX_PUBLIC_KEY_FILE_BYTES, NodeKey, load_node_key, parse_recipient_key

KEY_HEADER = "Crypt4GH-Public-Key"
PASSPHRASE_ENV = "C4GH_PASSPHRASE"
SUFFIX = ".c4gh"


def public_key_header(path: str | Path) -> str:
    """The ``Crypt4GH-Public-Key`` value for a public key file (usage error 2 when it is not one)."""
    try:
        with Path(path).open("rb") as handle:
            data = handle.read(MAX_PUBLIC_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ClientError("bad_crypt4gh_key", f"Cannot read {path}: {exc.strerror or exc}.", EXIT_USAGE) from None
    value = base64.b64encode(data).decode("ascii")
    try:
        parse_recipient_key(value, header_name=KEY_HEADER)
    except Crypt4GHError:
        raise ClientError(
            "bad_crypt4gh_key", f"{path} is not a Crypt4GH public key file (make one with crypt4gh-keygen).", EXIT_USAGE
        ) from None
    return value


def load_secret_key(path: str | Path) -> NodeKey:
    """The researcher's secret key; passphrase from ``C4GH_PASSPHRASE`` or the terminal."""
    environ = dict(os.environ)
    if not environ.get(PASSPHRASE_ENV) and sys.stdin.isatty():
        environ[PASSPHRASE_ENV] = getpass.getpass(f"Passphrase for {path}: ")
    try:
        return load_node_key(path, passphrase_env=PASSPHRASE_ENV, environ=environ, allow_unencrypted=True)
    except Crypt4GHError as exc:
        raise ClientError("bad_crypt4gh_secret_key", exc.message.replace("node's ", ""), EXIT_USAGE) from None


def plain_name(path: Path) -> Path:
    """Where the decrypted file goes: the name without ``.c4gh``, or with ``.decrypted`` added."""
    if path.name.endswith(SUFFIX) and len(path.name) > len(SUFFIX):
        return path.with_name(path.name[: -len(SUFFIX)])
    return path.with_name(path.name + ".decrypted")


@dataclass
class Decryptor:
    """Decrypts verified downloads with the researcher's secret key."""

    key: NodeKey = field(repr=False)

    def __call__(self, encrypted: Path) -> Path:
        """Decrypt ``encrypted`` next to itself; returns the plaintext's path. Raises ClientError."""
        dest = plain_name(encrypted)
        part = dest.with_name(dest.name + ".part")
        quiet = logging.getLogger("crypt4gh")
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # its DEBUG lines name the keys
        try:
            with encrypted.open("rb") as src, part.open("wb") as out:
                c4gh_decrypt([(0, self.key.secret, None)], src, out)
        except (ValueError, OSError) as exc:
            part.unlink(missing_ok=True)
            raise ClientError(
                "decrypt_failed",
                f"{encrypted.name}: cannot be decrypted with this secret key "
                f"({type(exc).__name__}); was it sent with the matching --crypt4gh-key?",
            ) from None
        finally:
            quiet.setLevel(level)
        os.replace(part, dest)
        return dest
