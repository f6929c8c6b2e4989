"""A real multi-process deployment for the end-to-end tests, and what a researcher does against it.

One real redis-server holds the shared store (``store.backend: redis``, signing keys sealed in
it with ``keys.storage: store``); N ``ga4gh-broker serve`` processes (gunicorn) on their own
loopback ports read the same settings, so they are one broker with one issuer, as behind a
load balancer. The policy directory is rendered from ``tests/e2e/policies`` with the issuer
filled in, the gateway serves a ``directory`` store of small random files, and the E2E DAC
(``dataset_patterns: [E2E-*]``) has one member.

People are created in the store before the processes start (a DAC member must be named by
identity id in the settings). Everything a test then does goes over HTTP: the browser login
(tests.oidc.flow), the DAC API, token exchange, the gateway.
"""

from __future__ import annotations

import random
import secrets
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from broker.core.models import TOKEN_EXCHANGE_GRANT
from broker.login.local import add_user
from broker.oidc.passwords import hash_secret
from broker.settings import Settings, load_settings
from broker.store.settings import StoreSettings
from tests.oidc.broker_process import BrokerProcess
from tests.oidc.flow import PASSWORD, Client, full_login
from tests.support.legacy_store import open_store
from tests.support.parts import free_port
from tests.support.redis_server import RedisServer

POLICY_TEMPLATES = Path(__file__).resolve().parent / "policies"
ISSUER_PLACEHOLDER = "@ISSUER@"
DAC_SOURCE = "https://dac.e2e.example/dacs/E2E"
DATASET_URL_TEMPLATE = "https://data.e2e.example/datasets/{dataset}"
KEY_SECRET = "e2e-sealed-keys-" + "k" * 24
CLIENT_ID = "portal"
CLIENT_SECRET = "portal-secret-" + "p" * 32
CALLBACK = "https://portal.e2e.example/callback"
PASSPORT_TOKEN_TYPE = "urn:ga4gh:params:oauth:token-type:passport"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
PEOPLE = ("member", "researcher", "withdrawer")  # withdrawer: withdraws consent, ending all its logins
# dataset id -> (folder in the store, file name, size): one dataset per test, so tests never share a grant.
DATASETS = {
    "E2E-FLOW": ("flow", "reads.bam", 300_007),
    "E2E-AUDIT": ("audit", "calls.vcf.gz", 40_000),
    "E2E-HTS": ("hts", "sample.bam", 250_000),
    "E2E-TOKEN": ("token", "reads.cram", 20_000),
    "E2E-AUD": ("aud", "variants.bcf", 12_345),
    "E2E-NEVER": ("never", "closed.bam", 1_000),  # never granted to anyone
}


def render_policies(target: Path, issuer: str) -> Path:
    """Copy the policy fixtures to ``target`` with the deployment's issuer filled in."""
    target.mkdir(parents=True, exist_ok=True)
    for source in POLICY_TEMPLATES.glob("*.yaml"):
        (target / source.name).write_text(source.read_text().replace(ISSUER_PLACEHOLDER, issuer), encoding="utf-8")
    return target


def write_files(root: Path, seed: int = 20240611) -> dict[str, bytes]:
    """Random bytes for every dataset file (a fixed seed, so a failure is reproducible)."""
    rnd = random.Random(seed)
    contents: dict[str, bytes] = {}
    for dataset, (folder, name, size) in DATASETS.items():
        data = rnd.randbytes(size)
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(data)
        contents[dataset] = data
    return contents


def object_path(dataset: str) -> str:
    """``/data/<dataset>/<file>``: the gateway route of the dataset's one file."""
    return f"/data/{dataset}/{DATASETS[dataset][1]}"


def client_settings(scopes: Iterable[str]) -> dict[str, Any]:
    """The confidential web portal: code + PKCE, refresh, token exchange (hash only in the settings)."""
    return {
        "client_id": CLIENT_ID,
        "name": "E2E portal",
        "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code", "refresh_token", TOKEN_EXCHANGE_GRANT],
        "scopes": list(scopes),
        "secret_hash": hash_secret(CLIENT_SECRET, log2_n=10),
    }


@dataclass
class Node(BrokerProcess):
    """One ``ga4gh-broker serve`` process of a deployment: the shared settings file, its own port and log.

    The issuer is the deployment's (the first node's URL), not this node's own address.
    """

    shared_issuer: str = ""
    settings_text: str = ""

    @property
    def issuer(self) -> str:
        return self.shared_issuer

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def write_settings(self) -> None:
        self.config_path.write_text(self.settings_text, encoding="utf-8")


@dataclass
class Deployment:
    """The real parts of one test session and the people in it."""

    directory: Path
    redis: RedisServer
    nodes: list[Node]
    ids: dict[str, str]
    files: dict[str, bytes]
    gateway_audience: str
    client: Client = field(default_factory=lambda: Client(CLIENT_ID, CLIENT_SECRET, CALLBACK))

    @property
    def issuer(self) -> str:
        return self.nodes[0].issuer

    @property
    def config(self) -> Path:
        return self.nodes[0].config_path

    def settings(self) -> Settings:
        """The settings every node runs with (no ``BROKER_*`` overrides)."""
        return load_settings(self.config, environ={})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``ga4gh-broker -c <settings> ARGS`` as an operator runs it on any node's host."""
        return self.nodes[0].cli(*args)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.redis.stop()


