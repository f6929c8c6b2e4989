"""Crypt4GH keys: the node's private key from its key file, the researcher's public key from a request.

Both parsers are written here rather than taken from ``crypt4gh.keys`` on purpose:

- ``crypt4gh.keys.c4gh.parse_private_key`` is wrapped in ``exit_on_invalid_passphrase``, which prints
  to stderr and calls ``sys.exit(2)`` on a wrong passphrase (fatal inside a server), and its loaders
  log key material at DEBUG level and read files of any size.
- the researcher's key arrives in an HTTP header from anyone on the Internet: the parser must be
  strict and bounded (length caps, exact base64, exactly 32 key bytes, canonical, not low order).

The private key file format (Crypt4GH key format, ``c4gh-v1``) is: a PEM-like armour
``-----BEGIN CRYPT4GH PRIVATE KEY-----`` around base64 of ``"c4gh-v1" || string(kdf name) ||
[string(rounds:4 BE || salt) if kdf != "none"] || string(cipher name) || string(private data) ||
[string(comment)]``, each string prefixed with its 2-byte big-endian length. With the cipher
``chacha20_poly1305`` the private data is ``nonce (12) || ChaCha20-Poly1305(secret key (32)) || MAC``
under a key derived from the passphrase by the named KDF (scrypt, bcrypt or PBKDF2-HMAC-SHA256;
the derivation itself is ``crypt4gh.keys.kdf.derive_key``, which logs nothing).

The passphrase comes from an environment variable *name* or a secret *file path*, never from a
settings value, and is never logged, printed or kept after the key is opened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from crypt4gh.keys.kdf import derive_key
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

import broker.gateway.c4gh._sodium as _sodium
from broker.gateway.c4gh.errors import NodeKeyError, PublicKeyError

MAX_KEY_FILE_BYTES = 16 * 1024
MAX_PASSPHRASE_FILE_BYTES = 4 * 1024
MAX_PUBLIC_KEY_HEADER_CHARS = 1024  # the base64 of a crypt4gh-keygen .pub file is about 156 characters
MAX_PUBLIC_KEY_FILE_BYTES = 512

_C4GH_MAGIC = b"c4gh-v1"
_PRIVATE_BEGIN = b"-----BEGIN CRYPT4GH PRIVATE KEY-----"
_PRIVATE_END = b"-----END CRYPT4GH PRIVATE KEY-----"
_PUBLIC_BEGIN = b"-----BEGIN CRYPT4GH PUBLIC KEY-----"
_PUBLIC_END = b"-----END CRYPT4GH PUBLIC KEY-----"
_SCRYPT = b"scrypt"
_BCRYPT = b"bcrypt"
_PBKDF2 = b"pbkdf2_hmac_sha256"
# Work caps for the KDF rounds a key file may ask for: far above what crypt4gh-keygen writes
# (bcrypt 100, PBKDF2 100000, scrypt ignores rounds), low enough that a corrupt file cannot hang startup.
_MAX_ROUNDS = {_BCRYPT: 1024, _PBKDF2: 5_000_000, _SCRYPT: 2**32 - 1}
_MAX_SALT_BYTES = 64
_CURVE25519_P = 2**255 - 19


# --------------------------------------------------------------------------- the node's key


@dataclass(frozen=True, slots=True, eq=False)
class NodeKey:
    """The node's X25519 key pair. The secret never appears in ``repr`` and keys are not compared."""

    secret: bytes = field(repr=False)
    public: bytes

    @property
    def fingerprint(self) -> str:
        """A short public identifier of the key (SHA-256 of the public key), safe to log."""
        return hashlib.sha256(self.public).hexdigest()[:16]


