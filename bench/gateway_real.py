"""A real broker for the gateway bench: ``ga4gh-broker serve`` deciding with its real parts.

The broker the bench starts is the one ``broker.app.create_app`` builds from settings:
``PassportAuthorizer`` over the process Verifier (with its VerifiedCache), the policy store
(``policy.directory``) and the gateway (a ``directory`` data store with one small file).

Credentials, both obtained the way a deployment obtains them:

- a passport from a trusted external AAI (``https://aai.bench.example/``), which is both a
  visa issuer (``trust.visa_issuers``) and a broker (``trust.brokers``) with its public key
  pinned inline (``jwks``), as ELIXIR-style AAIs are; its visas and its passport name the same
  ``sub``, so the holder is one identity without LinkedIdentities. The passport names the
  gateway in ``aud``. Of its visas, one is the ControlledAccessGrants for the dataset (the
  last one, so the policy scans the others first); the others are grants for other datasets,
  an affiliation, accepted terms and researcher status;
- one of our access tokens (scope ``ga4gh_passport_v1``) for a local account that a DAC
  member granted the dataset with ``ga4gh-broker grants add``; the token is signed with the
  broker's key ring by ``broker.oidc.tokens.mint_access_token`` (what the token endpoint
  calls), and the gateway resolves the holder's visas from the store.

The policy grants the dataset to a ControlledAccessGrants visa from the bench DAC issued by
either issuer.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

DATASET = "BENCH-DS1"
FILE_NAME = "reads.bam"
FILE_SIZE = 1 << 20
AAI = "https://aai.bench.example/"
AAI_JKU = "https://aai.bench.example/jwks.json"
AAI_KID = "bench-aai-1"
DAC_SOURCE = "https://dac.bench.example/dacs/BENCH"
DATASET_URL_TEMPLATE = "https://data.bench.example/datasets/{dataset}"
PASSPORT_TYP = "vnd.ga4gh.passport+jwt"
VISA_TYP = "vnd.ga4gh.visa+jwt"


POLICY = f"""\
description: Gateway bench. One dataset, for holders of a grant from the bench DAC.

lists:
  bench_issuers:
    description: Whose DAC grants count, the external AAI and this broker itself
    values: ["{AAI}", "@ISSUER@"]

datasets:
  {DATASET}:
    description: The bench dataset, one small file
    read:
      visa:
        type: ControlledAccessGrants
        value: const:{DATASET_URL_TEMPLATE.format(dataset=DATASET)}
        source: const:{DAC_SOURCE}
        by: dac
        issuers: list:bench_issuers
"""


def _env() -> dict[str, str]:
    """The caller's environment without ``BROKER_*`` overrides: the settings file alone decides."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}


@dataclass
class ExternalAai:
    """The trusted external AAI: one ES256 key, pinned in our settings."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": AAI_KID, "use": "sig", "alg": "ES256"}]}

    def visa(self, sub: str, visa: dict[str, Any], now: int, number: int) -> str:
        claims = {
            "iss": AAI,
            "sub": sub,
            "iat": now - 60,
            "exp": now + 3600,
            "jti": f"bench-visa-{number}",
            "ga4gh_visa_v1": visa,
        }
        return jwt.encode(claims, self.key, "ES256", headers={"typ": VISA_TYP, "kid": AAI_KID, "jku": AAI_JKU})

    def passport(self, sub: str, visa_count: int, audience: str, now: int) -> str:
        """A passport of ``visa_count`` visas, the dataset's grant last (``visa_count`` >= 1)."""
        asserted = now - 86_400
        fillers: list[dict[str, Any]] = [
            {
                "type": "AffiliationAndRole",
                "value": "faculty@uni.example.org",
                "source": "https://uni.example.org",
                "by": "so",
            },
            {
                "type": "AcceptedTermsAndPolicies",
                "value": "https://doi.org/10.1038/s41431-018-0219-y",
                "source": "https://uni.example.org",
                "by": "self",
            },
            {
                "type": "ResearcherStatus",
                "value": "https://doi.org/10.1038/s41431-018-0219-y",
                "source": "https://uni.example.org",
                "by": "peer",
            },
        ]
        fillers += [
            {
                "type": "ControlledAccessGrants",
                "value": DATASET_URL_TEMPLATE.format(dataset=f"OTHER-{i}"),
                "source": DAC_SOURCE,
                "by": "dac",
            }
            for i in range(1, max(0, visa_count - 4) + 1)
        ]
        grant = {
            "type": "ControlledAccessGrants",
            "value": DATASET_URL_TEMPLATE.format(dataset=DATASET),
            "source": DAC_SOURCE,
            "by": "dac",
        }
        objects = [*fillers[: visa_count - 1], grant]
        visas = [self.visa(sub, {**o, "asserted": asserted}, now, i) for i, o in enumerate(objects)]
        claims = {
            "iss": AAI,
            "sub": sub,
            "aud": audience,
            "iat": now - 10,
            "exp": now + 3600,
            "jti": f"bench-passport-{secrets.token_hex(8)}",
            "ga4gh_passport_v1": visas,
        }
        return jwt.encode(claims, self.key, "ES256", headers={"typ": PASSPORT_TYP, "kid": AAI_KID})


