"""Crypt4GH datasets on the gateway: the node's key, the researcher's key, the re-encrypted stream.

A dataset declared ``encryption: crypt4gh`` holds files encrypted to the node's key
(``gateway.crypt4gh.key_file``; its passphrase from the environment variable named by
``passphrase_env`` or the file ``passphrase_file``, never a setting value). Every read of such a
file must carry the researcher's public key, in the first of :data:`KEY_HEADERS` it sends
(``Crypt4GH-Public-Key``; ``X-C4GH-Public-Key`` and htsget's ``Htsget-Context-Public-Key`` are
accepted too; several must agree), as the base64 of the ``crypt4gh-keygen`` ``.pub`` file or of
the raw 32-byte key. Without one the answer is a 400 that says how to send it.

What is served is ``header re-encrypted to the researcher || the stored body, unchanged``: the
node opens its own header packets, drops those of other recipients, and seals the rest for the
researcher. ``Range`` is answered in the coordinates of that served stream. The new header is
deterministic (synthetic nonces, :func:`broker.gateway.c4gh._sodium.seal_synthetic`): every worker
and every request gives one researcher the same bytes for one file version, so a download resumed
or split into ranges across requests and workers stays one consistent stream, and ``ETag`` is
the stored validator joined with the key's fingerprint.

This module knows nothing of the web or of the gateway's decisions; :mod:`broker.gateway.service`
calls it after the decision, and turns its errors (each a :class:`~broker.errors.BrokerError`
with a status) into answers.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from broker.gateway.c4gh.errors import PublicKeyError
from broker.gateway.c4gh.keys import NodeKey, RecipientKey, how_to_send_key, load_node_key, parse_recipient_key
from broker.gateway.c4gh.reencrypt import Reencrypted, reencrypt_stored
from broker.gateway.c4gh.stored import RandomReader
from broker.gateway.settings import Crypt4GHSettings

KEY_HEADERS = ("Crypt4GH-Public-Key", "X-C4GH-Public-Key", "Htsget-Context-Public-Key")
CACHED_HEADERS = 256


class _Headers(Protocol):
    """What :func:`recipient_from` needs of request headers."""

    def get(self, key: str) -> str | None: ...


def recipient_from(headers: _Headers) -> RecipientKey:
    """The researcher's key from the request; :class:`PublicKeyError` (400) when missing, bad or conflicting."""
    sent = [(name, value) for name in KEY_HEADERS if (value := headers.get(name)) is not None]
    if not sent:
        raise PublicKeyError(
            "public_key_missing",
            "This dataset is stored encrypted (Crypt4GH) and is served re-encrypted to your own key. "
            + how_to_send_key(KEY_HEADERS[0]),
        )
    keys = {name: parse_recipient_key(value, header_name=name) for name, value in sent}
    if len({key.public for key in keys.values()}) > 1:
        raise PublicKeyError(
            "public_key_conflict", f"The headers {', '.join(keys)} name different public keys; send one key."
        )
    return next(iter(keys.values()))


def load_key(settings: Crypt4GHSettings) -> NodeKey:
    """The node's key, opened once at startup (a :class:`~broker.gateway.c4gh.errors.NodeKeyError` stops it)."""
    return load_node_key(
        settings.key_file,
        passphrase_env=settings.passphrase_env,
        passphrase_file=settings.passphrase_file,
        allow_unencrypted=settings.allow_unencrypted_key,
    )


@dataclass
class Reencryptor:
    """Re-encrypts stored headers with the node's key, remembering recent results per file version and key."""

    node_key: NodeKey

    def __post_init__(self) -> None:
        self._nonce_key = hashlib.sha256(b"ga4gh-broker crypt4gh header nonces\x00" + self.node_key.secret).digest()
        self._cache: OrderedDict[tuple[str, str, bytes], Reencrypted] = OrderedDict()
        self._lock = threading.Lock()

    def prepare(self, reader: RandomReader, object_key: str, version: str, recipient: RecipientKey) -> Reencrypted:
        """The re-encrypted header and the stored body's place, for ``recipient``.

        ``object_key`` and ``version`` name the stored file and its version (its bytes change
        with it); a cached result is used only for the same file, version and key.
        """
        key = (object_key, version, recipient.public)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                self._cache.move_to_end(key)
                return found
        made = reencrypt_stored(reader, self.node_key, recipient, nonce_key=self._nonce_key)
        with self._lock:
            self._cache[key] = made
            while len(self._cache) > CACHED_HEADERS:
                self._cache.popitem(last=False)
        return made


def served_etag(stored_etag: str | None, recipient: RecipientKey) -> str | None:
    """A strong validator of the served stream: the stored one joined with the key's fingerprint."""
    if stored_etag is None:
        return None
    tag = stored_etag.removeprefix("W/").strip('"')
    return f'"{tag}-c4gh-{recipient.fingerprint}"'
