#!/usr/bin/env python
"""Gateway speed, measured against nginx on the same machine in the same run.

Prints ratios (never absolute pass/fail): the machine is shared and noisy, so every figure
is a median of repeated runs next to its own baseline taken minutes apart at most.

1. Throughput of one 1 GiB download (curl, loopback), ratio to nginx serving the same file:
   ``stream`` (gunicorn worker, sendfile), ``stream`` through the example nginx front,
   ``offload`` (nginx serves after X-Accel-Redirect), and the ``http`` store relay (Python).
   Targets: stream >= 0.8, offload >= 0.95.
2. Peak RSS (VmHWM) of a gunicorn worker after streaming a 1 MiB file and then the 1 GiB
   file, for the directory store (sendfile) and the http store (Python relay).
   Target: < 64 MB and flat.
3. Small Range requests (1 KiB) per second with wrk against the same gunicorn: the streaming
   route and the decision endpoint (Envoy style), as a ratio to a trivial endpoint.
   Target: >= 0.8. The authorizer here is a constant-time table (layer 1): the cost of the
   gateway's HTTP work alone.
4. The real decision path (``--real`` runs only this part; ``--no-real`` skips it): a real
   ``ga4gh-broker serve`` (granian, ``--workers`` workers (2) x 4 threads, the ``--backend``
   store: SQLite, or a redis-server or PostgreSQL the bench starts on a free port with the
   tests' helpers, audit log) built by ``broker.app.create_app`` (PassportAuthorizer, the
   process Verifier with its VerifiedCache and DecisionCache, the policy directory, the
   gateway; see ``bench/gateway_real.py``). wrk measures, on that one server with warm caches:
   ``/healthz`` (trivial), 1 KiB Range requests on the streaming route with a passport of
   ``--visas`` visas from a trusted AAI (pinned keys), the same with one of our access tokens
   (scope ga4gh_passport_v1; visas resolved from a DAC grant in the store), and the decision
   endpoint (``X-Original-URI``, the passport). Each figure is a ratio to ``/healthz`` (the
   higher of the runs right before and right after its round).
   Target: >= 0.8. When the server refuses the passport's header line (server.max_header_bytes),
   the bench uses the most visas that fit and says so.
5. ``--scaling``: the decision endpoint with 1, 2 and 4 workers on one ``--backend`` store
   (use redis or postgres), each with its own /healthz baseline; the table shows whether the
   rate grows with workers until the cores run out (wrk shares the same cores).

Run: ``/work/venv/bin/python bench/gateway.py [--size-mib 1024] [--seconds 5] [--repeat 3]
[--real | --no-real | --scaling] [--visas 10] [--backend sqlite|redis|postgres] [--workers 2]``
(needs nginx, curl and wrk from Debian; ``--real`` and ``--scaling`` need wrk only).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the real bench mints its access token with the tests' store helper
    sys.path.insert(0, str(ROOT))
EXAMPLES = ROOT / "examples" / "nginx"
TOKEN = "bench-token"
CONFIG_ENV = "BENCH_GATEWAY_CONFIG"


# --------------------------------------------------------------------------- the app gunicorn runs


def create() -> Any:
    """gunicorn factory: the gateway with a one-token authorizer and a trivial endpoint."""
    from flask import Flask

    from broker.gateway.authorize import AccessDecision
    from broker.gateway.settings import DatasetSettings, DataStoreSettings, GatewaySettings
    from broker.gateway.wiring import init_app

    config = json.loads(Path(os.environ[CONFIG_ENV]).read_text())

    class OneToken:
        def authorize(
            self,
            bearer: str | None,
            dataset: str,
            object_path: str,
            action: str = "read",
            *,
            passports: Sequence[str] = (),
        ) -> AccessDecision:
            if bearer != TOKEN:
                return AccessDecision.denied(401, "invalid_token", "Unknown token.")
            return AccessDecision.allowed("bench@example.org", expires_at=2_000_000_000)

    settings = GatewaySettings(
        stores={
            "local": DataStoreSettings(kind="directory", path=config["root"], offload_location="/_gateway/local/"),
            "web": DataStoreSettings(kind="http", base_url=config["upstream"]),
        },
        datasets={
            "ds1": DatasetSettings(store="local", prefix="ds1"),
            "off1": DatasetSettings(store="local", prefix="ds1", mode="offload"),
            "web1": DatasetSettings(store="web", prefix="ds1"),
        },
        decision_prefix="/data/",
        metrics=False,
    )
    app = Flask("gateway-bench")
    init_app(app, OneToken(), settings, data_dir=config["data_dir"])

    @app.get("/trivial")
    def trivial() -> Any:
        return {"status": "ok"}

    return app


# --------------------------------------------------------------------------- parts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a server exited before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def render(path: Path, values: dict[str, str]) -> str:
    return string.Template(path.read_text()).safe_substitute(values)


def start_nginx(
    work: Path, gateway_port: int, front_port: int, direct_port: int, root: Path
) -> subprocess.Popen[bytes]:
    prefix = work / "nginx"
    servers = prefix / "servers"
    servers.mkdir(parents=True)
    (servers / "front.conf").write_text(
        render(
            EXAMPLES / "gateway-server.conf",
            {
                "LISTEN": f"127.0.0.1:{front_port}",
                "GATEWAY_ADDR": f"127.0.0.1:{gateway_port}",
                "LOCAL_STORE_ROOT": f"{root}/",
                "ARCHIVE_URL": f"http://127.0.0.1:{direct_port}/",
                "ARCHIVE_API_KEY": "x",
                "FILES_ROOT": f"{root}/",
            },
        )
    )
    (servers / "direct.conf").write_text(f"""