def start_deployment(directory: Path, workers: tuple[int, ...] = (1, 2)) -> Deployment:
    """Redis, people, settings, policies, files; then every node, started in parallel."""
    directory.mkdir(parents=True, exist_ok=True)
    redis = RedisServer(directory=directory / "redis").start()
    try:
        ports = [free_port() for _ in workers]
        issuer = f"http://127.0.0.1:{ports[0]}/"
        audience = f"http://127.0.0.1:{ports[-1]}/"
        store_settings = {"backend": "redis", "url": redis.url, "namespace": f"e2e-{secrets.token_hex(4)}"}
        ids = _add_people(issuer, store_settings)
        files = write_files(directory / "objects")
        settings = {
            "issuer": issuer,
            "data_dir": str(directory / "data"),
            "store": store_settings,
            "keys": {"storage": "store", "encryption_secret": KEY_SECRET},
            "policy": {"directory": str(render_policies(directory / "policies", issuer)), "watch": True},
            "oidc": {"clients": [client_settings(["openid", "profile", "ga4gh_passport_v1", "dac"])]},
            "dac": {
                "committees": [
                    {
                        "id": "E2E",
                        "name": "E2E data access committee",
                        "source": DAC_SOURCE,
                        "dataset_patterns": ["E2E-*"],
                        "members": [{"identity": ids["member"], "role": "chair"}],  # grants directly: chairs only
                    }
                ],
                "dataset_url_template": DATASET_URL_TEMPLATE,
            },
            "gateway": {
                "public_base_url": audience,
                "stores": {"local": {"kind": "directory", "path": str(directory / "objects")}},
                "datasets": {name: {"store": "local", "prefix": folder} for name, (folder, _, _) in DATASETS.items()},
            },
        }
        text = yaml.safe_dump(settings, sort_keys=False)
        nodes = [
            Node(
                directory=directory / f"node{i + 1}", port=port, workers=count, shared_issuer=issuer, settings_text=text
            )
            for i, (port, count) in enumerate(zip(ports, workers, strict=True))
        ]
    except BaseException:
        redis.stop()
        raise
    deployment = Deployment(directory, redis, nodes, ids, files, audience)
    try:
        with ThreadPoolExecutor(len(nodes)) as pool:
            for started in [pool.submit(node.start) for node in nodes]:
                started.result()
    except BaseException:
        deployment.stop()
        raise
    return deployment


def _add_people(issuer: str, store_settings: dict[str, Any]) -> dict[str, str]:
    """Local accounts for everyone in PEOPLE (password PASSWORD); name -> identity id."""
    bare = Settings(issuer=issuer, store=StoreSettings(**store_settings))
    store = open_store(bare)
    try:
        return {name: add_user(bare, store, "local", name, PASSWORD, display_name=name.title()).id for name in PEOPLE}
    finally:
        store.close()


# --------------------------------------------------------------------------- what people do over HTTP


def login(node: Node, client: Client, username: str, scope: str) -> dict[str, Any]:
    """A browser logs ``username`` in on ``node`` (form, CSRF, consent); the client redeems the code with PKCE."""
    return full_login(node, client, scope=scope, username=username)


def exchange_passport(node: Node, client: Client, access_token: str, resource: str | None) -> str:
    """AAI 1.2 token exchange: a passport JWT for ``access_token`` (``resource`` becomes its ``aud``)."""
    data = {
        "grant_type": TOKEN_EXCHANGE_GRANT,
        "subject_token": access_token,
        "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": PASSPORT_TOKEN_TYPE,
    }
    if resource is not None:
        data["resource"] = resource
    response = requests.post(node.url("/token"), data=data, auth=client.auth, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["issued_token_type"] == PASSPORT_TOKEN_TYPE, body
    return str(body["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def dac_post(node: Node, member_token: str, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(node.url(f"/api/dac{path}"), json=body, headers=bearer(member_token), timeout=10)


def grant(node: Node, member_token: str, identity: str, dataset: str, days: int = 30) -> dict[str, Any]:
    """The DAC member grants ``identity`` the dataset through ``POST /api/dac/grants``."""
    response = dac_post(
        node,
        member_token,
        "/grants",
        {
            "identity": identity,
            "dataset": dataset,
            "end": int(time.time()) + days * 86400,
            "reason": f"e2e: approved application for {dataset}",
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def revoke(node: Node, member_token: str, grant_id: str, reason: str) -> dict[str, Any]:
    response = dac_post(node, member_token, f"/grants/{grant_id}/revoke", {"reason": reason})
    assert response.status_code == 200, response.text
    return dict(response.json())


def fetch(node: Node, dataset: str, token: str, **headers: str) -> requests.Response:
    """``GET /data/<dataset>/<file>`` with the bearer token, on a fresh connection (any worker may answer)."""
    return requests.get(node.url(object_path(dataset)), headers={**bearer(token), **headers}, timeout=10)
