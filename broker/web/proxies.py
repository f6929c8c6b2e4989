"""The client's address behind trusted reverse proxies (``server.trusted_proxies``, THREAT-MODEL PX-20).

Behind nginx every request comes from the proxy's address, so limits keyed on the address
(client authentication, login, user codes) would be shared by everyone: one attacker locks
out every real client and user (issue 11 item 3). :class:`TrustedProxies` is WSGI middleware
that, only when the TCP peer is in ``trusted_proxies``, reads ``X-Forwarded-For`` from the
right and takes the first address that is not itself a trusted proxy as the client (each
trusted hop appended the address it saw; anything to the left of the first untrusted one is
what the client claimed, and is ignored). The number of hops follows from the list, so a
proxy chain of any length works and an address nobody trusts can never pick its own
address. A request from a peer that is not trusted keeps its peer address, whatever headers
it sends. ``X-Forwarded-Proto`` and ``-Host`` are never read: every URL we make comes from
the configured issuer.

The original peer is kept in the environ (``broker.peer_addr``), and a request that came
through a proxy (any ``Forwarded`` or ``X-Forwarded-For`` header, trusted or not) is marked
``broker.forwarded``: loopback-only endpoints such as ``/metrics`` refuse it, so a same-host
proxy never makes them public (:func:`direct_loopback`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from flask import Request

PEER_KEY = "broker.peer_addr"
FORWARDED_KEY = "broker.forwarded"
MAX_FORWARDED_HOPS = 20

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> list[Network]:
    """CIDRs or single addresses; ValueError names the first that is neither."""
    networks: list[Network] = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"expected an IP address or CIDR, got {entry!r}") from None
    return networks


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, networks: list[Network]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_of(peer: str, forwarded_for: str | None, networks: list[Network]) -> str:
    """The client's address: ``peer``, or the rightmost untrusted ``X-Forwarded-For`` entry when ``peer`` is trusted.

    A malformed entry ends the walk at the last trusted hop (fail closed: the proxy's address,
    never an address the client wrote).
    """
    if not networks or not forwarded_for or not _trusted(_address(peer), networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",")][-MAX_FORWARDED_HOPS:]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return client
        client = str(address)
        if not _trusted(address, networks):
            return client
    return client


class TrustedProxies:
    """WSGI middleware: ``REMOTE_ADDR`` becomes the client's address behind trusted proxies (module docstring)."""

    def __init__(self, app: Any, trusted: Iterable[str]) -> None:
        self.app = app
        self.networks = parse_networks(trusted)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        peer = environ.get("REMOTE_ADDR") or ""
        forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
        environ[PEER_KEY] = peer
        environ[FORWARDED_KEY] = forwarded_for is not None or "HTTP_FORWARDED" in environ
        environ["REMOTE_ADDR"] = client_of(peer, forwarded_for, self.networks)
        return self.app(environ, start_response)


def direct_loopback(request: Request) -> bool:
    """True only for a request whose TCP peer is loopback and that no proxy forwarded (``/metrics``)."""
    environ = request.environ
    forwarded = environ.get(FORWARDED_KEY)
    if forwarded is None:  # the middleware is not installed (tests of a bare app): read the headers here
        forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
    address = _address(environ.get(PEER_KEY, request.remote_addr) or "")
    return address is not None and address.is_loopback and not forwarded