def header_line_bytes(token: str) -> int:
    """The length of the header line ``Authorization: Bearer <token>`` with its CRLF."""
    return len("Authorization: Bearer ") + len(token) + 2


@dataclass
class RealBroker:
    """One ``ga4gh-broker serve`` on ``port`` with its own data directory under ``work``."""

    work: Path
    port: int
    aai: ExternalAai = field(default_factory=ExternalAai)
    store: dict[str, Any] = field(default_factory=dict)  # the ``store`` settings; {} is SQLite in data_dir
    workers: int = 2
    process: subprocess.Popen[bytes] | None = None
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def base(self) -> str:
        return self.issuer.rstrip("/")

    @property
    def config(self) -> Path:
        return self.work / "settings.yaml"

    @property
    def object_path(self) -> str:
        return f"/data/{DATASET}/{FILE_NAME}"

    def settings(self, dac_member: str | None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "issuer": self.issuer,
            "data_dir": str(self.work / "data"),
            "log_level": "WARNING",
            "server": {"workers": self.workers, "threads": 4},
            "policy": {"directory": str(self.work / "policies")},
            "trust": {
                "visa_issuers": [{"iss": AAI, "jku": [AAI_JKU], "jwks": self.aai.jwks()}],
                "brokers": [{"iss": AAI, "jwks": self.aai.jwks()}],
            },
            "gateway": {
                "stores": {"bench": {"kind": "directory", "path": str(self.work / "objects")}},
                "datasets": {DATASET: {"store": "bench", "prefix": DATASET}},
            },
        }
        if self.store:
            data["store"] = self.store
        if dac_member is not None:
            data["dac"] = {
                "dataset_url_template": DATASET_URL_TEMPLATE,
                "committees": [
                    {
                        "id": "BENCH",
                        "name": "Bench DAC",
                        "source": DAC_SOURCE,
                        "datasets": [DATASET],
                        "members": [{"identity": dac_member, "role": "chair"}],
                    }
                ],
            }
        return data

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "broker", "-c", str(self.config), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(),
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"ga4gh-broker {args[0]} {args[1]} failed: {done.stderr.strip()}")
        return done.stdout

    def prepare(self) -> None:
        """Files, policy, accounts (CLI), the DAC and a grant of the dataset to ``alice`` (CLI)."""
        folder = self.work / "objects" / DATASET
        folder.mkdir(parents=True)
        (folder / FILE_NAME).write_bytes(os.urandom(FILE_SIZE))
        (self.work / "policies").mkdir()
        (self.work / "policies" / "bench.yaml").write_text(POLICY.replace("@ISSUER@", self.issuer))
        self.config.write_text(yaml.safe_dump(self.settings(None), sort_keys=False))
        if self.store.get("backend") == "postgres":
            self.cli("store", "migrate")
        password = secrets.token_urlsafe(18)
        for name in ("alice", "dora"):
            out = self.cli("users", "add", name, stdin=password + "\n")
            self.ids[name] = out.rsplit("(sub ", 1)[1].split(")", 1)[0]
        self.config.write_text(yaml.safe_dump(self.settings(self.ids["dora"]), sort_keys=False))
        self.cli(
            "grants",
            "add",
            "--as",
            self.ids["dora"],
            self.ids["alice"],
            DATASET,
            "--days",
            "30",
            "--reason",
            "gateway bench",
        )

    def start(self, timeout: float = 60) -> None:
        log = (self.work / "broker.log").open("wb")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "broker", "-c", str(self.config), "serve", "--bind", f"127.0.0.1:{self.port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(),
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the broker exited:\n{self.log_tail()}")
            try:
                if requests.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the broker did not become ready:\n{self.log_tail()}")

    def log_tail(self) -> str:
        path = self.work / "broker.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def access_token(self) -> str:
        """One of our access tokens for ``alice`` (scope ``openid ga4gh_passport_v1``), signed with the key
        ring the broker serves with, as the token endpoint mints it."""
        from broker.keys.ring import KeyRing
        from broker.oidc.tokens import mint_access_token, new_id
        from broker.settings import load_settings
        from tests.support.legacy_store import open_store

        settings = load_settings(self.config, environ={})
        store = open_store(settings)
        try:
            ring = KeyRing.open(
                settings.keys,
                settings.keys_path,
                store.kernel,
                leeway_seconds=settings.limits.clock_leeway_seconds,
                auto_maintain_seconds=None,
            )
            token, _ = mint_access_token(
                ring,
                settings,
                sub=self.ids["alice"],
                client_id="bench-portal",
                scope=("openid", "ga4gh_passport_v1"),
                grant=new_id(),
                now=int(time.time()),
            )
        finally:
            store.close()
        return token

    def passport(self, visa_count: int) -> str:
        return self.aai.passport("alice@aai.bench.example", visa_count, self.base, int(time.time()))

    def get(self, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """One request on a fresh connection: the status and the body."""
        with requests.Session() as session:
            answer = session.get(self.base + path, headers=headers, timeout=10, allow_redirects=False)
        return answer.status_code, answer.content

    def file_head(self, size: int) -> bytes:
        with (self.work / "objects" / DATASET / FILE_NAME).open("rb") as f:
            return f.read(size)
