"""The README's download example, run exactly as written against a real broker.

A reader follows the README on the embedded default (SQLite, key files, one machine): adds
accounts and a client with the CLI, lets a DAC member grant with ``ga4gh-broker grants add``,
logs in in a browser, then uses curl for everything else. The command lines below are the
ones README.md shows (the only change made here is the broker's address: the test's port
instead of 8080), so a README edit that breaks them shows up here first.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.e2e.deployment import DAC_SOURCE, DATASET_URL_TEMPLATE, Node, render_policies
from tests.oidc.flow import PASSWORD, Client, browser_code, claims, pkce_pair
from tests.support.parts import free_port, require_binary

README_BASE = "http://127.0.0.1:8080"
CALLBACK = "http://127.0.0.1:9000/callback"
GRANTED, NOT_GRANTED = "EGAD00001000001", "EGAD00001000002"
FILES = {GRANTED: ("NA12878.bam", 200_003), NOT_GRANTED: ("NA12891.bam", 5_000)}

# README, "A researcher logs in, a client gets a passport" (unchanged): redeem the code.
README_REDEEM = """\
curl -u portal:$SECRET -d grant_type=authorization_code -d code=$CODE \\
     -d redirect_uri=http://127.0.0.1:9000/callback -d code_verifier=$verifier http://127.0.0.1:8080/token
"""
# README, "Download data" (proposed): a passport addressed to this broker's gateway, then curl.
README_EXCHANGE = """\
curl -u portal:$SECRET -d grant_type=urn:ietf:params:oauth:grant-type:token-exchange \\
     -d subject_token=$ACCESS_TOKEN -d subject_token_type=urn:ietf:params:oauth:token-type:access_token \\
     -d requested_token_type=urn:ga4gh:params:oauth:token-type:passport -d resource=http://127.0.0.1:8080 \\
     http://127.0.0.1:8080/token
"""
README_DOWNLOAD = """\
curl -fsS -H "Authorization: Bearer $PASSPORT" -o NA12878.bam http://127.0.0.1:8080/data/EGAD00001000001/NA12878.bam
"""
README_RANGE = """\
curl -fsS -H "Authorization: Bearer $ACCESS_TOKEN" -r 0-65535 -o NA12878.head.bam \\
     http://127.0.0.1:8080/data/EGAD00001000001/NA12878.bam
"""
README_REFUSED = """\
curl -sS -w '\\n%{http_code}\\n' -H "Authorization: Bearer $PASSPORT" \\
     http://127.0.0.1:8080/data/EGAD00001000002/NA12891.bam
"""


@dataclass
class ReadmeBroker:
    node: Node
    workdir: Path
    files: dict[str, bytes]
    ids: dict[str, str]
    secret: str

    def sh(self, command: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run a README command line with bash in the reader's working directory."""
        line = command.replace(README_BASE, self.node.base)
        return subprocess.run(
            ["bash", "-c", line],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env},
            check=False,
        )


def _settings(tmp: Path, port: int, member: str | None) -> str:
    settings: dict[str, Any] = {
        "issuer": f"http://127.0.0.1:{port}/",
        "data_dir": str(tmp / "var"),
        "policy": {"directory": str(tmp / "policies")},
        "gateway": {
            "stores": {"genomes": {"kind": "directory", "path": str(tmp / "genomes")}},
            "datasets": {dataset: {"store": "genomes", "prefix": dataset} for dataset in FILES},
        },
    }
    if member is not None:
        settings["dac"] = {
            "dataset_url_template": DATASET_URL_TEMPLATE,
            "committees": [
                {
                    "id": "E2E",
                    "name": "E2E DAC",
                    "source": DAC_SOURCE,
                    "datasets": sorted(FILES),
                    "members": [{"identity": member, "role": "chair"}],
                }
            ],
        }
    return yaml.safe_dump(settings, sort_keys=False)


