#!/usr/bin/env python
"""htsget tickets and Crypt4GH streaming, each as a ratio to its baseline on the same real server.

One real ``ga4gh-broker serve`` (granian, the production start; SQLite store, audit log, the
policy directory) built as ``bench/gateway_real.py`` builds it, with two datasets: ``BENCH-DS1``
(plain: a synthetic BAM with its BAI, and a large file of random bytes) and ``BENCH-ENC``
(``encryption: crypt4gh``: the same large file encrypted to the node's key). Credentials: a
passport from the trusted external AAI (pinned keys) addressed to the gateway.

1. htsget ticket requests per second (a 1 kb region of chr1, ``GET /ga4gh/htsget/v1/reads/...``)
   as a ratio to the decision endpoint (``/gateway/decision`` with ``X-Original-URI``) with the
   same passport: both make the same decision; the ticket also opens the file and its index
   (cached per file version), plans the region and writes the ticket. wrk -t2 -c16; each round
   pairs a ticket run with the decision runs right before and after it (the higher one is the
   baseline: noise only lowers a figure). Target >= 0.7.
2. Streaming of the large file (curl, loopback): re-encrypted to the researcher's key (header
   re-wrapped, body as stored) as a ratio to the plain file on the plain streaming route,
   alternating, ``--repeat`` downloads each. Target >= 0.9.

Medians of the rounds are printed with every round's ratio.

Run: ``.venv/bin/python bench/genomics.py [--size-mib 1024] [--seconds 5] [--repeat 3]``
(needs wrk, curl, samtools from Debian).
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from crypt4gh.keys.c4gh import generate
from crypt4gh.lib import encrypt
from gateway import free_port, make_file, wrk_rate
from gateway_real import DAC_SOURCE, DATASET, DATASET_URL_TEMPLATE, RealBroker

ENC = "BENCH-ENC"
BIG = "big.bin"
NODE_PASSPHRASE = "bench-node-passphrase"
ENC_POLICY = f"""\
description: Genomics bench. The encrypted dataset, for holders of a grant from the bench DAC.

lists:
  bench_enc_issuers:
    description: Whose DAC grants count, the external AAI and this broker itself
    values: ["https://aai.bench.example/", "@ISSUER@"]

datasets:
  {ENC}:
    description: The encrypted bench dataset
    read:
      visa:
        type: ControlledAccessGrants
        value: const:{DATASET_URL_TEMPLATE.format(dataset=DATASET)}
        source: const:{DAC_SOURCE}
        by: dac
        issuers: list:bench_enc_issuers
"""


class GenomicsBroker(RealBroker):
    """The gateway bench's broker with a BAM and a Crypt4GH dataset added."""

    def settings(self, dac_member: str | None) -> dict[str, Any]:
        data = super().settings(dac_member)
        gateway = data["gateway"]
        gateway["datasets"][ENC] = {"store": "bench", "prefix": ENC, "encryption": "crypt4gh"}
        gateway["crypt4gh"] = {
            "key_file": str(self.work / "keys" / "node.sec"),
            "passphrase_file": str(self.work / "keys" / "pass"),
        }
        return data

    def prepare_genomics(self, size: int) -> None:
        """Keys, the BAM, the large file plain and encrypted; then the broker's own preparation."""
        keys = self.work / "keys"
        keys.mkdir()
        generate(str(keys / "node.sec"), str(keys / "node.pub"), NODE_PASSPHRASE.encode(), b"bench node")
        (keys / "pass").write_text(NODE_PASSPHRASE + "\n")
        generate(str(keys / "researcher.sec"), str(keys / "researcher.pub"), b"researcher", b"bench researcher")
        plain = self.work / "objects" / DATASET / BIG
        make_file(plain, size)
        node_public = base64.b64decode((keys / "node.pub").read_text().splitlines()[1])
        (self.work / "objects" / ENC).mkdir(parents=True)
        with plain.open("rb") as src, (self.work / "objects" / ENC / BIG).open("wb") as out:
            encrypt([(0, os.urandom(32), node_public)], src, out)
        folder = self.work / "objects" / DATASET
        sam = "\n".join(
            ["@HD\tVN:1.6\tSO:coordinate", "@SQ\tSN:chr1\tLN:1000000"]
            + [f"r{i}\t0\tchr1\t{1 + i * 37}\t60\t100M\t*\t0\t0\t{'ACGT' * 25}\t*" for i in range(20_000)]
        )
        (folder.parent.parent / "reads.sam").write_text(sam + "\n")
        subprocess.run(
            ["samtools", "view", "-b", "-o", str(folder / "sample.bam"), str(folder.parent.parent / "reads.sam")],
            check=True,
        )
        subprocess.run(["samtools", "index", str(folder / "sample.bam")], check=True)

    def prepare(self) -> None:
        super().prepare()
        (self.work / "policies" / "enc.yaml").write_text(ENC_POLICY.replace("@ISSUER@", self.issuer))

    def key_header(self) -> str:
        return base64.b64encode((self.work / "keys" / "researcher.pub").read_bytes()).decode()


