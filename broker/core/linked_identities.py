"""The ``LinkedIdentities`` visa value: parse and emit.

Passport 1.2 (LinkedIdentities): the value is a ``;``-separated list of
``<uri-encoded-sub>,<uri-encoded-iss>`` entries with no whitespace. Our API speaks
``(iss, sub)`` pairs everywhere (the order of :attr:`broker.core.models.Visa.identity`),
while the wire puts ``sub`` first; only this module knows the wire order.

Parsing is strict because its output decides whose visas may be combined:

- split on ``;``, then each entry must contain exactly one ``,`` (a ``,`` or ``;`` inside a sub
  or iss must be percent-encoded, so a second one means the value is broken, not ambiguous);
- no whitespace anywhere, no empty entry and no empty part;
- each part is percent-decoded by RFC 3986: ``%`` must be followed by two hex digits, and the
  decoded bytes must be UTF-8. ``+`` is a literal plus, not a space (Java ``URLEncoder`` form
  encoding writes a space as ``+``; a sub containing a space from such an issuer then fails to
  link, which fails closed). Characters that need no encoding may appear raw, which accepts both
  encodings the spec itself shows (``https%3A%2F%2F...`` and ``https:%2F%2F...``).

Emitting is canonical: ``urllib.parse.quote(part, safe='')``, i.e. every byte except the RFC 3986
unreserved characters ``A-Z a-z 0-9 - . _ ~`` is percent-encoded (``:`` and ``/`` included). Since
``split_pattern`` conditions run on the encoded text, this is the form condition authors must
write their globs for when they target our visas.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import quote

ENTRY_SEPARATOR = ";"
PART_SEPARATOR = ","
MAX_LINKED_IDENTITIES = 256  # entries in one value (DESIGN rule 5)

_HEX = frozenset("0123456789abcdefABCDEF")


def parse_linked_identities(value: str, *, max_entries: int = MAX_LINKED_IDENTITIES) -> tuple[tuple[str, str], ...]:
    """``"<sub>,<iss>;..."`` -> ``((iss, sub), ...)`` in the order written. ``ValueError`` if malformed."""
    if not isinstance(value, str):
        raise ValueError(f"LinkedIdentities value must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError("LinkedIdentities value is empty")
    if any(ch.isspace() for ch in value):
        raise ValueError("LinkedIdentities value contains whitespace")
    entries = value.split(ENTRY_SEPARATOR)
    if len(entries) > max_entries:
        raise ValueError(f"LinkedIdentities value has {len(entries)} entries; the limit is {max_entries}")
    identities: list[tuple[str, str]] = []
    for index, entry in enumerate(entries):
        if not entry:
            raise ValueError(f"LinkedIdentities entry {index} is empty")
        parts = entry.split(PART_SEPARATOR)
        if len(parts) != 2:
            raise ValueError(
                f"LinkedIdentities entry {index} has {len(parts) - 1} commas; expected exactly one (<sub>,<iss>)"
            )
        raw_sub, raw_iss = parts
        sub = _percent_decode(raw_sub, f"LinkedIdentities entry {index} sub")
        iss = _percent_decode(raw_iss, f"LinkedIdentities entry {index} iss")
        identities.append((iss, sub))
    return tuple(identities)


def format_linked_identities(ids: Iterable[tuple[str, str]]) -> str:
    """``((iss, sub), ...)`` -> the canonical wire value ``quote(sub),quote(iss);...`` (safe='').

    ``ValueError`` for no identities, a non-string or empty part, or text that is not encodable
    as UTF-8 (a lone surrogate).
    """
    entries: list[str] = []
    for index, pair in enumerate(ids):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"identity {index} must be an (iss, sub) pair")
        iss, sub = pair
        for name, part in (("iss", iss), ("sub", sub)):
            if not isinstance(part, str) or not part:
                raise ValueError(f"identity {index} {name} must be a non-empty string")
        try:
            entries.append(f"{quote(sub, safe='')}{PART_SEPARATOR}{quote(iss, safe='')}")
        except UnicodeEncodeError as exc:
            raise ValueError(f"identity {index} is not encodable as UTF-8: {exc.reason}") from exc
    if not entries:
        raise ValueError("LinkedIdentities needs at least one identity")
    return ENTRY_SEPARATOR.join(entries)


def _percent_decode(text: str, where: str) -> str:
    """Strict RFC 3986 percent-decoding (written out so every bad escape is an error).

    ``urllib.parse.unquote`` silently keeps a malformed ``%zz`` and replaces invalid UTF-8; both
    would let two different wire values decode to the same identity, or garbage to a real one.
    """
    if not text:
        raise ValueError(f"{where} is empty")
    if "%" not in text:
        return text
    out = bytearray()
    index = 0
    length = len(text)
    while index < length:
        ch = text[index]
        if ch == "%":
            digits = text[index + 1 : index + 3]
            if len(digits) != 2 or not _HEX.issuperset(digits):
                raise ValueError(f"{where} has a bad percent-escape at offset {index}")
            out.append(int(digits, 16))
            index += 3
        else:
            out.extend(ch.encode("utf-8"))
            index += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} does not decode to UTF-8 text") from exc