server {{
    listen 127.0.0.1:{direct_port};
    root {root};
    sendfile on;
    tcp_nopush on;
    location / {{ }}
}}
""")
    (prefix / "nginx.conf").write_text(
        render(
            EXAMPLES / "nginx.conf",
            {
                "PREFIX": str(prefix),
                "SERVER_CONF": str(servers / "*.conf"),
                "USER_DIRECTIVE": "user root;" if os.geteuid() == 0 else "",
            },
        )
    )
    process = subprocess.Popen(
        [
            shutil.which("nginx") or "nginx",
            "-p",
            str(prefix),
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            str(prefix / "error.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(front_port, process)
        wait_port(direct_port, process)
    except BaseException:
        stop(process)
        raise
    return process


def start_gunicorn(port: int, config: Path, workers: int, threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, CONFIG_ENV: str(config), "PYTHONPATH": f"{ROOT}:{ROOT / 'bench'}"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-class",
            "gthread" if threads > 1 else "sync",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
            "gateway:create()",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, process)
    except BaseException:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def make_file(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


# --------------------------------------------------------------------------- measurements


def curl_speed(url: str, expected_size: int) -> float:
    """Bytes per second of one download (curl discards the body)."""
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "-w",
            "%{speed_download} %{size_download} %{http_code}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout.split()
    speed, size, code = float(out[0]), int(float(out[1])), out[2]
    if code != "200" or size != expected_size:
        raise SystemExit(f"{url}: status {code}, {size} bytes (expected 200, {expected_size})")
    return speed


def worker_pids(master: subprocess.Popen[bytes], timeout: float = 20) -> list[int]:
    """The master's worker processes (waits until it has forked them)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()]
        if pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)


def vm_hwm_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    assert match is not None
    return int(match.group(1)) / 1024


