"""The store kernel's contract, as pytest tests every backend must pass.

A backend plugs in by providing two fixtures and importing these tests into a test module::

    from broker.store.conformance import *  # noqa: F403

    @pytest.fixture
    def kernel() -> Iterator[Kernel]: ...          # a fresh, empty store
    @pytest.fixture
    def kernel_opener() -> Callable[[], Kernel]: ...  # picklable: opens the same store again

``kernel_opener`` is used to reach the same store from other threads and other processes.
The suite needs pytest (a test dependency); importing the broker never imports this module.

Each test names the rule of :mod:`broker.store.kernel` it proves.
"""

from __future__ import annotations

import functools
import multiprocessing
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from broker.store.audit import GENESIS_HASH, build_record, verify_chain
from broker.store.base import AuditRecord, Conflict, StoreError
from broker.store.kernel import MAX_NAME_CHARS, Kernel, Tx, Write, key_of

__all__ = [
    "test_add_over_an_expired_record_succeeds",
    "test_add_writes_only_when_absent",
    "test_audit_appends_chain_and_verify",
    "test_audit_chain_stays_gap_free_with_appenders_in_several_processes",
    "test_audit_event_must_be_json_data",
    "test_audit_restore_copies_a_chain_verbatim_into_an_empty_log_only",
    "test_audit_truncate_keeps_the_head_and_the_newest_record",
    "test_concurrent_adds_let_exactly_one_win",
    "test_concurrent_takes_hand_a_record_out_once",
    "test_delete_reports_whether_a_live_record_was_removed",
    "test_expired_records_are_never_returned",
    "test_find_by_term_and_terms_follow_the_latest_put",
    "test_get_many_keeps_order_and_gaps",
    "test_incr_counts_within_its_window",
    "test_keys_and_terms_of_any_characters_are_kept_apart",
    "test_keys_with_reserved_characters_are_found_and_scanned",
    "test_kinds_and_scan_list_live_records",
    "test_listen_audit_reports_every_committed_record_or_is_absent",
    "test_longest_names_round_trip_on_every_operation",
    "test_names_are_checked",
    "test_put_then_get_round_trips_json_objects",
    "test_records_expire_on_their_own",
    "test_take_is_single_use",
    "test_terms_of_lists_the_terms_of_a_live_record",
    "test_transaction_commits_writes_and_audit_together",
    "test_transaction_failure_leaves_nothing",
    "test_transaction_reads_see_the_state_before_it",
    "test_transactions_are_serializable_under_contention",
    "test_update_creates_changes_and_deletes",
    "test_update_from_several_processes_loses_no_increment",
    "test_update_from_several_threads_loses_no_increment",
    "test_values_must_be_json_objects",
]


def NOW() -> int:
    """The clock, read at the moment of each use."""
    return int(time.time())


def test_put_then_get_round_trips_json_objects(kernel: Kernel) -> None:
    value = {"a": 1, "b": [True, None, 2.5], "c": {"d": "é ✓ \u0000x"}, "e": ""}
    kernel.put("thing", "k1", value)
    assert kernel.get("thing", "k1") == value
    assert kernel.get("thing", "missing") is None
    assert kernel.get("other", "k1") is None  # kinds are separate spaces
    kernel.put("thing", "k1", {"a": 2})
    assert kernel.get("thing", "k1") == {"a": 2}


def test_values_must_be_json_objects(kernel: Kernel) -> None:
    for bad in ([1], "text", {"n": float("nan")}, {"x": object()}):
        with pytest.raises((ValueError, TypeError)):
            kernel.put("thing", "k", bad)  # type: ignore[arg-type]
    assert kernel.get("thing", "k") is None


