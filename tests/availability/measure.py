"""Measure by hand: ``python -m tests.availability.measure [--seconds 20] [--slowloris 200] [--readers 20]``.

Starts a real ``ga4gh-broker serve`` in a temp folder (settings as in :mod:`deployment`), runs the
slow clients of :mod:`attack` against it, and prints the p50/p99 of /healthz and of a gateway
decision made meanwhile. Extra settings as YAML with ``--settings``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from tests.availability.attack import Prober, Slowloris, SlowReaders
from tests.availability.deployment import Broker


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--slowloris", type=int, default=200)
    parser.add_argument("--readers", type=int, default=20)
    parser.add_argument("--settings", default="{}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp), settings=yaml.safe_load(args.settings)).start()
        try:
            passport = broker.passport()
            auth = {"Authorization": f"Bearer {passport}", "X-Original-URI": "/data/ds1/large.bin"}
            decision = Prober("127.0.0.1", broker.port, "/gateway/decision", headers=auth)
            print("baseline decision:", decision.once())
            health = Prober("127.0.0.1", broker.port, "/healthz").start()
            decision.start()
            request = (
                f"GET /data/ds1/large.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {passport}\r\n\r\n"
            ).encode()
            loris = Slowloris("127.0.0.1", broker.port, connections=args.slowloris).start()
            readers = SlowReaders("127.0.0.1", broker.port, request, connections=args.readers).start()
            time.sleep(args.seconds)
            for part in (loris, readers, health, decision):
                part.stop()
            print(f"slowloris opened={loris.opened} readers opened={readers.opened} received={readers.received}")
            print(health.summary())
            print(decision.summary())
        finally:
            broker.stop()
            print(broker.log_text()[-1500:])


if __name__ == "__main__":
    main()