def load_node_key(
    key_file: str | os.PathLike[str],
    *,
    passphrase_env: str | None = None,
    passphrase_file: str | os.PathLike[str] | None = None,
    allow_unencrypted: bool = False,
    environ: Mapping[str, str] | None = None,
) -> NodeKey:
    """Open the node's Crypt4GH private key file (as written by ``crypt4gh-keygen``).

    The passphrase is read from the environment variable named ``passphrase_env`` or from the file
    at ``passphrase_file`` (one trailing newline dropped); give at most one. A key stored without
    a passphrase is refused unless ``allow_unencrypted``. ``environ`` defaults to ``os.environ``.

    Raises :class:`NodeKeyError` with codes ``node_key_missing``, ``node_key_unreadable``,
    ``node_key_not_crypt4gh``, ``node_key_unsupported``, ``node_key_unencrypted``,
    ``node_key_passphrase_missing``, ``node_key_passphrase_ambiguous``, ``node_key_wrong_passphrase``.
    """
    if passphrase_env is not None and passphrase_file is not None:
        raise NodeKeyError(
            "node_key_passphrase_ambiguous",
            "Give the node key's passphrase either as an environment variable name or as a file, not both.",
        )
    path = Path(key_file)
    data = _read_bounded(path, MAX_KEY_FILE_BYTES, "node_key", "the node's Crypt4GH private key file")
    blob = _unarmour_private(data, path)
    parsed = _parse_private_blob(blob, path)
    if parsed.cipher == b"none":
        if not allow_unencrypted:
            raise NodeKeyError(
                "node_key_unencrypted",
                f"The node's private key {path} is stored without a passphrase; protect it with "
                "`crypt4gh-keygen --relock` (or allow unencrypted keys explicitly).",
            )
        secret = parsed.private_data
    else:
        passphrase = _read_passphrase(passphrase_env, passphrase_file, environ, path)
        secret = _unlock(parsed, passphrase, path)
    if len(secret) != _sodium.KEY_BYTES:
        raise NodeKeyError("node_key_not_crypt4gh", f"{path} does not hold a 32-byte X25519 private key.")
    return NodeKey(secret=secret, public=_sodium.derive_public(secret))


@dataclass(frozen=True, slots=True)
class _PrivateBlob:
    kdf: bytes
    rounds: int
    salt: bytes
    cipher: bytes
    private_data: bytes = field(repr=False)


