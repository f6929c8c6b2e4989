"""Typed errors of the Crypt4GH core: a machine code, a sentence for a person, an HTTP status hint.

Every failure the core can meet, from a bad researcher key to a hostile stored header, is one of
these; nothing else escapes its public functions for bad input. ``http_status`` is the answer the
web adapter is expected to give (it may choose otherwise): 400 for what the client sent, 416 for a
range outside the served stream, 502 for a stored object the node cannot serve, 500 for the node's
own configuration.
"""

from __future__ import annotations

from typing import ClassVar

from broker.errors import ApiError


class Crypt4GHError(Exception):
    """Base of every typed error of the Crypt4GH core."""

    http_status: ClassVar[int] = 500

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def api_error(self) -> ApiError:
        """The JSON error answer the web layer gives for this failure."""
        return ApiError(self.http_status, self.code, self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class NodeKeyError(Crypt4GHError):
    """The node's private key could not be loaded (configuration: missing, wrong passphrase, bad format)."""

    http_status = 500


class PublicKeyError(Crypt4GHError):
    """The researcher's public key in the request is unusable; the message says how to send one."""

    http_status = 400


class StoredHeaderError(Crypt4GHError):
    """The stored object is not a Crypt4GH file this node can serve (bad header, not encrypted for it)."""

    http_status = 502


class StoredReadError(Crypt4GHError):
    """Reading the stored object failed or it ended early (it shrank under us): abort the response."""

    http_status = 502


class ServedRangeError(Crypt4GHError):
    """A byte range outside the served (or plaintext) stream."""

    http_status = 416