def wrk_rate(url: str, seconds: int, headers: dict[str, str]) -> float:
    args = ["wrk", "-t2", "-c16", f"-d{seconds}s"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True, timeout=seconds + 30).stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise SystemExit(f"{url}: {bad.group(1)} non-2xx answers\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise SystemExit(f"wrk printed no rate:\n{out}")
    return float(match.group(1))


def measure_layer1(args: argparse.Namespace) -> dict[str, Any]:
    """Sections 1-3: throughput and memory against nginx, request rates with the table authorizer."""
    big_size = args.size_mib << 20
    small_size = 1 << 20
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        work = Path(tmp)
        root = work / "store"
        make_file(root / "ds1" / "big.bin", big_size)
        make_file(root / "ds1" / "small.bin", small_size)
        gw_port, front_port, direct_port, rss_port = free_port(), free_port(), free_port(), free_port()
        config = work / "config.json"
        config.write_text(
            json.dumps(
                {"root": str(root), "data_dir": str(work / "data"), "upstream": f"http://127.0.0.1:{direct_port}/"}
            )
        )
        nginx = start_nginx(work, gw_port, front_port, direct_port, root)
        try:
            gunicorn = start_gunicorn(gw_port, config, workers=2, threads=4)
            results: dict[str, Any] = {}
            try:
                # 1. throughput, each figure next to a fresh nginx baseline
                direct = f"http://127.0.0.1:{direct_port}/ds1/big.bin"
                cases = {
                    "stream (gunicorn, sendfile)": f"http://127.0.0.1:{gw_port}/data/ds1/big.bin",
                    "stream via nginx front": f"http://127.0.0.1:{front_port}/data/ds1/big.bin",
                    "offload (X-Accel-Redirect)": f"http://127.0.0.1:{front_port}/data/off1/big.bin",
                    "http store relay (Python)": f"http://127.0.0.1:{gw_port}/data/web1/big.bin",
                }
                # Paired, interleaved runs: each download is measured right after an nginx-direct
                # download of the same file, and the figure is the median of those ratios.
                curl_speed(direct, big_size)
                samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
                for _ in range(args.repeat):
                    for name, url in cases.items():
                        base = curl_speed(direct, big_size)
                        samples[name].append((curl_speed(url, big_size), base))
                results["throughput"] = [
                    (
                        name,
                        statistics.median(s for s, _ in pairs),
                        statistics.median(b for _, b in pairs),
                        statistics.median(s / b for s, b in pairs),
                        max(s for s, _ in pairs) / max(b for _, b in pairs),
                    )
                    for name, pairs in samples.items()
                ]

                # 3. request rates (same gunicorn, warm), interleaved rounds, median ratio per endpoint
                auth = {"Authorization": f"Bearer {TOKEN}"}
                trivial_url = f"http://127.0.0.1:{gw_port}/trivial"
                endpoints = {
                    "streaming route, 1 KiB Range": (
                        f"http://127.0.0.1:{gw_port}/data/ds1/big.bin",
                        {**auth, "Range": "bytes=1048576-1049599"},
                    ),
                    "decision endpoint": (f"http://127.0.0.1:{gw_port}/gateway/decision/data/ds1/big.bin", auth),
                }
                wrk_rate(trivial_url, 1, {})  # warm up
                rates: dict[str, list[tuple[float, float]]] = {name: [] for name in endpoints}
                for _ in range(args.repeat):
                    for name, (url, headers) in endpoints.items():
                        base = wrk_rate(trivial_url, args.seconds, {})
                        rates[name].append((wrk_rate(url, args.seconds, headers), base))
                results["rates"] = [
                    (
                        name,
                        statistics.median(r for r, _ in pairs),
                        statistics.median(b for _, b in pairs),
                        statistics.median(r / b for r, b in pairs),
                    )
                    for name, pairs in rates.items()
                ]
            finally:
                stop(gunicorn)

            # 2. memory: one sync worker, small file then the big one, per store kind
            rss_rows = []
            for name, path in (("directory store (sendfile)", "ds1"), ("http store relay", "web1")):
                single = start_gunicorn(rss_port, config, workers=1, threads=1)
                try:
                    [worker] = worker_pids(single)
                    curl_speed(f"http://127.0.0.1:{rss_port}/data/{path}/small.bin", small_size)
                    after_small = vm_hwm_mb(worker)
                    curl_speed(f"http://127.0.0.1:{rss_port}/data/{path}/big.bin", big_size)
                    after_big = vm_hwm_mb(worker)
                    rss_rows.append((name, after_small, after_big))
                finally:
                    stop(single)
            results["rss"] = rss_rows
        finally:
            stop(nginx, signal.SIGQUIT)
    return results


def print_layer1(args: argparse.Namespace, results: dict[str, Any]) -> None:
    print(
        f"\nGateway bench: {args.size_mib} MiB file, loopback, {os.cpu_count()} cores "
        f"(median of {args.repeat} paired runs; nginx direct measured right before each)"
    )
    print(
        "\nThroughput (ratio to nginx serving the same file directly; 'best' = best run / best nginx run,\n"
        "the figure least disturbed by other load on a shared machine)"
    )
    for name, speed, base, ratio, best in results["throughput"]:
        print(
            f"  {name:30s} {speed / 1e6:8.0f} MB/s   nginx {base / 1e6:8.0f} MB/s   "
            f"median ratio {ratio:5.2f}   best {best:5.2f}"
        )
    print("\nPeak RSS of one gunicorn worker (VmHWM)")
    for name, small, big in results["rss"]:
        print(
            f"  {name:30s} after 1 MiB {small:6.1f} MB   after {args.size_mib} MiB {big:6.1f} MB   "
            f"growth {big - small:5.1f} MB"
        )
    print(
        f"\nRequest rate, table authorizer (layer 1), gunicorn gthread 2x4, wrk -t2 -c16 -d{args.seconds}s "
        "(ratio to a trivial endpoint measured just before)"
    )
    for name, rate, base, ratio in results["rates"]:
        print(f"  {name:30s} {rate:8.0f} req/s   trivial {base:8.0f} req/s   ratio {ratio:5.2f}")


@dataclass
class RealRates:
    """Section 4: per endpoint, (rate, trivial baseline of its round) for each round."""

    load_at_start: tuple[float, float, float]
    backend: str
    workers: int
    visas_requested: int
    visas_used: int
    passport_header_bytes: int
    refused_header_bytes: int | None  # the requested passport's header line, when the server refused it
    refused_status: int | None
    trivial: list[float]
    rounds: dict[str, list[tuple[float, float]]]


@contextlib.contextmanager
def store_backend(backend: str, work: Path) -> Iterator[dict[str, Any]]:
    """The ``store`` settings of ``backend``, with a redis-server or PostgreSQL of the bench's own on a free port.

    Reuses the tests' helpers (tests/support), which start the real servers from Debian's binaries.
    """
    if backend == "sqlite":
        yield {}
    elif backend == "redis":
        from tests.support.redis_server import RedisServer  # only this backend needs it

        server = RedisServer(work / "redis").start()
        try:
            yield {"backend": "redis", "url": server.url}
        finally:
            server.stop()
    else:
        from tests.support.postgres_server import PostgresCluster  # only this backend needs psycopg

        cluster = PostgresCluster()
        try:
            primary = cluster.primary()
            yield {"backend": "postgres", "url": primary.url}
        finally:
            cluster.close()


def measure_real(args: argparse.Namespace, workers: int, names: Sequence[str] = ()) -> RealRates:
    """Section 4: the real decision path of a real ``ga4gh-broker serve``, against its own /healthz.

    ``names`` limits the endpoints to those whose name contains one of them (all when empty).
    """
    from gateway_real import RealBroker, header_line_bytes

    load = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="gateway-bench-real-") as tmp,
        store_backend(args.backend, Path(tmp)) as store,
    ):
        broker = RealBroker(Path(tmp) / "broker", free_port(), store=store, workers=workers)
        broker.work.mkdir()
        broker.prepare()
        broker.start()
        try:
            refused_bytes = refused_status = None
            visas = args.visas
            passport = broker.passport(visas)
            head = broker.file_head(1024)
            ranged = {"Range": "bytes=0-1023"}
            # The server's head limit (server.max_header_bytes) may refuse a long passport: use the most
            # visas it takes, and say so.
            status, _ = broker.get(broker.object_path, {"Authorization": f"Bearer {passport}", **ranged})
            if status in (400, 413, 431):
                refused_bytes, refused_status = header_line_bytes(passport), status
                while visas > 1 and status in (400, 413, 431):
                    visas -= 1
                    passport = broker.passport(visas)
                    status, _ = broker.get(broker.object_path, {"Authorization": f"Bearer {passport}", **ranged})
            access_token = broker.access_token()
            trivial = broker.base + "/healthz"
            data = broker.base + broker.object_path
            endpoints = {
                f"(b) streaming, 1 KiB Range, passport ({visas} visas)": (
                    data,
                    {"Authorization": f"Bearer {passport}", **ranged},
                ),
                "(c) streaming, 1 KiB Range, our access token": (
                    data,
                    {"Authorization": f"Bearer {access_token}", **ranged},
                ),
                "(d) decision endpoint, X-Original-URI, passport": (
                    broker.base + "/gateway/decision",
                    {"Authorization": f"Bearer {passport}", "X-Original-URI": broker.object_path},
                ),
            }
            if names:
                endpoints = {k: v for k, v in endpoints.items() if any(n in k for n in names)}
            # Every credential must really pass before it is timed (wrk also stops on any non-2xx).
            for name, (url, headers) in endpoints.items():
                status, body = broker.get(url[len(broker.base) :], headers)
                expected = (200, b"") if "decision" in name else (206, head)
                if (status, body) != expected:
                    raise SystemExit(f"{name}: status {status} {body[:300]!r}\n{broker.log_tail()}")
            # Warm every worker's caches (wrk's 16 connections spread over the workers).
            wrk_rate(trivial, 1, {})
            for url, headers in endpoints.values():
                wrk_rate(url, 1, headers)
            # Rounds T X1 X2 X3 T X1 X2 X3 ... T: each round's baseline is the higher of the /healthz
            # figures measured right before and right after it. The machine's noise only ever lowers
            # a figure (a run of wrk now and then drops to a third), so the higher one is the truer
            # baseline, and the ratio can only err low.
            trivial_rates = [wrk_rate(trivial, args.seconds, {})]
            raw: dict[str, list[float]] = {name: [] for name in endpoints}
            for _ in range(args.repeat):
                for name, (url, headers) in endpoints.items():
                    raw[name].append(wrk_rate(url, args.seconds, headers))
                trivial_rates.append(wrk_rate(trivial, args.seconds, {}))
        except BaseException:
            print(f"the broker's log (last lines):\n{broker.log_tail()}", file=sys.stderr)
            raise
        finally:
            broker.stop()
    rounds = {
        name: [(rate, max(trivial_rates[i], trivial_rates[i + 1])) for i, rate in enumerate(rates)]
        for name, rates in raw.items()
    }
    return RealRates(
        load,
        args.backend,
        workers,
        args.visas,
        visas,
        header_line_bytes(passport),
        refused_bytes,
        refused_status,
        trivial_rates,
        rounds,
    )


