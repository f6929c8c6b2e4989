"""Typed errors of the htsget core, each carrying the htsget error name and HTTP status.

htsget 1.3 ("Errors") names the error types a server answers with; the web adapter turns any
:class:`HtsgetError` into ``{"htsget": {"error": <htsget_error>, "message": <message>}}`` with
:attr:`HtsgetError.status`. :attr:`HtsgetError.code` is a finer machine-readable reason
(``bgzf_bad_crc``, ``index_truncated``, ...) for logs and tests; it never contains input bytes.

Problems with the *stored* data (a corrupt BGZF block, an index that does not parse or does not
match its data file) are :class:`CorruptData`: not the client's fault, so they map to 500 with
htsget error ``ServerError`` rather than to one of the 4xx names.
"""

from __future__ import annotations

from typing import Any, ClassVar

from broker.errors import BrokerError


class HtsgetError(BrokerError):
    """Base of every error the htsget core raises on purpose (a :class:`~broker.errors.BrokerError`)."""

    htsget_error: ClassVar[str] = "ServerError"
    status = 500

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)

    def body(self) -> dict[str, Any]:
        """The htsget error document (``{"htsget": {"error": ..., "message": ...}}``)."""
        return {"htsget": {"error": self.htsget_error, "message": self.message}}


class InvalidInput(HtsgetError):
    """The request parameters do not adhere to the specification (400)."""

    htsget_error = "InvalidInput"
    status = 400


class InvalidRange(HtsgetError):
    """The requested range cannot be satisfied, e.g. ``start`` greater than ``end`` (400)."""

    htsget_error = "InvalidRange"
    status = 400


class NotFound(HtsgetError):
    """The requested reference (or resource) does not exist (404)."""

    htsget_error = "NotFound"
    status = 404


class UnsupportedFormat(HtsgetError):
    """The requested format is not served (400)."""

    htsget_error = "UnsupportedFormat"
    status = 400


class CorruptData(HtsgetError):
    """The stored data file or its index is malformed, truncated or inconsistent (500)."""


class BgzfError(CorruptData):
    """A BGZF block is malformed: bad header, bad BSIZE, bad deflate stream, bad CRC or size."""


class IndexFormatError(CorruptData):
    """A BAI, CSI or TBI index is malformed, truncated, out of bounds or does not match the file."""


class HeaderFormatError(CorruptData):
    """The BAM or VCF header of the data file is malformed or out of bounds."""


def shown(value: str, limit: int = 80) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters so hostile input stays short."""
    text = value if len(value) <= limit else value[:limit] + "..."
    return repr(text)
