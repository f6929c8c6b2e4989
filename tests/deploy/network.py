"""Machines on one network for the deployment tests: a network namespace per broker host, one bridge.

Each host gets a network namespace of its own (its own interfaces, addresses, ports and routing,
as a separate machine has) joined by a veth pair to a bridge in the test's own namespace. The
bridge holds ``<prefix>.1``, where the test's PostgreSQL servers and nginx are reached; host ``i``
is ``<prefix>.(10 + i)``. The /24 is picked from 10.64.0.0/10 so that it is on no interface yet,
and the names carry this process's id, so concurrent runs do not meet.

Making namespaces needs root and ``ip`` (iproute2). Where that fails, :func:`open_network`
raises :class:`NetworkUnavailable` with the reason, and the test falls back to distinct loopback
addresses (127.0.0.2, 127.0.0.3, ...), which the issue allows; the reason is printed with the figures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import suppress
from dataclasses import dataclass, field


class NetworkUnavailable(Exception):
    """Network namespaces cannot be made here (not root, no ``ip``, or the kernel refused)."""


def _ip(*args: str, netns: str | None = None) -> None:
    argv = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    if done.returncode != 0:
        raise NetworkUnavailable(f"{' '.join(argv)}: {done.stderr.strip()}")


def _free_prefix() -> str:
    """``10.X.Y``: a /24 that no interface of this namespace has an address in."""
    shown = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, timeout=20, check=False)
    used = shown.stdout
    start = os.getpid()
    for step in range(4096):
        n = (start + step) % 4096
        prefix = f"10.{64 + n // 64}.{n % 64 + 100}"
        if f" {prefix}." not in used:
            return prefix
    raise NetworkUnavailable("no free /24 in 10.64.0.0/10")


@dataclass
class Network:
    """The bridge and the namespaces made so far; :meth:`close` removes them all."""

    prefix: str
    tag: str
    bridge: str
    namespaces: list[str] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        """The test's own address on the bridge (PostgreSQL and nginx are reached here)."""
        return f"{self.prefix}.1"

    @property
    def cidr(self) -> str:
        return f"{self.prefix}.0/24"

    def add_host(self, index: int) -> tuple[str, str]:
        """A new namespace joined to the bridge: (its name, its address)."""
        netns, outside, inside = f"{self.tag}h{index}", f"{self.tag}h{index}a", f"{self.tag}h{index}b"
        address = f"{self.prefix}.{10 + index}"
        _ip("netns", "add", netns)
        self.namespaces.append(netns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("link", "set", inside, "netns", netns)
        _ip("addr", "add", f"{address}/24", "dev", inside, netns=netns)
        _ip("link", "set", inside, "up", netns=netns)
        _ip("link", "set", "lo", "up", netns=netns)
        return netns, address

    def close(self) -> None:
        """Remove every namespace (their veth ends go with them) and the bridge."""
        for netns in self.namespaces:
            with suppress(NetworkUnavailable):
                _ip("netns", "del", netns)
        with suppress(NetworkUnavailable):
            _ip("link", "del", self.bridge)


def open_network() -> Network:
    """A bridge in this namespace with the address ``<prefix>.1``; NetworkUnavailable when it cannot be."""
    if os.geteuid() != 0:
        raise NetworkUnavailable("network namespaces need root")
    if shutil.which("ip") is None:
        raise NetworkUnavailable("no `ip` command (iproute2)")
    tag = f"gb{os.getpid() % 100000}"
    prefix = _free_prefix()
    network = Network(prefix, tag, f"{tag}br")
    try:
        _ip("link", "add", network.bridge, "type", "bridge")
        _ip("addr", "add", f"{network.gateway}/24", "dev", network.bridge)
        _ip("link", "set", network.bridge, "up")
    except NetworkUnavailable:
        network.close()
        raise
    return network