def test_names_are_checked(kernel: Kernel) -> None:
    for kind, key in (("", "k"), ("thing", ""), ("thing", "x" * (MAX_NAME_CHARS + 1)), ("thing", 5)):
        with pytest.raises(ValueError):
            kernel.put(kind, key, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        kernel.put("thing", "k", {}, terms=[""])
    with pytest.raises(ValueError):
        kernel.put("thing", "k", {}, expires_at=1.5)  # type: ignore[arg-type]
    assert key_of("a/b", "c") != key_of("a", "b/c")


def test_find_by_term_and_terms_follow_the_latest_put(kernel: Kernel) -> None:
    kernel.put("grant", "g2", {"n": 2}, terms=["identity:alice", "dataset:D1"])
    kernel.put("grant", "g1", {"n": 1}, terms=["identity:alice"])
    kernel.put("grant", "g3", {"n": 3}, terms=["identity:bob"])
    assert [(i.key, i.value) for i in kernel.find("grant", "identity:alice")] == [("g1", {"n": 1}), ("g2", {"n": 2})]
    kernel.put("grant", "g2", {"n": 22}, terms=["identity:bob"])  # terms replaced, not added
    assert [i.key for i in kernel.find("grant", "identity:alice")] == ["g1"]
    assert [i.key for i in kernel.find("grant", "identity:bob")] == ["g2", "g3"]
    assert kernel.find("grant", "dataset:D1") == []
    kernel.delete("grant", "g3")
    assert [i.key for i in kernel.find("grant", "identity:bob")] == ["g2"]
    assert kernel.find("other", "identity:bob") == []


def test_keys_and_terms_of_any_characters_are_kept_apart(kernel: Kernel) -> None:
    keys = [key_of("https://idp.example/", "u/1"), "a:b", "a%3Ab", "sp ace", "ünï ✓", "x" * 300]
    for i, key in enumerate(keys):
        kernel.put("link", key, {"i": i}, terms=[f"identity:{key}", "all"])
    assert [item.key for item in kernel.find("link", "all")] == sorted(keys)
    for i, key in enumerate(keys):
        assert kernel.get("link", key) == {"i": i}
        assert [item.key for item in kernel.find("link", f"identity:{key}")] == [key]
    assert [item.key for item in kernel.scan("link")] == sorted(keys)
    assert kernel.take("link", "a:b") == {"i": 1} and kernel.get("link", "a%3Ab") == {"i": 2}


def test_get_many_keeps_order_and_gaps(kernel: Kernel) -> None:
    kernel.put("thing", "a", {"v": "a"})
    kernel.put("thing", "c", {"v": "c"})
    kernel.put("thing", "gone", {"v": 0}, expires_at=NOW() - 1)
    assert kernel.get_many("thing", ["c", "b", "a", "gone"]) == [{"v": "c"}, None, {"v": "a"}, None]
    assert kernel.get_many("thing", []) == []


def test_expired_records_are_never_returned(kernel: Kernel) -> None:
    past, future = NOW() - 1, NOW() + 3600
    kernel.put("ticket", "old", {"v": 1}, expires_at=past, terms=["t"])
    kernel.put("ticket", "new", {"v": 2}, expires_at=future, terms=["t"])
    assert kernel.get("ticket", "old") is None
    assert [i.key for i in kernel.find("ticket", "t")] == ["new"]
    assert [i.key for i in kernel.scan("ticket")] == ["new"]
    assert kernel.take("ticket", "old") is None
    assert kernel.delete("ticket", "old") is False
    assert [i.expires_at for i in kernel.scan("ticket")] == [future]


def test_records_expire_on_their_own(kernel: Kernel) -> None:
    kernel.put("ticket", "soon", {"v": 1}, expires_at=NOW() + 1)
    assert kernel.get("ticket", "soon") == {"v": 1}
    deadline = time.monotonic() + 5
    while kernel.get("ticket", "soon") is not None:
        assert time.monotonic() < deadline, "a record outlived its expiry"
        time.sleep(0.2)
    kernel.purge_expired()
    assert "ticket" not in kernel.kinds()


def test_add_writes_only_when_absent(kernel: Kernel) -> None:
    assert kernel.add("code", "c1", {"v": 1}) is True
    assert kernel.add("code", "c1", {"v": 2}) is False
    assert kernel.get("code", "c1") == {"v": 1}


def test_add_over_an_expired_record_succeeds(kernel: Kernel) -> None:
    kernel.put("code", "c1", {"v": 1}, expires_at=NOW() - 1)
    assert kernel.add("code", "c1", {"v": 2}, expires_at=NOW() + 60) is True
    assert kernel.get("code", "c1") == {"v": 2}


def test_take_is_single_use(kernel: Kernel) -> None:
    kernel.put("code", "c1", {"v": 1}, terms=["x"])
    assert kernel.take("code", "c1") == {"v": 1}
    assert kernel.take("code", "c1") is None
    assert kernel.get("code", "c1") is None
    assert kernel.find("code", "x") == []


def test_delete_reports_whether_a_live_record_was_removed(kernel: Kernel) -> None:
    kernel.put("thing", "k", {})
    assert kernel.delete("thing", "k") is True
    assert kernel.delete("thing", "k") is False


def test_incr_counts_within_its_window(kernel: Kernel) -> None:
    window = NOW() + 60
    assert [kernel.incr("limit", "ip", expires_at=window) for _ in range(3)] == [1, 2, 3]
    assert kernel.incr("limit", "other", expires_at=window) == 1
    kernel.incr("limit", "short", expires_at=NOW() + 1)
    deadline = time.monotonic() + 5
    while kernel.incr("limit", "short", expires_at=NOW() + 1) != 1:
        assert time.monotonic() < deadline, "a counter outlived its window"
        time.sleep(0.3)


def test_kinds_and_scan_list_live_records(kernel: Kernel) -> None:
    for i in range(7):
        kernel.put("client", f"c{i}", {"i": i})
    kernel.put("session", "s", {}, expires_at=NOW() + 60)
    assert [i.key for i in kernel.scan("client")] == [f"c{i}" for i in range(7)]
    assert {"client", "session"} <= set(kernel.kinds())
    kernel.delete("session", "s")
    assert "session" not in kernel.kinds()


def _concurrently(count: int, fn: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(count)

    def run(i: int) -> Any:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_concurrent_adds_let_exactly_one_win(kernel_opener: Callable[[], Kernel]) -> None:
    kernels = [kernel_opener() for _ in range(8)]
    try:
        won = _concurrently(8, lambda i: kernels[i].add("jti", "once", {"by": i}))
        assert sum(won) == 1
    finally:
        for k in kernels:
            k.close()


def test_concurrent_takes_hand_a_record_out_once(kernel_opener: Callable[[], Kernel]) -> None:
    kernels = [kernel_opener() for _ in range(8)]
    try:
        for round_ in range(5):
            kernels[0].put("code", f"c{round_}", {"round": round_})

            def take(i: int, r: int = round_) -> dict[str, Any] | None:
                return kernels[i].take("code", f"c{r}")

            got = _concurrently(8, take)
            assert [g for g in got if g is not None] == [{"round": round_}]
    finally:
        for k in kernels:
            k.close()


def _bump(current: dict[str, Any] | None) -> Write:
    return Write({"n": (current or {"n": 0})["n"] + 1})


def test_update_creates_changes_and_deletes(kernel: Kernel) -> None:
    assert kernel.update("counter", "k", _bump) == {"n": 1}
    assert kernel.update("counter", "k", _bump) == {"n": 2}
    assert kernel.update("counter", "k", lambda cur: Write({"n": 9}, expires_at=NOW() + 60, terms=("t",))) == {"n": 9}
    assert [i.key for i in kernel.find("counter", "t")] == ["k"]
    assert kernel.update("counter", "k", lambda cur: None) is None
    assert kernel.get("counter", "k") is None and kernel.find("counter", "t") == []


def test_update_from_several_threads_loses_no_increment(kernel_opener: Callable[[], Kernel]) -> None:
    kernels = [kernel_opener() for _ in range(6)]
    try:
        _concurrently(6, lambda i: [kernels[i].update("counter", "shared", _bump) for _ in range(10)])
        assert kernels[0].get("counter", "shared") == {"n": 60}
    finally:
        for k in kernels:
            k.close()


def _process_bumps(opener: Callable[[], Kernel], times: int, start: Any) -> None:
    kernel = opener()
    try:
        start.wait(30)
        for _ in range(times):
            kernel.update("counter", "shared", _bump)
    finally:
        kernel.close()


def _process_appends(opener: Callable[[], Kernel], worker: int, times: int, start: Any) -> None:
    kernel = opener()
    try:
        start.wait(30)
        for i in range(times):
            kernel.audit_append({"event": "test.append", "worker": worker, "i": i}, NOW())
    finally:
        kernel.close()


def _run_processes(target: Callable[..., None], args: list[tuple[Any, ...]]) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=target, args=(*a, start)) for a in args]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0, f"worker process failed with exit code {p.exitcode}"


