"""Full logins per second against a running broker, CPU per login, and token exchange vs a trivial endpoint.

Starts its own broker (gunicorn, 2 workers) on a free loopback port with a temporary data
directory, then measures, in the same run:
- full logins/s: authorize -> local login -> consent remembered -> code exchange -> token exchange;
- server CPU milliseconds per full login (user+system time of the gunicorn processes);
- token-exchange requests/s divided by /healthz requests/s (same server, same client threads).
Bounded: a fixed number of logins and a few seconds per rate. Loopback only.

    /work/venv/bin/python bench/login.py [--logins 40] [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.core.models import ACCESS_TOKEN_TYPE, PASSPORT_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT
from broker.oidc.passwords import hash_secret
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import PASSWORD, Client, browser_code, pkce_pair, redeem

SECRET = "bench-secret-" + "x" * 32


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (gunicorn master and workers)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def one_login(broker: BrokerProcess, client: Client) -> None:
    http = requests.Session()
    verifier, challenge = pkce_pair()
    query, _ = browser_code(http, broker, client, code_challenge=challenge, code_challenge_method="S256", remember=True)
    tokens = redeem(broker, client, query["code"], verifier).json()
    exchange(broker, client, tokens["access_token"]).raise_for_status()


def exchange(broker: BrokerProcess, client: Client, at: str, http: requests.Session | None = None) -> requests.Response:
    return (http or requests).post(
        broker.url("/token"),
        data={
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": at,
            "subject_token_type": ACCESS_TOKEN_TYPE,
            "requested_token_type": PASSPORT_TOKEN_TYPE,
        },
        auth=client.auth,
        timeout=10,
    )


def rate(seconds: float, threads: int, call: object) -> float:
    """Requests per second of ``call(session)`` from ``threads`` client threads for ``seconds``."""
    count = [0] * threads
    stop = time.monotonic() + seconds

    def run(i: int) -> None:
        http = requests.Session()
        while time.monotonic() < stop:
            call(http)  # type: ignore[operator]
            count[i] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(count) / (time.monotonic() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    settings = {
        "oidc": {
            "clients": [
                {
                    "client_id": "bench",
                    "redirect_uris": ["https://bench.example/cb"],
                    "secret_hash": hash_secret(SECRET),
                    "grant_types": ["authorization_code", "refresh_token", TOKEN_EXCHANGE_GRANT],
                    "scopes": ["openid", "ga4gh_passport_v1"],
                }
            ]
        }
    }
    with tempfile.TemporaryDirectory() as tmp:
        broker = BrokerProcess(directory=Path(tmp), settings=settings).start()
        try:
            assert broker.cli("users", "add", "alice", stdin=PASSWORD + "\n").returncode == 0
            client = Client("bench", SECRET, "https://bench.example/cb")
            one_login(broker, client)  # warm up, consent remembered from here on
            assert broker.process is not None
            cpu0, t0 = cpu_seconds(broker.process.pid), time.monotonic()
            for _ in range(args.logins):
                one_login(broker, client)
            elapsed, cpu = time.monotonic() - t0, cpu_seconds(broker.process.pid) - cpu0
            http = requests.Session()
            query, _ = browser_code(http, broker, client, remember=True)
            at = redeem(broker, client, query["code"]).json()["access_token"]
            trivial = rate(args.seconds, args.threads, lambda s: s.get(broker.url("/healthz"), timeout=10))
            exchanges = rate(args.seconds, args.threads, lambda s: exchange(broker, client, at, s))
        finally:
            broker.stop()
    print(f"full logins/s (sequential, one client): {args.logins / elapsed:.1f}")
    print(f"server CPU ms per full login: {1000 * cpu / args.logins:.1f}")
    print(
        f"/healthz req/s: {trivial:.0f}; token exchange req/s: {exchanges:.0f}; "
        f"ratio exchange/trivial: {exchanges / trivial:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