def _created_sub(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    match = re.search(r"\(sub ([0-9a-f]+)\)", done.stdout)
    assert match, done.stdout
    return match.group(1)


@pytest.fixture(scope="module")
def readme(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeBroker]:
    require_binary("curl", "the README's download example is a curl command")
    tmp = tmp_path_factory.mktemp("readme")
    port = free_port()
    node = Node(
        directory=tmp / "node",
        port=port,
        workers=1,
        shared_issuer=f"http://127.0.0.1:{port}/",
        settings_text=_settings(tmp, port, None),
    )
    node.directory.mkdir()
    render_policies(tmp / "policies", node.issuer)
    files: dict[str, bytes] = {}
    for dataset, (name, size) in FILES.items():
        (tmp / "genomes" / dataset).mkdir(parents=True)
        files[dataset] = os.urandom(size)
        (tmp / "genomes" / dataset / name).write_bytes(files[dataset])
    # README: accounts and a client, from the command line.
    node.write_settings()
    ids = {
        "alice": _created_sub(node.cli("users", "add", "alice", "--name", "Alice Researcher", stdin=PASSWORD + "\n")),
        "dora": _created_sub(node.cli("users", "add", "dora", "--name", "Dora DAC", stdin=PASSWORD + "\n")),
    }
    node.settings_text = _settings(tmp, port, ids["dora"])
    node.write_settings()
    added = node.cli("clients", "add", "portal", "--redirect-uri", CALLBACK)
    assert added.returncode == 0, added.stderr
    secret = re.search(r"client_secret: (\S+)", added.stdout)
    assert secret, added.stdout
    workdir = tmp / "reader"
    workdir.mkdir()
    try:
        node.start()
        yield ReadmeBroker(node, workdir, files, ids, secret.group(1))
    finally:
        node.stop()


def test_readme_download_with_curl_passport_range_and_refusal(readme: ReadmeBroker) -> None:
    node = readme.node
    granted = node.cli(
        "grants",
        "add",
        "--as",
        readme.ids["dora"],
        readme.ids["alice"],
        GRANTED,
        "--days",
        "30",
        "--reason",
        "README example",
    )
    assert granted.returncode == 0, granted.stderr

    # The browser part of the code flow (login form, consent); the rest is the README's curl.
    verifier, challenge = pkce_pair()
    query, _ = browser_code(
        requests.Session(),
        node,
        Client("portal", readme.secret, CALLBACK),
        username="alice",
        scope="openid ga4gh_passport_v1",
        state="s1",
        nonce="n1",
        code_challenge=challenge,
        code_challenge_method="S256",
    )
    redeemed = readme.sh(README_REDEEM, SECRET=readme.secret, CODE=query["code"], verifier=verifier)
    assert redeemed.returncode == 0, redeemed.stderr
    access_token = json.loads(redeemed.stdout)["access_token"]

    exchanged = readme.sh(README_EXCHANGE, SECRET=readme.secret, ACCESS_TOKEN=access_token)
    assert exchanged.returncode == 0, exchanged.stderr
    passport = json.loads(exchanged.stdout)["access_token"]
    assert claims(passport)["aud"] == node.base

    downloaded = readme.sh(README_DOWNLOAD, PASSPORT=passport)
    assert downloaded.returncode == 0, downloaded.stderr
    assert (readme.workdir / "NA12878.bam").read_bytes() == readme.files[GRANTED]

    ranged = readme.sh(README_RANGE, ACCESS_TOKEN=access_token)
    assert ranged.returncode == 0, ranged.stderr
    assert (readme.workdir / "NA12878.head.bam").read_bytes() == readme.files[GRANTED][:65536]

    refused = readme.sh(README_REFUSED, PASSPORT=passport)
    assert refused.returncode == 0, refused.stderr
    body, status = refused.stdout.rstrip("\n").rsplit("\n", 1)
    assert status == "403"
    answer = json.loads(body)
    assert answer["error"] == "no_matching_visa"
    assert answer["required"]["dataset"] == NOT_GRANTED
    assert answer["required"]["requires"]["visa"]["value"]["one_of"] == [
        DATASET_URL_TEMPLATE.format(dataset=NOT_GRANTED)
    ]
    assert not (readme.workdir / "NA12891.bam").exists()


def test_readme_download_fails_loudly_without_a_token(readme: ReadmeBroker) -> None:
    """``curl -f`` exits 22 on the 401, and writes no file: a script cannot mistake it for data."""
    done = readme.sh(README_DOWNLOAD.replace("NA12878.bam http", "anonymous.bam http"), PASSPORT="")
    assert done.returncode == 22, (done.returncode, done.stderr)
    assert "401" in done.stderr
    assert not (readme.workdir / "anonymous.bam").exists()