def test_update_from_several_processes_loses_no_increment(kernel: Kernel, kernel_opener: Callable[[], Kernel]) -> None:
    _run_processes(_process_bumps, [(kernel_opener, 15) for _ in range(3)])
    assert kernel.get("counter", "shared") == {"n": 45}


def test_transaction_commits_writes_and_audit_together(kernel: Kernel) -> None:
    kernel.put("grant", "g1", {"live": True}, terms=["identity:alice"])

    def revoke(tx: Tx) -> str:
        grant = tx.get("grant", "g1")
        assert grant == {"live": True}
        tx.put("grant", "g1", {"live": False}, terms=["identity:alice"])
        tx.put("revoked", "g1", {"at": tx.now}, expires_at=tx.now + 60)
        tx.audit({"event": "grants.revoke", "grant": "g1"})
        return "done"

    before = kernel.audit_last_seq()
    assert kernel.transact(revoke) == "done"
    assert kernel.get("grant", "g1") == {"live": False}
    assert kernel.get("revoked", "g1") is not None
    records = list(kernel.audit_records(before))
    assert [r.event["event"] for r in records] == ["grants.revoke"]
    assert verify_chain(kernel.audit_records(0)) == []


class _Boom(Exception):
    pass


def test_transaction_failure_leaves_nothing(kernel: Kernel) -> None:
    kernel.put("grant", "g1", {"live": True})
    before = kernel.audit_last_seq()

    def half_done(tx: Tx) -> None:
        tx.put("grant", "g1", {"live": False})
        tx.audit({"event": "grants.revoke", "grant": "g1"})
        raise _Boom

    with pytest.raises(_Boom):
        kernel.transact(half_done)
    assert kernel.get("grant", "g1") == {"live": True}
    assert kernel.audit_last_seq() == before


