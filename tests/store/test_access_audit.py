"""AccessAudit (issue 12): first decisions durable before the call returns, repeats and transfers as summaries.

Against a real SQLite store. The kill -9 proof under load is tests/availability/test_audit_kill9.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.store.audit import AccessAudit, verify_chain
from broker.store.base import StoreUnavailable
from broker.store.sqlite_kernel import SQLiteKernel


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[SQLiteKernel]:
    opened = SQLiteKernel(tmp_path / "store.db", timeout=5.0)
    yield opened
    opened.close()


def decision(subject: str = "alice", path: str = "a.bam") -> dict[str, Any]:
    return {
        "event": "gateway.decision",
        "actor": subject,
        "subject": subject,
        "dataset": "DS1",
        "object_path": path,
        "outcome": "allow",
        "reason": "allowed",
        "route": "data",
        "purpose": None,
        "basis": {"rule": "r1"},
    }


def events(kernel: SQLiteKernel) -> list[dict[str, Any]]:
    return [record.event for record in kernel.audit_records()]


def test_the_first_decision_is_in_the_log_when_the_call_returns_and_repeats_are_not(kernel: SQLiteKernel) -> None:
    audit = AccessAudit(kernel, flush_seconds=1.0)
    audit.decision(("cred", "alice", "a.bam"), decision)
    assert events(kernel) == [decision()]
    for _ in range(5):
        audit.decision(("cred", "alice", "a.bam"), decision)
    assert len(events(kernel)) == 1  # repeats wait for the flush
    assert audit.flush() == 1
    [_first, summary] = events(kernel)
    assert summary["event"] == "gateway.decisions"
    assert (summary["count"], summary["first_seq"], summary["subject"], summary["object_path"]) == (
        5,
        1,
        "alice",
        "a.bam",
    )
    assert "basis" not in summary
    assert audit.flush() == 0  # nothing new
    assert verify_chain(kernel.audit_records()) == []


def test_another_credential_or_object_is_a_first_of_its_own(kernel: SQLiteKernel) -> None:
    audit = AccessAudit(kernel)
    audit.decision(("cred-1", "alice", "a.bam"), decision)
    audit.decision(("cred-2", "alice", "a.bam"), decision)
    audit.decision(("cred-1", "alice", "b.bam"), lambda: decision(path="b.bam"))
    assert len(events(kernel)) == 3


def test_transfers_are_summed_per_holder_object_and_result(kernel: SQLiteKernel) -> None:
    audit = AccessAudit(kernel)
    transfer = {"event": "gateway.transfer", "subject": "alice", "dataset": "DS1", "outcome": "complete"}
    for size in (100, 200, 300):
        audit.transfer(("alice", "DS1", "a.bam", "data", "complete"), lambda: dict(transfer), size)
    assert events(kernel) == []
    audit.flush()
    [summary] = events(kernel)
    assert (summary["event"], summary["count"], summary["bytes_sent"]) == ("gateway.transfer", 3, 600)


def test_a_window_that_ended_starts_with_a_durable_first_again(kernel: SQLiteKernel) -> None:
    now = [1000.0]
    audit = AccessAudit(kernel, window_seconds=10, clock=lambda: now[0])
    audit.decision("k", decision)
    audit.decision("k", decision)
    now[0] = 1011.0
    audit.decision("k", decision)
    assert [e["event"] for e in events(kernel)] == ["gateway.decision", "gateway.decision"]
    audit.flush()  # the ended window's repeat is not lost
    assert events(kernel)[-1]["event"] == "gateway.decisions" and events(kernel)[-1]["count"] == 1


def test_a_failed_first_append_raises_and_the_next_request_tries_again(kernel: SQLiteKernel) -> None:
    class Failing:
        def __init__(self) -> None:
            self.fail = True

        def audit_append(self, event: dict[str, Any], at: int) -> Any:
            if self.fail:
                raise StoreUnavailable("down")
            return kernel.audit_append(event, at)

    store = Failing()
    audit = AccessAudit(store)  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable):
        audit.decision("k", decision)
    store.fail = False
    audit.decision("k", decision)
    assert len(events(kernel)) == 1


def test_concurrent_first_decisions_of_one_key_append_once_and_all_wait_for_it(kernel: SQLiteKernel) -> None:
    audit = AccessAudit(kernel)
    start = threading.Barrier(8)
    seen: list[int] = []

    def one() -> None:
        start.wait()
        audit.decision("k", decision)
        seen.append(len(events(kernel)))  # the first record is there for every caller

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [1] * 8
    audit.close()
    assert events(kernel)[-1]["count"] == 7


def test_close_writes_what_is_left(kernel: SQLiteKernel) -> None:
    audit = AccessAudit(kernel, flush_seconds=1.0).start()
    audit.decision("k", decision)
    audit.decision("k", decision)
    audit.close()
    assert [e["event"] for e in events(kernel)] == ["gateway.decision", "gateway.decisions"]


def test_the_flush_interval_is_at_most_one_second(kernel: SQLiteKernel) -> None:
    with pytest.raises(ValueError, match="flush_seconds"):
        AccessAudit(kernel, flush_seconds=1.5)