def print_real(args: argparse.Namespace, real: RealRates) -> None:
    print(
        f"\nRequest rate, real decision path: ga4gh-broker serve (granian, {real.workers} workers x 4 threads, "
        f"{real.backend} store), wrk -t2 -c16 -d{args.seconds}s, {args.repeat} rounds, warm caches"
    )
    print("  load average at start: " + " ".join(f"{x:.2f}" for x in real.load_at_start))
    if real.refused_header_bytes is not None:
        print(
            f"  NOTE: a {real.visas_requested}-visa passport makes a {real.refused_header_bytes}-byte Authorization "
            f"line, which the server answers {real.refused_status}. Measured with "
            f"{real.visas_used} visas ({real.passport_header_bytes}-byte line) instead."
        )
    print(
        f"  {'(a) /healthz (trivial)':50s} "
        + " ".join(f"{r:8.0f}" for r in real.trivial)
        + " req/s (before, between and after the rounds)"
    )
    for name, pairs in real.rounds.items():
        rate = statistics.median(r for r, _ in pairs)
        base = statistics.median(b for _, b in pairs)
        ratio = statistics.median(r / b for r, b in pairs)
        each = " ".join(f"{r / b:4.2f}" for r, b in pairs)
        print(
            f"  {name:50s} {rate:8.0f} req/s   trivial {base:8.0f} req/s   ratio to (a) {ratio:5.2f}   (rounds: {each})"
        )