def test_transaction_reads_see_the_state_before_it(kernel: Kernel) -> None:
    kernel.put("thing", "k", {"v": 1})

    def write_then_read(tx: Tx) -> dict[str, Any] | None:
        tx.put("thing", "k", {"v": 2})
        return tx.get("thing", "k")

    assert kernel.transact(write_then_read) == {"v": 1}
    assert kernel.get("thing", "k") == {"v": 2}


def test_transactions_are_serializable_under_contention(kernel_opener: Callable[[], Kernel]) -> None:
    """Transfers between two accounts from many threads: the total never changes, no write is lost."""
    kernels = [kernel_opener() for _ in range(6)]
    kernels[0].put("account", "a", {"n": 100})
    kernels[0].put("account", "b", {"n": 100})

    def transfer(tx: Tx, amount: int) -> None:
        a, b = tx.get("account", "a"), tx.get("account", "b")
        assert a is not None and b is not None
        tx.put("account", "a", {"n": a["n"] - amount})
        tx.put("account", "b", {"n": b["n"] + amount})
        tx.audit({"event": "test.transfer", "amount": amount})

    try:
        before = kernels[0].audit_last_seq()

        def transfers(i: int) -> None:
            for _ in range(5):
                kernels[i].transact(functools.partial(transfer, amount=i + 1))

        _concurrently(6, transfers)
        a, b = kernels[0].get("account", "a"), kernels[0].get("account", "b")
        assert a is not None and b is not None
        assert a["n"] + b["n"] == 200
        assert a["n"] == 100 - 5 * sum(range(1, 7))
        assert kernels[0].audit_last_seq() - before == 30
        assert verify_chain(kernels[0].audit_records(0)) == []
    finally:
        for k in kernels:
            k.close()


