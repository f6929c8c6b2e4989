"""Micro-benchmark of the Crypt4GH core: microseconds per call on this machine (no pass/fail).

Run: ``python -m broker.gateway.c4gh.bench [iterations]``. Keys are made in memory (no key files,
no passphrase); the stored header is built like ``crypt4gh encrypt`` builds it (an ephemeral
writer, one data encryption packet per recipient), with ``recipients`` packets of which one is
the node's, so the figure includes trying and dropping the others.
"""

from __future__ import annotations

import base64
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import broker.gateway.c4gh._sodium as _sodium
from broker.gateway.c4gh.keys import NodeKey, RecipientKey, parse_recipient_key
from broker.gateway.c4gh.reencrypt import plaintext_range_to_served, reencrypt_header, seal_header
from broker.gateway.c4gh.served import ServedLayout, served_parts
from broker.gateway.c4gh.stored import ParsedHeader, StoredHeader, parse_header


@dataclass(frozen=True, slots=True)
class BenchResult:
    """Median microseconds per call of each measured operation."""

    name: str
    microseconds: float
    iterations: int


def _key_pair() -> NodeKey:
    secret = os.urandom(32)
    return NodeKey(secret=secret, public=_sodium.derive_public(secret))


def stored_header(node: NodeKey, recipients: int = 2) -> ParsedHeader:
    """A header as ``crypt4gh encrypt --recipient_pk`` x ``recipients`` writes it, the node's packet last."""
    writer = _key_pair()
    session = (0).to_bytes(4, "little") * 2 + os.urandom(32)
    others = [RecipientKey(_key_pair().public) for _ in range(recipients - 1)]
    packets: list[bytes] = []
    for reader in [*others, RecipientKey(node.public)]:
        one = seal_header([session], writer, reader)
        packets.append(one[16:])  # each packet with its length
    count = len(packets).to_bytes(4, "little")
    return parse_header(b"crypt4gh" + (1).to_bytes(4, "little") + count + b"".join(packets))


def _median_us(call: Callable[[], object], iterations: int, rounds: int = 5) -> float:
    per_round = max(1, iterations // rounds)
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            call()
        samples.append((time.perf_counter() - start) / per_round * 1e6)
    return statistics.median(samples)


def run(iterations: int = 2000, recipients: int = 2) -> list[BenchResult]:
    """Measure header re-encryption, key parsing, plaintext slicing and range mapping."""
    node = _key_pair()
    researcher = RecipientKey(_key_pair().public)
    header = stored_header(node, recipients)
    stored = StoredHeader(header=header, stored_size=header.length + 10 * 65564)
    key_value = base64.b64encode(
        b"-----BEGIN CRYPT4GH PUBLIC KEY-----\n"
        + base64.b64encode(researcher.public)
        + b"\n-----END CRYPT4GH PUBLIC KEY-----\n"
    )
    layout = ServedLayout(header_length=124, body_offset=header.length, body_length=10 * 65564)
    cases: list[tuple[str, Callable[[], object]]] = [
        (
            f"reencrypt_header ({recipients} packets, 1 for the node)",
            lambda: reencrypt_header(header, node, researcher),
        ),
        ("reencrypt_header from bytes (parse included)", lambda: reencrypt_header(header.raw, node, researcher)),
        ("parse_recipient_key (base64 of the .pub file)", lambda: parse_recipient_key(key_value)),
        (
            "plaintext_range_to_served (edit list header)",
            lambda: plaintext_range_to_served(stored, node, researcher, 70_000, 200_000),
        ),
        ("served_parts", lambda: served_parts(layout, 100, 400_000)),
    ]
    return [BenchResult(name, _median_us(call, iterations), iterations) for name, call in cases]


def main(argv: list[str] | None = None) -> int:
    """Print one line per operation: median microseconds per call."""
    args = sys.argv[1:] if argv is None else argv
    iterations = int(args[0]) if args else 2000
    for result in run(iterations):
        print(f"{result.microseconds:10.1f} us/call  {result.name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