def curl_rate(url: str, headers: dict[str, str], expected_size: int) -> float:
    """Bytes per second of one download (curl discards the body)."""
    args = ["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download} %{size_download} %{http_code}"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True, timeout=600).stdout.split()
    speed, size, code = float(out[0]), int(float(out[1])), out[2]
    if code != "200" or size != expected_size:
        raise SystemExit(f"{url}: status {code}, {size} bytes (expected 200, {expected_size})")
    return speed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (medians are printed)")
    args = parser.parse_args()
    for tool in ("wrk", "curl", "samtools"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing (Debian package {tool})")
    print("load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()), flush=True)
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(prefix="genomics-bench-") as tmp:
        broker = GenomicsBroker(Path(tmp), free_port())
        broker.prepare()
        broker.prepare_genomics(size)
        broker.config.write_text(yaml.safe_dump(broker.settings(broker.ids["dora"]), sort_keys=False))
        broker.start()
        try:
            passport = broker.passport(4)
            auth = {"Authorization": f"Bearer {passport}"}
            ticket = (
                broker.base + f"/ga4gh/htsget/v1/reads/{DATASET}/sample.bam?referenceName=chr1&start=300000&end=301000"
            )
            decision = broker.base + "/gateway/decision"
            decision_headers = {**auth, "X-Original-URI": f"/data/{DATASET}/sample.bam"}
            status, body = broker.get(ticket[len(broker.base) :], auth)
            if status != 200 or b'"htsget"' not in body:
                raise SystemExit(f"ticket: {status} {body[:300]!r}\n{broker.log_tail()}")
            status, _ = broker.get("/gateway/decision", decision_headers)
            if status != 200:
                raise SystemExit(f"decision: {status}\n{broker.log_tail()}")
            wrk_rate(decision, 1, decision_headers)
            wrk_rate(ticket, 1, auth)
            decisions = [wrk_rate(decision, args.seconds, decision_headers)]
            tickets: list[float] = []
            for _ in range(args.repeat):
                tickets.append(wrk_rate(ticket, args.seconds, auth))
                decisions.append(wrk_rate(decision, args.seconds, decision_headers))
            ticket_ratios = [t / max(decisions[i], decisions[i + 1]) for i, t in enumerate(tickets)]

            plain_url = broker.base + f"/data/{DATASET}/{BIG}"
            enc_url = broker.base + f"/data/{ENC}/{BIG}"
            enc_headers = {**auth, "Crypt4GH-Public-Key": broker.key_header()}
            status, head = broker.get(f"/data/{ENC}/{BIG}", {**enc_headers, "Range": "bytes=0-7"})
            if status != 206 or head != b"crypt4gh":
                raise SystemExit(f"encrypted stream: {status} {head[:100]!r}\n{broker.log_tail()}")
            stored = (Path(tmp) / "objects" / ENC / BIG).stat().st_size
            reply = subprocess.run(
                ["curl", "-sI", *[a for k, v in enc_headers.items() for a in ("-H", f"{k}: {v}")], enc_url],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            served = int(
                next(line.split(":")[1] for line in reply.splitlines() if line.lower().startswith("content-length"))
            )
            plain_rates, enc_rates = [], []
            curl_rate(plain_url, auth, size)  # warm the page cache for both files
            curl_rate(enc_url, enc_headers, served)
            for _ in range(args.repeat):
                plain_rates.append(curl_rate(plain_url, auth, size))
                enc_rates.append(curl_rate(enc_url, enc_headers, served))
        except BaseException:
            print(f"the broker's log (last lines):\n{broker.log_tail()}", file=sys.stderr)
            raise
        finally:
            broker.stop()
    stream_ratios = [e / p for e, p in zip(enc_rates, plain_rates, strict=True)]
    print(f"\nhtsget tickets vs the decision endpoint (same passport, same server), wrk -t2 -c16 -d{args.seconds}s")
    print("  decision endpoint: " + " ".join(f"{r:.0f}" for r in decisions) + " req/s (before, between, after)")
    print("  ticket requests:   " + " ".join(f"{r:.0f}" for r in tickets) + " req/s")
    print(
        f"  ratio ticket/decision: median {statistics.median(ticket_ratios):.2f} "
        f"(rounds: {' '.join(f'{r:.2f}' for r in ticket_ratios)})   target >= 0.7"
    )
    print(
        f"\nCrypt4GH re-encrypted streaming vs plain streaming, {args.size_mib} MiB "
        f"(stored {stored} bytes, served {served})"
    )
    print("  plain:        " + " ".join(f"{r / 2**20:.0f}" for r in plain_rates) + " MiB/s")
    print("  re-encrypted: " + " ".join(f"{r / 2**20:.0f}" for r in enc_rates) + " MiB/s")
    print(
        f"  ratio re-encrypted/plain: median {statistics.median(stream_ratios):.2f} "
        f"(rounds: {' '.join(f'{r:.2f}' for r in stream_ratios)})   target >= 0.9"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
