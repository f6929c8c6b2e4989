"""A broker on two hosts over a PostgreSQL pair, under load, through a crash of its primary and of a host.

Issue 13 item 5. Real parts only, all started here: a PostgreSQL primary with a synchronous
streaming replica (initdb, pg_basebackup, ``synchronous_standby_names``; tests.support.
postgres_server), two "hosts" each running ``ga4gh-broker serve`` with 2 workers on port 8080 in
a network namespace of its own, joined to the database and nginx by a bridge (tests.deploy.network;
where namespaces cannot be made, on loopback addresses 127.0.0.2 and 127.0.0.3 instead, and the
figures say so), and one nginx in front (tests.deploy.hosts). The brokers' ``store.url`` names
both database nodes with ``target_session_attrs=read-write``.

While a bounded load generator asks the decision endpoint (each decision reads the holder's
grants and appends an audit record: it needs the store) and a DAC member grants and revokes
through the API, recording every acknowledgement:

1. a revocation is acknowledged, and the primary is killed with SIGKILL at once;
2. the replica is promoted (what a failover manager does; its detection delay is not measured);
3. later, one broker host is killed with SIGKILL (server and workers at once).

The figures print with ``-s``:

    .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/deploy

- acknowledged grants and revocations lost (must be 0);
- answers 200 to requests that needed the store while no primary existed (must be 0: those
  are 503, never 500);
- seconds from the kill to the first acknowledged write through the API (must be < 10);
- the revocation acknowledged just before the kill is enforced on every host after failover;
- after the host crash the other host keeps answering through nginx, nothing acknowledged lost.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from broker.identity.records import IDENTITIES, Identity
from broker.oidc.tokens import mint_access_token
from broker.settings import load_settings
from broker.store import open_kernel
from broker.store.records import Records
from tests.deploy.hosts import Front, Host, cli
from tests.deploy.network import Network, NetworkUnavailable, open_network
from tests.support.keys import open_ring
from tests.support.parts import free_port, require_binary
from tests.support.postgres_server import PostgresCluster

pytestmark = pytest.mark.slow  # real serve processes, a PostgreSQL pair, nginx

DAC_SOURCE = "https://dac.deploy.example/dacs/DEP"
DATASET_URL = "https://data.deploy.example/datasets/{dataset}"
LOAD_DATASET = "DEP-LOAD"  # the load generator's researcher holds a grant for it all along
WRITE_DATASET = "DEP-WRITE"  # the writer grants it and revokes it again, one researcher after another
REVOKED_DATASET = "DEP-REVOKED"  # revoked just before the primary is killed
DATASETS = (LOAD_DATASET, WRITE_DATASET, REVOKED_DATASET)
HOSTS = 2
LOOPBACK_ADDRESSES = ("127.0.0.2", "127.0.0.3")  # when network namespaces cannot be made
HOST_PORT = 8080  # every machine serves on the same port, as in production
WRITER_PEOPLE = 600
LOAD_THREADS = 4
KILL_TO_WRITE_TARGET = 10.0
OUTAGE_SECONDS = 2.0  # no primary at all for this long, before the promotion starts
POLICY = f"""
description: Rules of the deployment test; every DEP- dataset needs a grant from the DEP DAC.
lists:
  own_issuer:
    description: The broker under test (its issuer is the nginx front's URL)
    values: ["@ISSUER@"]
rules:
  dep_grant:
    description: A grant for this very dataset from the DEP DAC, signed by the broker under test
    rule:
      visa:
        type: ControlledAccessGrants
        value: const:https://data.deploy.example/datasets/${{dataset}}
        source: const:{DAC_SOURCE}
        by: dac
        issuers: list:own_issuer
templates:
  dep_datasets:
    description: The deployment test's datasets
    dataset_pattern: DEP-*
    read:
      rule: dep_grant
"""


@dataclass
class Call:
    """One request as a client saw it: when it was sent, when the answer came, the status (0: no answer)."""

    started: float
    ended: float
    status: int
    what: str = ""


@dataclass
class Load:
    """Decision requests through nginx from a few threads, each with a short pause (bounded load)."""

    url: str
    token: str
    threads: int = LOAD_THREADS
    pause: float = 0.02
    calls: list[Call] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        self.workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self.workers:
            worker.start()
        return self

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "X-Original-URI": f"/data/{LOAD_DATASET}/reads.bin"}
        with requests.Session() as session:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    status = session.get(f"{self.url}/gateway/decision", headers=headers, timeout=15).status_code
                except requests.RequestException:
                    status = 0
                self.calls.append(Call(started, time.monotonic(), status))
                time.sleep(self.pause)

    def finish(self) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(30)


@dataclass
class Writer:
    """A DAC member granting WRITE_DATASET to one researcher after another and revoking it again.

    Every answer is kept; an acknowledgement is a 201 for a grant and a 200 for a revocation. A
    grant whose answer was lost is left alone (it may or may not exist: nobody was told it does);
    a revocation is sent again until it is acknowledged (a retried revocation answers the same).
    """

    url: str
    token: str
    people: list[str]
    granted: dict[str, float] = field(default_factory=dict)  # grant id -> when acknowledged
    revoked: dict[str, float] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    ran_out: bool = False  # every researcher was used before the test ended: raise WRITER_PEOPLE

    def start(self) -> Writer:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _post(self, session: requests.Session, path: str, body: dict[str, Any], what: str) -> requests.Response | None:
        started = time.monotonic()
        try:
            response = session.post(f"{self.url}/api/dac{path}", json=body, timeout=15)
        except requests.RequestException:
            self.calls.append(Call(started, time.monotonic(), 0, what))
            return None
        self.calls.append(Call(started, time.monotonic(), response.status_code, what))
        return response

    def _run(self) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {self.token}"
            for identity in self.people:
                if self.stop.is_set():
                    return
                body = {"identity": identity, "dataset": WRITE_DATASET, "end": int(time.time()) + 86400}
                made = self._post(session, "/grants", {**body, "reason": "deployment test"}, "grant")
                if made is None or made.status_code != 201:
                    time.sleep(0.05)
                    continue
                grant_id = made.json()["id"]
                self.granted[grant_id] = time.monotonic()
                while not self.stop.is_set():
                    done = self._post(session, f"/grants/{grant_id}/revoke", {"reason": "deployment test"}, "revoke")
                    if done is not None and done.status_code == 200:
                        self.revoked[grant_id] = time.monotonic()
                        break
                    time.sleep(0.05)
            self.ran_out = True

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(30)

    def acks(self) -> list[float]:
        return sorted([*self.granted.values(), *self.revoked.values()])


def _settings(root: Path, issuer: str, store_url: str) -> dict[str, Any]:
    policies = root / "policies"
    policies.mkdir(parents=True)
    (policies / "deploy.yaml").write_text(POLICY.replace("@ISSUER@", issuer), encoding="utf-8")
    objects = root / "objects"
    for dataset in DATASETS:
        (objects / dataset).mkdir(parents=True)
        (objects / dataset / "reads.bin").write_bytes(b"\0" * 1024)
    return {
        "issuer": issuer,
        # Deadlines with room for a busy 2-core machine running every part of the deployment; a
        # short breaker window so that each worker probes the promoted replica soon.
        "server": {"threads": 8, "store_deadline_seconds": 5.0, "store_breaker_seconds": 2.0},
        "store": {
            "backend": "postgres",
            "url": store_url,
            "timeout_seconds": 5.0,
            "pool_min": 1,
            "pool_max": 6,
            "connect_timeout_seconds": 2,
        },
        "keys": {"storage": "store", "encryption_secret": "deployment-test-" + "k" * 24},
        "policy": {"directory": str(policies), "watch": False},
        "dac": {
            "committees": [
                {
                    "id": "DEP",
                    "name": "Deployment test DAC",
                    "source": DAC_SOURCE,
                    "dataset_patterns": ["DEP-*"],
                    "members": [{"identity": "member", "role": "chair"}],  # grants directly: chairs only
                }
            ],
            "dataset_url_template": DATASET_URL,
        },
        "gateway": {
            "stores": {"local": {"kind": "directory", "path": str(objects)}},
            "datasets": {name: {"store": "local", "prefix": name} for name in DATASETS},
        },
    }


def _decision(url: str, token: str, dataset: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "X-Original-URI": f"/data/{dataset}/reads.bin"}
    return requests.get(f"{url}/gateway/decision", headers=headers, timeout=15)


def _answers(url: str, token: str, dataset: str, wanted: int) -> Counter[int]:
    """The statuses of decision requests until ``wanted`` of them were not 503 (or 30 s passed).

    A 503 (the store slow on a busy machine, a breaker window) refuses and is sent again, as any
    client would; every status is counted, so a 200 among them is seen.
    """
    seen: Counter[int] = Counter()
    deadline = time.monotonic() + 30
    while sum(seen.values()) - seen[503] < wanted and time.monotonic() < deadline:
        seen[_decision(url, token, dataset).status_code] += 1
    return seen


def _grant(url: str, token: str, identity: str, dataset: str) -> str:
    """A grant through the API, sent again after a 503 (the same decision: a retry converges on one grant)."""
    body = {"identity": identity, "dataset": dataset, "end": int(time.time()) + 86400, "reason": "setup"}
    deadline = time.monotonic() + 30
    while True:
        made = requests.post(
            f"{url}/api/dac/grants", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=15
        )
        if made.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _wait(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.timeout(240)
def test_kill_9_of_the_primary_and_of_a_broker_host_loses_no_acknowledged_write_and_never_answers_200_without_store(
    tmp_path: Path,
) -> None:
    require_binary("nginx", "one nginx balances over the two broker hosts")
    began = time.monotonic()
    network: Network | None = None
    try:
        network = open_network()
        machines = f"network namespaces on bridge {network.cidr}"
    except NetworkUnavailable as exc:
        machines = f"loopback addresses (no network namespaces: {exc})"
    cluster = (
        PostgresCluster(listen=(network.gateway,), clients=(network.cidr,))
        if network is not None
        else PostgresCluster()
    )
    hosts: list[Host] = []
    front: Front | None = None
    load: Load | None = None
    writer: Writer | None = None
    try:
        primary = cluster.primary()
        replica = cluster.replica_of(primary)
        database = network.gateway if network is not None else "127.0.0.1"  # both servers' machine
        store_url = (
            f"postgresql://postgres@{database}:{primary.port},{database}:{replica.port}/postgres"
            "?target_session_attrs=read-write"
        )
        front_port = free_port()
        issuer = f"http://127.0.0.1:{front_port}/"
        shared = _settings(tmp_path, issuer, store_url)
        for i in range(HOSTS):
            if network is not None:
                netns, address = network.add_host(i + 1)
                host = Host(tmp_path / f"host{i + 1}", address, shared, port=HOST_PORT, netns=netns)
            else:
                address = LOOPBACK_ADDRESSES[i]
                host = Host(tmp_path / f"host{i + 1}", address, shared, port=free_port(address))
            hosts.append(host)
        config = hosts[0].write()
        migrated = cli(config, "store", "migrate")
        assert migrated.returncode == 0, migrated.stderr

        # People: the DAC member, the load's researcher, the one whose grant is revoked, the writer's.
        settings = load_settings(config, environ={})
        kernel = open_kernel(settings.store, settings.sqlite_path)
        try:
            people = ["member", "reader", "victim", *(f"researcher-{i}" for i in range(WRITER_PEOPLE))]
            now = int(time.time())
            identities = Records(kernel, IDENTITIES)

            def add_people(tx: Any) -> None:
                for name in people:
                    identities.in_tx(tx).put(Identity(id=name, created_at=now, display_name=name))

            kernel.transact(add_people)
        finally:
            kernel.close()

        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(lambda host: host.start().wait_ready(), hosts))
        front = Front(tmp_path / "nginx", hosts, port=front_port).start()

        kernel = open_kernel(settings.store, settings.sqlite_path)
        try:
            ring = open_ring(settings, kernel, auto_maintain_seconds=None)

            def token(sub: str, scope: str) -> str:
                minted, _ = mint_access_token(
                    ring,
                    settings,
                    sub=sub,
                    client_id="deploy-portal",
                    scope=("openid", scope),
                    grant=f"deploy-{sub}",
                    now=int(time.time()),
                )
                return minted

            member, reader, victim = (
                token("member", "dac"),
                token("reader", "ga4gh_passport_v1"),
                token("victim", "ga4gh_passport_v1"),
            )
        finally:
            kernel.close()

        _grant(front.url, member, "reader", LOAD_DATASET)
        victim_grant = _grant(front.url, member, "victim", REVOKED_DATASET)
        for host in hosts:  # every host allows both before anything happens: the checks below can fail
            for token, dataset in ((reader, LOAD_DATASET), (victim, REVOKED_DATASET)):
                allowed = _answers(host.url, token, dataset, 4)
                assert set(allowed) - {503} == {200} and allowed[200] == 4, (host.address, dataset, allowed)

        load = Load(front.url, reader).start()
        writer = Writer(front.url, member, people[3:]).start()
        _wait(lambda: len(writer.revoked) >= 5 and len(load.calls) >= 40, 60, "load and writes before the kill")

        # 1. A revocation is acknowledged (the member sends it again until it is); the primary dies at once.
        deadline = time.monotonic() + 30
        while True:
            revoked = requests.post(
                f"{front.url}/api/dac/grants/{victim_grant}/revoke",
                json={"reason": "revoked just before the primary's crash"},
                headers={"Authorization": f"Bearer {member}"},
                timeout=15,
            )
            if revoked.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None, revoked.text
        primary.kill()
        killed = time.monotonic()

        # 2. No primary for OUTAGE_SECONDS, then the promotion.
        time.sleep(OUTAGE_SECONDS)
        promotion_started = time.monotonic()
        replica.promote()
        promoted = time.monotonic()
        _wait(lambda: any(t > killed for t in writer.acks()), 60, "a write acknowledged after the kill")
        first_write = min(t for t in writer.acks() if t > killed)
        _wait(lambda: any(c.started > promoted and c.status == 200 for c in list(load.calls)), 30, "decisions")
        time.sleep(2.0)

        # The revocation acknowledged before the crash holds on every host, on every worker.
        after_failover = {host.address: _answers(host.url, victim, REVOKED_DATASET, 8) for host in hosts}
        through_front = _answers(front.url, victim, REVOKED_DATASET, 8)

        # 3. One broker host dies; the other goes on behind nginx.
        acked_before_crash = len(writer.acks())
        hosts[0].crash()
        crashed = time.monotonic()
        time.sleep(6.0)
        load.finish()
        writer.finish()
        ended = time.monotonic()

        listed = requests.get(
            f"{front.url}/api/dac/grants",
            params={"dataset": WRITE_DATASET},
            headers={"Authorization": f"Bearer {member}"},
            timeout=30,
        )
        assert listed.status_code == 200, listed.text
        stored = {g["id"]: g for g in listed.json()}
        victim_now = requests.get(
            f"{front.url}/api/dac/grants/{victim_grant}", headers={"Authorization": f"Bearer {member}"}, timeout=15
        ).json()
        verified = cli(hosts[1].config, "audit", "verify")
    finally:
        if load is not None:
            load.finish()
        if writer is not None:
            writer.finish()
        if front is not None:
            front.stop()
        for host in hosts:
            host.stop()
        cluster.close()
        if network is not None:
            network.close()

    calls = load.calls + writer.calls
    lost_grants = [g for g in writer.granted if g not in stored]
    lost_revocations = [g for g in writer.revoked if stored.get(g, {}).get("revoked_at") is None]
    no_primary = [c for c in calls if c.started >= killed and c.ended <= promotion_started]
    answered_without_store = [c for c in no_primary if c.status in (200, 201)]
    errors = [c for c in calls if c.status == 500]
    after_crash = [c for c in load.calls if c.started >= crashed]
    after_crash_ok = sum(1 for c in after_crash if c.status == 200)
    writes_after_crash = len(writer.acks()) - acked_before_crash
    first_decision = min(c.ended for c in load.calls if c.started > killed and c.status == 200)
    per_host = {address: dict(statuses) for address, statuses in after_failover.items()}
    report = "\n".join(
        [
            "",
            f"deployment failover: {HOSTS} hosts x 2 workers ({machines}) behind nginx, "
            "PostgreSQL primary + synchronous replica, "
            f"{len(load.calls)} decisions and {len(writer.calls)} DAC writes in {ended - began:.1f} s",
            f"  acknowledged grants {len(writer.granted)}, lost {len(lost_grants)}; "
            f"acknowledged revocations {len(writer.revoked)}, lost {len(lost_revocations)}",
            f"  requests while no primary existed ({OUTAGE_SECONDS:.0f} s): {len(no_primary)}, statuses "
            f"{dict(Counter(c.status for c in no_primary))}; answered 200/201 without the store: "
            f"{len(answered_without_store)}; 500 anywhere: {len(errors)}",
            f"  kill -9 -> promotion started {promotion_started - killed:.2f} s, done {promoted - killed:.2f} s; "
            f"first acknowledged write {first_write - killed:.2f} s; "
            f"first decision 200 {first_decision - killed:.2f} s",
            f"  revocation acknowledged just before the kill, after failover: per host {per_host}, "
            f"through nginx {dict(through_front)}",
            f"  host {hosts[0].address} killed: {len(after_crash)} decisions after, {after_crash_ok} answered 200, "
            f"statuses {dict(Counter(c.status for c in after_crash))}; {writes_after_crash} writes acknowledged after",
            f"  audit verify after both crashes: {verified.stdout.strip() or verified.stderr.strip()}",
            f"  test took {time.monotonic() - began:.1f} s",
        ]
    )
    print(report)
    assert not writer.ran_out, "the writer ran out of researchers: raise WRITER_PEOPLE"
    assert lost_grants == [] and lost_revocations == [], report
    assert answered_without_store == [] and errors == [], report
    assert len(no_primary) > 0 and any(c.status == 503 for c in no_primary), report  # the outage was real
    assert first_write - killed < KILL_TO_WRITE_TARGET, report
    assert victim_now["revoked_at"] is not None and victim_now["live"] is False, victim_now
    for statuses in [*after_failover.values(), through_front]:
        assert 200 not in statuses and statuses[403] >= 8 and set(statuses) <= {403, 503}, report
    assert after_crash and after_crash_ok >= 0.9 * len(after_crash), report
    assert any(c.status == 200 for c in after_crash if c.started >= crashed + 4.0), report
    assert writes_after_crash > 0, report
    assert verified.returncode == 0, report