def print_scaling(args: argparse.Namespace, table: list[RealRates]) -> None:
    """Section 5: the decision endpoint's rate with 1, 2, 4 workers on one shared store."""
    print(
        f"\nWorker scaling, decision endpoint (passport), {table[0].backend} store, {os.cpu_count()} cores, "
        f"wrk -t2 -c16 -d{args.seconds}s, median of {args.repeat} rounds (wrk runs on the same cores)"
    )
    print(
        f"  {'workers':>7}  {'decision req/s':>14}  {'/healthz req/s':>14}  {'ratio to /healthz':>17}  "
        f"{'vs 1 worker':>11}"
    )
    first = None
    for real in table:
        [pairs] = real.rounds.values()
        rate = statistics.median(r for r, _ in pairs)
        base = statistics.median(b for _, b in pairs)
        ratio = statistics.median(r / b for r, b in pairs)
        first = first or rate
        print(f"  {real.workers:>7}  {rate:14.0f}  {base:14.0f}  {ratio:17.2f}  {rate / first:11.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per endpoint")
    parser.add_argument("--repeat", type=int, default=3, help="downloads per throughput figure, wrk rounds (median)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--real", action="store_true", help="only the real decision path (section 4)")
    which.add_argument("--no-real", action="store_true", help="skip the real decision path (section 4)")
    parser.add_argument("--visas", type=int, default=10, help="visas in the passport of section 4")
    parser.add_argument(
        "--backend", choices=("sqlite", "redis", "postgres"), default="sqlite", help="the store of section 4"
    )
    parser.add_argument("--workers", type=int, default=2, help="serve's worker processes in section 4")
    parser.add_argument(
        "--scaling", action="store_true", help="only the worker-scaling table (1, 2, 4 workers; decision endpoint)"
    )
    args = parser.parse_args()
    if args.visas < 1:
        parser.error("--visas must be at least 1")
    for tool in ("wrk",) if args.real or args.scaling else ("nginx", "curl", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (Debian package {tool})")
    print("load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    if args.scaling:
        table = [measure_real(args, workers, names=("(d)",)) for workers in (1, 2, 4)]
        print_scaling(args, table)
        return 0
    layer1 = None if args.real else measure_layer1(args)
    real = None if args.no_real else measure_real(args, args.workers)
    if layer1 is not None:
        print_layer1(args, layer1)
    if real is not None:
        print_real(args, real)
    return 0


if __name__ == "__main__":
    sys.exit(main())
