"""Reading JSON we do not trust yet: nesting bounded before parsing, without recursion.

Python's ``json`` recurses once per nesting level; a hostile ``[[[[...`` of 100,000 levels then
ends in ``RecursionError`` deep in the C scanner, and whether that surfaces cleanly depends on
the thread's stack and interpreter state. We refuse such input before parsing instead: this
is hand-written because no library offers a non-recursive depth check, and it is linear time.

Strings are skipped first (a regex with disjoint alternatives, so it cannot backtrack), then only
bracket characters are walked. Callers run it only when the cheap bound (the number of ``{`` and
``[``) is over the limit, so well-formed tokens never pay for it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def exceeds_depth(text: str, max_depth: int) -> bool:
    """True when ``text`` (JSON, possibly invalid) nests containers deeper than ``max_depth``."""
    if text.count("[") + text.count("{") <= max_depth:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def loads_bounded(text: str | bytes, max_depth: int = 32) -> Any:
    """``json.loads`` that refuses (ValueError) nesting deeper than ``max_depth`` before parsing."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if exceeds_depth(text, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth}")
    return json.loads(text)


def peek_jws(token: str, segment: int, max_chars: int = 65_536) -> dict[str, Any] | None:
    """Segment 0 (header) or 1 (payload) of a compact JWS as a JSON object, WITHOUT verification.

    Only for routing a token to its verifier or showing a person their own tokens: nothing read
    here is trusted. Never raises; None for anything that is not a bounded, shallow JSON object.
    """
    parts = token.split(".", 2) if isinstance(token, str) else []
    if len(parts) != 3 or len(parts[segment]) > max_chars:
        return None
    raw = parts[segment]
    try:
        value = loads_bounded(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) else None