def test_audit_appends_chain_and_verify(kernel: Kernel) -> None:
    first = kernel.audit_append({"event": "a", "n": 1}, 1_700_000_000)
    second = kernel.audit_append({"event": "b", "tuple": (1, 2)}, 1_700_000_001)
    assert (first.seq, second.seq) == (1, 2) and second.prev_hash == first.hash
    assert second.event == {"event": "b", "tuple": [1, 2]}
    assert kernel.audit_last_seq() == 2
    assert [r.seq for r in kernel.audit_records(1)] == [2]
    assert verify_chain(kernel.audit_records(0)) == []


def test_audit_event_must_be_json_data(kernel: Kernel) -> None:
    for bad in ([1], {"x": float("inf")}, {1: "x"}):
        with pytest.raises((ValueError, StoreError)):
            kernel.audit_append(bad, 1_700_000_000)  # type: ignore[arg-type]
    assert kernel.audit_last_seq() == 0


def test_audit_chain_stays_gap_free_with_appenders_in_several_processes(
    kernel: Kernel, kernel_opener: Callable[[], Kernel]
) -> None:
    _run_processes(_process_appends, [(kernel_opener, w, 40) for w in range(3)])
    records = list(kernel.audit_records(0))
    assert [r.seq for r in records] == list(range(1, 121))
    assert verify_chain(records) == []
    for w in range(3):
        assert [r.event["i"] for r in records if r.event["worker"] == w] == list(range(40))


def _longest(rng: random.Random, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(MAX_NAME_CHARS))


def test_keys_with_reserved_characters_are_found_and_scanned(kernel: Kernel) -> None:
    """Keys are opaque strings: key_of() output, '%', spaces and non-ASCII come back from find and scan as put."""
    keys = sorted([key_of("a/b", "c"), "100% sure", "é ✓", "plain"])
    for key in keys:
        kernel.put("thing", key, {"k": key}, terms=["t/1 é"])
    assert [i.key for i in kernel.scan("thing")] == keys
    assert [(i.key, i.value["k"]) for i in kernel.find("thing", "t/1 é")] == [(k, k) for k in keys]


def test_longest_names_round_trip_on_every_operation(kernel: Kernel) -> None:
    """Bounds: any name up to MAX_NAME_CHARS works, even incompressible and 4 bytes a character in UTF-8."""
    rng = random.Random(7)  # noqa: S311 - test data, not secrets
    alphabet = "abcXYZ019/:%é✓\U0001f512\U00010348"
    kind, key, term = (_longest(rng, alphabet) for _ in range(3))
    kernel.put(kind, key, {"v": 1}, terms=[term])
    kernel.put(kind, "short", {"v": 2}, terms=[term])
    assert kernel.get(kind, key) == {"v": 1}
    assert [i.key for i in kernel.find(kind, term)] == sorted([key, "short"])
    assert [i.key for i in kernel.scan(kind)] == sorted([key, "short"])
    assert kernel.terms_of(kind, key) == (term,)
    assert kind in kernel.kinds()
    assert kernel.add(kind, key, {"v": 3}) is False
    assert kernel.take(kind, key) == {"v": 1}
    assert kernel.incr(kind, key, expires_at=NOW() + 60) == 1


def test_terms_of_lists_the_terms_of_a_live_record(kernel: Kernel) -> None:
    kernel.put("grant", "g1", {}, terms=["z", "identity:alice", "a"])
    assert kernel.terms_of("grant", "g1") == ("a", "identity:alice", "z")
    kernel.put("grant", "g1", {}, terms=["b"])
    assert kernel.terms_of("grant", "g1") == ("b",)
    kernel.put("grant", "g2", {})
    assert kernel.terms_of("grant", "g2") == ()
    assert kernel.terms_of("grant", "missing") == ()
    kernel.put("grant", "old", {}, expires_at=NOW() - 1, terms=["t"])
    assert kernel.terms_of("grant", "old") == ()
    kernel.delete("grant", "g1")
    assert kernel.terms_of("grant", "g1") == ()


