"""Crypt4GH re-encryption for the data gateway: the pure core (no web, no settings).

Files are stored encrypted in Crypt4GH (GA4GH) to the node's key and served re-encrypted to the
researcher's own public key: only the small header is re-wrapped, the body is served as stored, so
it can still be offloaded and read by Range. The web adapter calls, in order:

1. :func:`load_node_key` once at startup (passphrase from an environment variable name or a file);
2. :func:`parse_recipient_key` on the request header (``X-C4GH-Public-Key``/``Htsget-Context-Public-Key``);
3. :func:`reencrypt_stored` on a :class:`RandomReader` of the stored object (or :func:`read_header`
   then :func:`reencrypt_header`, whose result it may cache per object version and recipient);
4. :func:`served_parts` / :func:`iter_parts` to answer a Range of the served stream;
5. :func:`plaintext_range_to_served` for htsget byte ranges of the plaintext.

Every failure is a :class:`Crypt4GHError` with ``code``, ``message`` and ``http_status``.
Importing this package does nothing but import (``crypt4gh``'s C extension included).
"""

from __future__ import annotations

from broker.gateway.c4gh.errors import (
    Crypt4GHError,
    NodeKeyError,
    PublicKeyError,
    ServedRangeError,
    StoredHeaderError,
    StoredReadError,
)
from broker.gateway.c4gh.keys import NodeKey, RecipientKey, how_to_send_key, load_node_key, parse_recipient_key
from broker.gateway.c4gh.reencrypt import (
    CIPHER_SEGMENT_SIZE,
    SEGMENT_SIZE,
    OpenedHeader,
    PlainSlice,
    Reencrypted,
    open_header,
    plaintext_range_to_served,
    plaintext_size,
    reencrypt_header,
    reencrypt_stored,
    seal_header,
)
from broker.gateway.c4gh.served import (
    HeaderPart,
    Part,
    ServedLayout,
    StoredPart,
    iter_parts,
    iter_served,
    served_parts,
)
from broker.gateway.c4gh.stored import (
    DEFAULT_LIMITS,
    BytesReader,
    FileReader,
    HeaderLimits,
    ParsedHeader,
    RandomReader,
    StoredHeader,
    parse_header,
    read_exact,
    read_header,
)

__all__ = [
    "CIPHER_SEGMENT_SIZE",
    "DEFAULT_LIMITS",
    "SEGMENT_SIZE",
    "BytesReader",
    "Crypt4GHError",
    "FileReader",
    "HeaderLimits",
    "HeaderPart",
    "NodeKey",
    "NodeKeyError",
    "OpenedHeader",
    "ParsedHeader",
    "Part",
    "PlainSlice",
    "PublicKeyError",
    "RandomReader",
    "RecipientKey",
    "Reencrypted",
    "ServedLayout",
    "ServedRangeError",
    "StoredHeader",
    "StoredHeaderError",
    "StoredPart",
    "StoredReadError",
    "how_to_send_key",
    "iter_parts",
    "iter_served",
    "load_node_key",
    "open_header",
    "parse_header",
    "parse_recipient_key",
    "plaintext_range_to_served",
    "plaintext_size",
    "read_exact",
    "read_header",
    "reencrypt_header",
    "reencrypt_stored",
    "seal_header",
    "served_parts",
]