def _read_bounded(path: Path, limit: int, prefix: str, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise NodeKeyError(f"{prefix}_missing", f"{what} {path} does not exist.") from None
    except OSError as exc:
        raise NodeKeyError(f"{prefix}_unreadable", f"{what} {path} cannot be read ({exc.strerror}).") from None
    if len(data) > limit:
        raise NodeKeyError(f"{prefix}_unreadable", f"{what} {path} is larger than {limit} bytes.")
    return data


def _not_c4gh(path: Path, why: str) -> NodeKeyError:
    return NodeKeyError(
        "node_key_not_crypt4gh",
        f"{path} is not a Crypt4GH private key ({why}); make one with `crypt4gh-keygen`.",
    )


def _unarmour_private(data: bytes, path: Path) -> bytes:
    lines = [line.strip() for line in data.splitlines()]
    lines = [line for line in lines if line]
    if not lines or lines[0] != _PRIVATE_BEGIN or lines[-1] != _PRIVATE_END or len(lines) < 3:
        if lines and lines[0].startswith(b"-----BEGIN OPENSSH"):
            raise _not_c4gh(path, "an OpenSSH key; this node reads only Crypt4GH-format keys")
        raise _not_c4gh(path, "no CRYPT4GH PRIVATE KEY armour")
    try:
        return base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise _not_c4gh(path, "the armoured text is not base64") from None


def _parse_private_blob(blob: bytes, path: Path) -> _PrivateBlob:
    if not blob.startswith(_C4GH_MAGIC):
        raise _not_c4gh(path, "it does not start with c4gh-v1")
    pos = len(_C4GH_MAGIC)

    def string() -> bytes:
        nonlocal pos
        if pos + 2 > len(blob):
            raise _not_c4gh(path, "truncated")
        length = int.from_bytes(blob[pos : pos + 2], "big")
        value = blob[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise _not_c4gh(path, "truncated")
        pos += 2 + length
        return value

    kdf = string()
    rounds, salt = 0, b""
    if kdf != b"none":
        if kdf not in _MAX_ROUNDS:
            raise NodeKeyError("node_key_unsupported", f"{path} uses an unknown key derivation {_printable(kdf)}.")
        options = string()
        if len(options) < 4 or len(options) - 4 > _MAX_SALT_BYTES:
            raise _not_c4gh(path, "malformed KDF options")
        rounds, salt = int.from_bytes(options[:4], "big"), options[4:]
        if rounds > _MAX_ROUNDS[kdf] or (kdf != _SCRYPT and rounds < 1):
            raise NodeKeyError("node_key_unsupported", f"{path} asks for {rounds} KDF rounds, outside what we accept.")
    cipher = string()
    private_data = string()
    if cipher not in (b"none", b"chacha20_poly1305"):
        raise NodeKeyError("node_key_unsupported", f"{path} uses an unknown key cipher {_printable(cipher)}.")
    if (cipher == b"none") != (kdf == b"none"):
        raise _not_c4gh(path, "the KDF and the cipher disagree about encryption")
    return _PrivateBlob(kdf=kdf, rounds=rounds, salt=salt, cipher=cipher, private_data=private_data)


def _printable(value: bytes) -> str:
    return repr(value[:32].decode("ascii", "replace"))


def _read_passphrase(
    env_name: str | None,
    file: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None,
    key_path: Path,
) -> bytes:
    if env_name is not None:
        value = (os.environ if environ is None else environ).get(env_name)
        if value is None or value == "":
            raise NodeKeyError(
                "node_key_passphrase_missing",
                f"The node's private key {key_path} is locked and the environment variable {env_name} "
                "that should hold its passphrase is not set.",
            )
        return value.encode("utf-8")
    if file is not None:
        data = _read_bounded(Path(file), MAX_PASSPHRASE_FILE_BYTES, "node_key_passphrase", "The passphrase file")
        if data.endswith(b"\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n"):
            data = data[:-1]
        if not data:
            raise NodeKeyError("node_key_passphrase_missing", f"The passphrase file {file} is empty.")
        return data
    raise NodeKeyError(
        "node_key_passphrase_missing",
        f"The node's private key {key_path} is locked with a passphrase; name the environment variable "
        "or the secret file that holds it.",
    )


def _unlock(parsed: _PrivateBlob, passphrase: bytes, path: Path) -> bytes:
    if len(parsed.private_data) <= _sodium.NONCE_BYTES:
        raise _not_c4gh(path, "the encrypted key is truncated")
    try:
        derived = bytes(derive_key(parsed.kdf, passphrase, parsed.salt, parsed.rounds))
    except Exception:  # the KDF libraries raise various types on bad parameters
        raise NodeKeyError("node_key_unsupported", f"The key derivation of {path} failed on its parameters.") from None
    nonce, sealed = parsed.private_data[: _sodium.NONCE_BYTES], parsed.private_data[_sodium.NONCE_BYTES :]
    try:
        return ChaCha20Poly1305(derived).decrypt(nonce, sealed, None)
    except InvalidTag:
        raise NodeKeyError(
            "node_key_wrong_passphrase", f"The passphrase does not open the node's private key {path}."
        ) from None


# --------------------------------------------------------------------------- the researcher's key


@dataclass(frozen=True, slots=True)
class RecipientKey:
    """A researcher's X25519 public key, checked: 32 bytes, canonical, not of low order."""

    public: bytes

    @property
    def fingerprint(self) -> str:
        """A short identifier (SHA-256 of the key), for audit records and cache keys."""
        return hashlib.sha256(self.public).hexdigest()[:16]


def how_to_send_key(header_name: str) -> str:
    """The sentence that tells a person how to send their key in ``header_name``."""
    return (
        f"Send your Crypt4GH public key in the {header_name} header as the base64 of the whole public key "
        "file made by crypt4gh-keygen (for example `base64 -w0 mykey.pub`), or as the base64 of the raw "
        "32-byte X25519 public key."
    )


def parse_recipient_key(value: str | bytes | None, *, header_name: str = "X-C4GH-Public-Key") -> RecipientKey:
    """Parse the researcher's public key from a request header value.

    Accepted: standard base64 (with padding, canonical) of either the whole Crypt4GH public key file
    (``-----BEGIN CRYPT4GH PUBLIC KEY-----`` armour around the base64 of 32 bytes) or of the raw 32
    key bytes. Refused with :class:`PublicKeyError` (code ``invalid_public_key``, or
    ``public_key_missing``): anything longer than a key file can be, other alphabets, whitespace
    inside, OpenSSH keys, a key that is not 32 bytes, a non-canonical encoding, or a low-order point
    (all zero and the like, with which the re-encrypted header would be readable by anyone).
    """
    how = how_to_send_key(header_name)
    if value is None:
        raise PublicKeyError("public_key_missing", f"No public key was sent. {how}")
    if not isinstance(value, str | bytes):
        raise PublicKeyError("invalid_public_key", f"The public key must be text. {how}")
    if len(value) > MAX_PUBLIC_KEY_HEADER_CHARS:
        raise PublicKeyError("invalid_public_key", f"The public key is too long ({len(value)} characters). {how}")
    if isinstance(value, str):
        try:
            raw_text = value.encode("ascii")
        except UnicodeEncodeError:
            raise PublicKeyError("invalid_public_key", f"The public key is not base64 (non-ASCII). {how}") from None
    else:
        raw_text = value
    text = raw_text.strip(b" \t")
    if not text:
        raise PublicKeyError("public_key_missing", f"No public key was sent. {how}")
    decoded = _strict_b64(text)
    if decoded is None:
        if text.startswith(b"-----") or b"CRYPT4GH" in text:
            problem = "The public key file was sent as it is; it must be base64-encoded as a whole."
        elif any(c in text for c in b"-_") and not any(c in text for c in b"+/"):
            problem = "The public key uses the URL-safe base64 alphabet; use the standard one (+ and /, padded)."
        else:
            problem = "The public key is not exact standard base64."
        raise PublicKeyError("invalid_public_key", f"{problem} {how}")
    if len(decoded) == _sodium.KEY_BYTES:
        key = decoded
    elif decoded.lstrip().startswith(b"-----BEGIN "):
        key = _unarmour_public(decoded, how)
    elif decoded.startswith(b"ssh-"):
        raise PublicKeyError(
            "invalid_public_key", f"OpenSSH public keys are not accepted; make a Crypt4GH key pair. {how}"
        )
    else:
        raise PublicKeyError(
            "invalid_public_key", f"The decoded public key is {len(decoded)} bytes, neither a key file nor 32. {how}"
        )
    _check_point(key, how)
    return RecipientKey(public=key)


def _strict_b64(text: bytes) -> bytes | None:
    """Standard-alphabet, padded, canonical base64 (re-encoding gives the same text), else None."""
    if not text or len(text) % 4:
        return None
    try:
        decoded = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if base64.b64encode(decoded) == text else None


def _unarmour_public(data: bytes, how: str) -> bytes:
    if len(data) > MAX_PUBLIC_KEY_FILE_BYTES:
        raise PublicKeyError("invalid_public_key", f"The public key file is too long. {how}")
    lines = [line.strip(b" \t\r") for line in data.split(b"\n")]
    lines = [line for line in lines if line]
    if len(lines) != 3 or lines[0] != _PUBLIC_BEGIN or lines[2] != _PUBLIC_END:
        raise PublicKeyError(
            "invalid_public_key", f"The decoded text is not a Crypt4GH public key file (one base64 line). {how}"
        )
    key = _strict_b64(lines[1])
    if key is None or len(key) != _sodium.KEY_BYTES:
        raise PublicKeyError(
            "invalid_public_key", f"The key line of the public key file is not the base64 of 32 bytes. {how}"
        )
    return key


def _check_point(key: bytes, how: str) -> None:
    """Refuse non-canonical encodings (u >= p, top bit set) and points of small order.

    A point of small order gives an all-zero shared secret whatever the scalar (X25519 scalars are
    multiples of 8): anyone could read a header sealed to it. The table of such points is checked
    against OpenSSL's refusal of an all-zero X25519 result in the tests.
    """
    if int.from_bytes(key, "little") >= _CURVE25519_P:
        raise PublicKeyError("invalid_public_key", f"The public key is not a canonical X25519 key. {how}")
    if _sodium.is_small_order(key):
        raise PublicKeyError(
            "invalid_public_key", f"The public key is a weak (low-order) X25519 point and is refused. {how}"
        )