def _chain(first_seq: int, count: int, prev_hash: str) -> list[AuditRecord]:
    records = []
    for seq in range(first_seq, first_seq + count):
        record = build_record(seq, 1_700_000_000 + seq, {"event": "test.restore", "seq": seq, "é": [seq]}, prev_hash)
        records.append(record)
        prev_hash = record.hash
    return records


def test_audit_restore_copies_a_chain_verbatim_into_an_empty_log_only(kernel: Kernel) -> None:
    """A chain that starts after an archive (seq 41) is restored as it was, and appends continue it."""
    earlier = _chain(1, 40, GENESIS_HASH)
    records = _chain(41, 25, earlier[-1].hash)
    with pytest.raises(ValueError):
        kernel.audit_restore([records[1], records[0]])  # out of order: nothing written
    assert kernel.audit_last_seq() == 0 and list(kernel.audit_records(0)) == []
    assert kernel.audit_restore(iter(records)) == 25
    assert list(kernel.audit_records(0)) == records
    assert kernel.audit_last_seq() == 65
    appended = kernel.audit_append({"event": "after.restore"}, 1_700_000_100)
    assert (appended.seq, appended.prev_hash) == (66, records[-1].hash)
    assert verify_chain(kernel.audit_records(0), start=(40, earlier[-1].hash)) == []
    assert verify_chain([*earlier, *kernel.audit_records(0)]) == []
    with pytest.raises(Conflict):
        kernel.audit_restore(_chain(1, 1, GENESIS_HASH))
    assert kernel.audit_last_seq() == 66


def test_audit_truncate_keeps_the_head_and_the_newest_record(kernel: Kernel) -> None:
    appended = [kernel.audit_append({"event": "t", "i": i}, 1_700_000_000 + i) for i in range(10)]
    assert kernel.audit_truncate(0) == 0
    assert kernel.audit_truncate(4) == 4
    assert [r.seq for r in kernel.audit_records(0)] == list(range(5, 11))
    assert kernel.audit_truncate(4) == 0  # again: nothing left to remove
    with pytest.raises(ValueError):
        kernel.audit_truncate(10)  # the newest record stays
    for bad in (-1, True, "3"):
        with pytest.raises(ValueError):
            kernel.audit_truncate(bad)  # type: ignore[arg-type]
    assert kernel.audit_last_seq() == 10
    following = kernel.audit_append({"event": "t", "i": 10}, 1_700_000_010)
    assert (following.seq, following.prev_hash) == (11, appended[-1].hash)
    assert verify_chain(kernel.audit_records(0), start=(4, appended[3].hash)) == []
    assert [p.problem for p in verify_chain(kernel.audit_records(0))] == ["gap", "chain_broken"]


def test_listen_audit_reports_every_committed_record_or_is_absent(kernel: Kernel) -> None:
    """Optional capability: a backend without push returns None; one with it reports each commit once, in order."""
    seen: list[int] = []
    arrived = threading.Condition()

    def on_seq(seq: int) -> None:
        with arrived:
            seen.append(seq)
            arrived.notify_all()

    listener = kernel.listen_audit(on_seq)
    if listener is None:
        return
    try:
        deadline = time.monotonic() + 10
        listening = getattr(listener, "listening", None)
        if listening is not None:
            assert listening.wait(10), "the listener never started listening"
        kernel.audit_append({"event": "one"}, NOW())

        def fail(tx: Tx) -> None:
            tx.audit({"event": "rolled.back"})
            raise _Boom

        def two(tx: Tx) -> None:
            tx.audit({"event": "two"})
            tx.audit({"event": "three"})

        with pytest.raises(_Boom):
            kernel.transact(fail)
        kernel.transact(two)
        with arrived:
            while len(seen) < 3:
                assert arrived.wait(max(0.0, deadline - time.monotonic())), f"only {seen} reported"
        time.sleep(0.3)
        assert seen == [1, 2, 3]
    finally:
        listener.close()
