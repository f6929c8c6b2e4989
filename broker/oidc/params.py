"""Reading OAuth request parameters strictly (RFC 6749 3.1, 3.2: a parameter MUST NOT repeat).

Empty values count as absent (RFC 6749 3.1 "Parameters sent without a value MUST be treated
as if they were omitted"). A repeated parameter is reported, never silently resolved.
"""

from __future__ import annotations

from werkzeug.datastructures import MultiDict

from broker.errors import BrokerError

MAX_PARAM_CHARS = 8192


class RepeatedParameter(BrokerError, ValueError):
    """A parameter appears more than once."""

    status = 400
    code = "invalid_request"

    def __init__(self, name: str) -> None:
        super().__init__(f"parameter {name!r} is repeated")
        self.name = name


class OversizedParameter(BrokerError, ValueError):
    """A parameter value is longer than :data:`MAX_PARAM_CHARS`."""

    status = 400
    code = "invalid_request"

    def __init__(self, name: str) -> None:
        super().__init__(f"parameter {name!r} is too long")
        self.name = name


def single_values(data: MultiDict[str, str]) -> dict[str, str]:
    """Every non-empty parameter once; raises on repeats and oversized values."""
    out: dict[str, str] = {}
    for name in data:
        values = [v for v in data.getlist(name) if v != ""]
        if len(values) > 1:
            raise RepeatedParameter(name)
        if values:
            if len(values[0]) > MAX_PARAM_CHARS:
                raise OversizedParameter(name)
            out[name] = values[0]
    return out


def scope_list(value: str | None) -> tuple[str, ...]:
    """Space-separated scopes, de-duplicated, order kept."""
    seen: dict[str, None] = {}
    for item in (value or "").split(" "):
        if item:
            seen.setdefault(item, None)
    return tuple(seen)
