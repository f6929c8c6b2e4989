"""Typed errors of the Crypt4GH core: a machine code, a sentence for a person, an HTTP status hint.

Every failure the core can meet, from a bad researcher key to a hostile stored header, is one of
these; nothing else escapes its public functions for bad input. ``http_status`` is the answer the
web adapter is gives through the one error handler (``status`` is set from it): 400 for what the client sent, 416 for a
range outside the served stream, 502 for a stored object the node cannot serve, 500 for the node's
own configuration.
"""

from __future__ import annotations

from typing import ClassVar

from broker.errors import BrokerError


class Crypt4GHError(BrokerError):
    """Base of every typed error of the Crypt4GH core (a :class:`~broker.errors.BrokerError`)."""

    http_status: ClassVar[int] = 500

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, status=self.http_status, code=code)

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
