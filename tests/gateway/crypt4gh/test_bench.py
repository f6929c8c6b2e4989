"""The micro-benchmark runs and its synthetic header is one the core really re-encrypts (no timing asserted)."""

from __future__ import annotations

import os

import pytest

from broker.gateway.c4gh import NodeKey, open_header
from broker.gateway.c4gh import _sodium as sodium
from broker.gateway.c4gh.bench import main, run, stored_header


def test_the_bench_header_has_one_packet_for_the_node_among_others() -> None:
    secret = os.urandom(32)
    node = NodeKey(secret=secret, public=sodium.derive_public(secret))
    opened = open_header(stored_header(node, recipients=3), node)
    assert (opened.session_keys, opened.dropped) == (1, 2)


def test_the_bench_measures_every_operation(capsys: pytest.CaptureFixture[str]) -> None:
    results = run(iterations=10)
    assert len(results) == 5 and all(r.microseconds > 0 for r in results)
    assert main(["5"]) == 0
    assert capsys.readouterr().out.count("us/call") == 5
