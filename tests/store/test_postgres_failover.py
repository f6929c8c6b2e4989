"""Failover at kernel level: kill -9 of the primary, promotion of a synchronous replica, no restart.

One real cluster pair (tests.support.postgres_server): a primary and a streaming replica it
waits for on every commit (synchronous_standby_names = '*'). Writers keep writing while the
primary is SIGKILLed; the replica is promoted at once (what a failover manager does after its
own detection delay, which is not measured here). The seconds from the kill to the first
successful write print with ``-s``:

    .venv/bin/python -m pytest -q -s tests/store/test_postgres_failover.py
"""

from __future__ import annotations

import threading
import time

import pytest

from broker.store.audit import verify_chain
from broker.store.base import AuditRecord, StoreUnavailable
from broker.store.postgres_kernel import PostgresKernel, migrate
from tests.support.postgres_server import PostgresCluster

TIMEOUT = 2.0


@pytest.mark.timeout(60)
def test_acknowledged_writes_survive_kill_9_and_the_kernel_follows_the_promotion() -> None:
    began = time.monotonic()
    cluster = PostgresCluster()
    try:
        primary = cluster.primary()
        migrate(primary.url)
        replica = cluster.replica_of(primary)

        on_replica = PostgresKernel(replica.url, timeout=TIMEOUT)
        try:
            health = on_replica.health()
            assert not health.ok and any("pg_is_in_recovery" in w for w in health.warnings)
        finally:
            on_replica.close()

        url = (
            f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{replica.port}/postgres"
            "?target_session_attrs=read-write"
        )
        kernel = PostgresKernel(url, timeout=TIMEOUT, pool_min=2, pool_max=8)
        heard: list[int] = []
        listener = kernel.listen_audit(heard.append)
        acked_keys: list[str] = []
        acked_audit: list[AuditRecord] = []
        unexpected: list[BaseException] = []
        outage_errors: list[float] = []
        stop = threading.Event()

        def writer(n: int) -> None:
            i = 0
            while not stop.is_set():
                key = f"w{n}-{i}"
                try:
                    kernel.put("ack", key, {"n": n, "i": i}, terms=[f"writer-{n}"])
                    acked_keys.append(key)
                    acked_audit.append(kernel.audit_append({"event": "test.write", "key": key}, int(time.time())))
                except StoreUnavailable:
                    outage_errors.append(time.monotonic())
                    time.sleep(0.02)
                except BaseException as exc:  # anything else is a contract breach
                    unexpected.append(exc)
                    return
                i += 1

        try:
            assert listener.listening.wait(10)
            threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
            for thread in threads:
                thread.start()
            while len(acked_audit) < 30:
                time.sleep(0.02)

            primary.kill()
            killed = time.monotonic()
            acked_before_kill = len(acked_keys)
            # No primary: every call fails with StoreUnavailable, within the store timeout.
            for call in (lambda: kernel.put("probe", "p", {}), lambda: kernel.get("ack", "w0-0")):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    call()
                assert time.monotonic() - started < TIMEOUT + 0.5

            replica.promote()
            promoted = time.monotonic()
            while True:
                try:
                    kernel.put("probe", "after", {"ok": True})
                    break
                except StoreUnavailable:
                    assert time.monotonic() - killed < 30, "no write succeeded after the promotion"
                    time.sleep(0.02)
            first_write = time.monotonic()
            print(
                f"\nfailover: kill -9 -> first successful write {first_write - killed:.2f} s "
                f"(promotion done {promoted - killed:.2f} s after the kill, write {first_write - promoted:.2f} s later)"
            )
            time.sleep(0.5)  # writers resume on the new primary
        finally:
            stop.set()
            for thread in threads:
                thread.join(10)

        try:
            assert unexpected == [], f"calls raised something other than StoreUnavailable: {unexpected!r}"
            assert outage_errors, "the writers never noticed the outage"
            assert acked_before_kill > 0 and len(acked_keys) > acked_before_kill
            # Every write acknowledged before (and after) the kill is on the promoted replica.
            values = kernel.get_many("ack", acked_keys)
            missing = [k for k, v in zip(acked_keys, values, strict=True) if v is None]
            assert missing == [], f"acknowledged writes lost: {missing[:5]}"
            records = list(kernel.audit_records(0))
            assert verify_chain(records) == []
            stored = {(r.seq, r.hash) for r in records}
            assert all((r.seq, r.hash) in stored for r in acked_audit)
            assert kernel.health().ok
            # The listener followed the promotion too: it reports records appended on the new primary.
            after = kernel.audit_append({"event": "after.failover"}, int(time.time()))
            deadline = time.monotonic() + 15
            while after.seq not in heard:
                assert time.monotonic() < deadline, "the audit listener never reconnected"
                time.sleep(0.05)
            assert heard == sorted(set(heard))
            assert first_write - killed < 10
        finally:
            listener.close()
            kernel.close()
    finally:
        cluster.close()
    assert time.monotonic() - began < 60
