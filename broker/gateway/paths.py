"""Request paths to object keys: decode once, canonicalise, refuse anything ambiguous.

THREAT-MODEL PX-01 (prefix escape by dot segments and encodings), PX-02 (dataset id
spellings) and PX-05 (the upstream is chosen by configuration only).

Why this is written by hand rather than taken from Werkzeug's ``PATH_INFO`` or
``os.path``/``posixpath.normpath``: each of those *normalises*, and normalising is the
bug class here. ``PATH_INFO`` is already decoded once, so ``%2f`` and ``/`` look alike and
a second decode elsewhere (an upstream, nginx, a filesystem layer) turns ``%252e`` into
``.``; ``normpath`` silently resolves ``a/../b`` into a *different* object that was never
authorised. So the rules are: take the raw request target exactly as received, decode it
exactly once, and **refuse** (never repair) anything a later layer could read differently:

- the target must be origin-form (``/...``): absolute-form, authority-form and ``*`` are refused;
- only RFC 3986 ``pchar`` characters may appear raw (no space, backslash, control, non-ASCII);
- the dataset segment is compared raw (never decoded) and exactly, so ``ds%31`` or ``DS1``
  are simply other, unknown datasets;
- each object segment is percent-decoded once, must be strict UTF-8 (overlong ``%c0%ae``
  fails), and is refused if it is empty (``//``, trailing ``/``), ``.`` or ``..``, or
  contains ``/`` (an encoded slash), ``\\``, ``;`` (``..;/``), ``%`` (anything
  double-encoded), NUL or any control / format character, or if its Unicode compatibility
  form (NFKC) is a dot segment or contains a slash (fullwidth full stops, fullwidth solidus);
- the result is the object key that is authorised, and the very same key is what reaches
  the store: joined under the dataset's configured prefix for a folder, or re-encoded
  segment by segment (every non-unreserved byte percent-encoded) for an HTTP upstream, so
  no dot segment or separator can appear after authorisation.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from broker.errors import BrokerError

MAX_PATH_BYTES = 1024
# Dataset identifiers (and store names) appear raw in URLs and in nginx locations.
DATASET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")
MAX_SEGMENT_BYTES = 255
MAX_SEGMENTS = 64

# RFC 3986 pchar (unreserved / pct-encoded / sub-delims / ":" / "@") plus "/" for the path,
# and the same plus "?" for the query. Everything else must not appear raw in a target.
_RAW_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/%]*")
_RAW_QUERY = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*")
_HEX = frozenset("0123456789abcdefABCDEF")
# Printable ASCII other than / \\ ; % and DEL, at most 255 characters: nothing to check further.
_PLAIN_SEGMENT = re.compile(r"[\x20-\x24\x26-\x2e\x30-\x3a\x3c-\x5b\x5d-\x7e]{1,255}")
_DOT_SEGMENTS = frozenset({".", ".."})


class PathError(BrokerError):
    """A request path we refuse (400 with ``code``), before any authorisation or store access."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message, status=status, code=code)


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object of one dataset: the key that is authorised and then served.

    ``dataset`` is exactly as it appeared in the request (never decoded); ``path`` is the
    canonical object path: validated segments joined with ``/``.
    """

    dataset: str
    path: str

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))


@dataclass(frozen=True, slots=True)
class Target:
    """A parsed request target: the object and the raw (undecoded) query string."""

    ref: ObjectRef
    query: str


def split_target(raw_target: str) -> tuple[str, str]:
    """Split a raw origin-form request target into (raw path, raw query); refuse other forms."""
    if not raw_target.startswith("/") or raw_target.startswith("//"):
        # absolute-form (http://...), authority-form (CONNECT host:port), asterisk-form, or
        # a network-path reference: none of them name an object here (PX-05).
        raise PathError("invalid_target", "The request target must be a path starting with a single '/'.")
    if len(raw_target.encode("latin-1", "replace")) > MAX_PATH_BYTES * 4:
        raise PathError("path_too_long", "The request target is too long.", 414)
    path, sep, query = raw_target.partition("?")
    if not _RAW_PATH.fullmatch(path):
        raise PathError("invalid_path", "The path contains characters that must be percent-encoded.")
    if sep and not _RAW_QUERY.fullmatch(query):
        raise PathError("invalid_query", "The query contains characters that must be percent-encoded.")
    return path, query


def parse_data_target(raw_target: str, prefix: str = "/data/") -> Target:
    """Parse ``<prefix><dataset>/<object path>[?query]`` from a raw request target.

    ``prefix`` is matched literally (it must start and end with ``/``). Raises
    :class:`PathError` for anything refused; the result is what gets authorised.
    """
    path, query = split_target(raw_target)
    if not path.startswith(prefix):
        raise PathError("invalid_path", f"Data paths start with {prefix}.")
    dataset, sep, rest = path[len(prefix) :].partition("/")
    if not dataset:
        raise PathError("invalid_path", "The path names no dataset.")
    if not sep or not rest:
        raise PathError("invalid_path", "The path names no object inside the dataset.")
    segments = [_decode_segment(raw) for raw in rest.split("/")]
    _check_shape(segments)
    return Target(ObjectRef(dataset, "/".join(segments)), query)


def validate_object_path(path: str) -> tuple[str, ...]:
    """Check an already-decoded object path (DRS ids, configured prefixes); return its segments.

    The same segment rules as request paths apply; nothing is decoded here.
    """
    if not path:
        raise PathError("invalid_path", "The object path is empty.")
    segments = path.split("/")
    for segment in segments:
        _check_segment(segment)
    _check_shape(segments)
    return tuple(segments)


def quote_segments(segments: tuple[str, ...] | list[str]) -> str:
    """Percent-encode each segment fully (only RFC 3986 unreserved characters stay raw).

    Used for upstream URLs and ``X-Accel-Redirect``; since no segment is ``.``/``..`` and
    ``/`` inside a segment becomes ``%2F``, the result has exactly these segments.
    """
    return "/".join(quote(segment, safe="") for segment in segments)


def _decode_segment(raw: str) -> str:
    """Percent-decode one raw segment exactly once (strict), then check it."""
    if not raw:
        raise PathError("empty_segment", "The path contains an empty segment ('//' or a trailing '/').")
    if "%" not in raw:
        text = raw
    else:
        out = bytearray()
        i = 0
        n = len(raw)
        while i < n:
            ch = raw[i]
            if ch == "%":
                hi, lo = raw[i + 1 : i + 2], raw[i + 2 : i + 3]
                if not hi or not lo or hi not in _HEX or lo not in _HEX:
                    raise PathError("invalid_encoding", "A '%' is not followed by two hex digits.")
                out.append(int(hi + lo, 16))
                i += 3
            else:
                out.append(ord(ch))
                i += 1
        try:
            text = out.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            raise PathError("invalid_encoding", "The path is not valid UTF-8 once decoded.") from None
    _check_segment(text)
    return text


def _check_segment(text: str) -> None:
    """The rules every decoded segment must meet (see the module docstring)."""
    if _PLAIN_SEGMENT.fullmatch(text) and text not in _DOT_SEGMENTS:
        return  # the common case: printable ASCII without separators, short enough
    if not text:
        raise PathError("empty_segment", "The path contains an empty segment ('//' or a trailing '/').")
    if text in _DOT_SEGMENTS:
        raise PathError("dot_segment", "The path contains a '.' or '..' segment.")
    if len(text.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise PathError("path_too_long", "A path segment is longer than 255 bytes.", 414)
    for ch in text:
        if ch in "/\\;%":
            names = {"/": "an encoded '/'", "\\": "a backslash", ";": "a ';'", "%": "a '%' (double encoding)"}
            raise PathError("forbidden_character", f"A path segment contains {names[ch]}.")
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            raise PathError("forbidden_character", "A path segment contains a control or format character.")
    if not text.isascii():
        folded = unicodedata.normalize("NFKC", text)
        if (
            folded in _DOT_SEGMENTS
            or any(c in folded for c in "/\\;%")
            or any(unicodedata.category(c) in ("Cc", "Cf") for c in folded)
        ):
            raise PathError(
                "forbidden_character", "A path segment is a dot segment or a separator in a compatibility spelling."
            )


def _check_shape(segments: list[str] | tuple[str, ...]) -> None:
    if len(segments) > MAX_SEGMENTS:
        raise PathError("path_too_long", f"The path has more than {MAX_SEGMENTS} segments.", 414)
    if sum(len(s.encode("utf-8")) + 1 for s in segments) > MAX_PATH_BYTES:
        raise PathError("path_too_long", f"The object path is longer than {MAX_PATH_BYTES} bytes.", 414)
