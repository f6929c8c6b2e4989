"""htsget and Crypt4GH through a real ``ga4gh-broker serve`` (granian, 2 workers), end to end.

The broker runs from its settings file with its real parts: SQLite store, policy directory,
passport/access-token authorizer. People and the DAC grant are made with the broker's own CLI
(``users add``, ``grants add``); the researcher logs in in a browser (tests.oidc.flow) and a
client redeems the code for an access token. Then:

- the PyPI ``htsget`` client fetches regions with that bearer token from the ticket endpoint;
  the bytes it writes, read by samtools/bcftools, hold exactly the records the tools give on
  the original; refusals carry the htsget error names;
- a Crypt4GH file stored for the node is fetched with the researcher's public key, whole and
  as two Range requests (landing on either worker), and ``crypt4gh decrypt`` with the
  researcher's secret key recovers the plaintext byte for byte;
- ``ga4gh-broker download --crypt4gh-key/--crypt4gh-secret-key`` does the same as a client;
- ``ga4gh-broker audit list`` shows the tickets with their regions and the re-encryptions.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import requests
import yaml

from broker.client.credentials import CredentialStore, Login
from broker.oidc.passwords import hash_secret
from tests.e2e.deployment import Node
from tests.gateway.crypt4gh.conftest import WHY, Crypt4GH, KeyPair
from tests.gateway.htsget.support import Tools, lines, make_bam, make_vcf, run, tools
from tests.oidc.flow import PASSWORD, Client, full_login
from tests.support.parts import free_port, in_ci, require_binary

HTS, C4GH, CLOSED = "GEN-HTS", "GEN-C4GH", "GEN-CLOSED"
DATASET_URL_TEMPLATE = "https://data.genomics.example/datasets/{dataset}"
DAC_SOURCE = "https://dac.genomics.example/dacs/GEN"
CLIENT = Client("portal", "portal-secret-" + "g" * 32, "https://portal.genomics.example/callback")
POLICY = """\
description: htsget and Crypt4GH end to end. @ISSUER@ is the broker under test.
lists:
  gen_issuers:
    description: The broker under test signs the DAC grants
    values: ["@ISSUER@"]
rules:
  gen_dac_grant:
    description: A grant for this very dataset from the test DAC
    rule:
      visa:
        type: ControlledAccessGrants
        value: const:https://data.genomics.example/datasets/${dataset}
        source: const:https://dac.genomics.example/dacs/GEN
        by: dac
        issuers: list:gen_issuers
templates:
  gen_datasets:
    description: Each dataset granted on its own
    datasets:
      GEN-HTS: {}
      GEN-C4GH: {}
      GEN-CLOSED: {}
    read:
      rule: gen_dac_grant
"""
PLAIN_SIZE = 5 * 65536 + 4321


@dataclass
class Genomics:
    node: Node
    token: str
    tools: Tools
    c4gh: Crypt4GH
    researcher: KeyPair
    plain: bytes
    objects: Path

    def url(self, path: str) -> str:
        return self.node.url(path)


def _crypt4gh() -> Crypt4GH:
    bindir = str(Path(sys.executable).parent)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", os.pathsep.join([os.environ.get("PATH", ""), bindir]))
        return Crypt4GH(cli=require_binary("crypt4gh", WHY), keygen=require_binary("crypt4gh-keygen", WHY))


def _settings(tmp: Path, port: int, member: str | None) -> str:
    settings: dict[str, object] = {
        "issuer": f"http://127.0.0.1:{port}/",
        "data_dir": str(tmp / "var"),
        "policy": {"directory": str(tmp / "policies")},
        "oidc": {
            "clients": [
                {
                    "client_id": CLIENT.client_id,
                    "name": "Genomics portal",
                    "redirect_uris": [CLIENT.redirect_uri],
                    "grant_types": ["authorization_code"],
                    "scopes": ["openid", "ga4gh_passport_v1"],
                    "secret_hash": hash_secret(str(CLIENT.secret), log2_n=10),
                }
            ]
        },
        "gateway": {
            "stores": {"files": {"kind": "directory", "path": str(tmp / "objects")}},
            "datasets": {
                HTS: {"store": "files", "prefix": "hts"},
                C4GH: {"store": "files", "prefix": "c4gh", "encryption": "crypt4gh"},
                CLOSED: {"store": "files", "prefix": "closed"},
            },
            "crypt4gh": {"key_file": str(tmp / "keys" / "node.sec"), "passphrase_file": str(tmp / "keys" / "pass")},
        },
    }
    if member is not None:
        settings["dac"] = {
            "dataset_url_template": DATASET_URL_TEMPLATE,
            "committees": [
                {
                    "id": "GEN",
                    "name": "Genomics DAC",
                    "source": DAC_SOURCE,
                    "datasets": [HTS, C4GH, CLOSED],
                    "members": [{"identity": member, "role": "chair"}],  # grants directly: chairs only
                }
            ],
        }
    return yaml.safe_dump(settings, sort_keys=False)


def _sub(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    found = re.search(r"\(sub ([0-9a-f]+)\)", done.stdout)
    assert found, done.stdout
    return found.group(1)


@pytest.fixture(scope="module")
def genomics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Genomics]:
    tmp = tmp_path_factory.mktemp("genomics")
    hts_tools, c4gh = tools(), _crypt4gh()
    (tmp / "keys").mkdir()
    node_key = c4gh.make_keys(tmp / "keys", "node", "node-pass-" + "n" * 12)
    (tmp / "keys" / "pass").write_text(node_key.passphrase + "\n")
    researcher = c4gh.make_keys(tmp / "keys", "researcher", "researcher-pass")
    bam = make_bam(hts_tools, tmp / "made" / "bam", small_blocks=False)
    vcf = make_vcf(hts_tools, tmp / "made" / "vcf", small_blocks=True)
    for folder in ("hts", "c4gh", "closed"):
        (tmp / "objects" / folder).mkdir(parents=True)
    for source in (bam.path, bam.indexes["bai"], vcf.path, vcf.indexes["tbi"]):
        shutil.copy(source, tmp / "objects" / "hts" / source.name)
        shutil.copy(source, tmp / "objects" / "closed" / source.name)
    plain = random.Random(1612).randbytes(PLAIN_SIZE)
    (tmp / "objects" / "c4gh" / "sample.bin.c4gh").write_bytes(c4gh.encrypt(plain, [node_key]))
    (tmp / "objects" / "c4gh" / "reads.bam.c4gh").write_bytes(c4gh.encrypt(bam.path.read_bytes(), [node_key]))
    shutil.copy(bam.indexes["bai"], tmp / "objects" / "c4gh" / "reads.bam.bai")
    (tmp / "policies").mkdir()
    port = free_port()
    node = Node(
        directory=tmp / "node",
        port=port,
        workers=2,
        shared_issuer=f"http://127.0.0.1:{port}/",
        settings_text=_settings(tmp, port, None),
    )
    (tmp / "policies" / "gen.yaml").write_text(POLICY.replace("@ISSUER@", node.issuer))
    node.directory.mkdir()
    node.write_settings()
    ids = {name: _sub(node.cli("users", "add", name, stdin=PASSWORD)) for name in ("alice", "dora")}
    node.settings_text = _settings(tmp, port, ids["dora"])
    node.write_settings()
    for dataset in (HTS, C4GH):
        done = node.cli("grants", "add", "--as", ids["dora"], ids["alice"], dataset, "--days", "30", "--reason", "e2e")
        assert done.returncode == 0, done.stderr
    try:
        node.start()
        tokens = full_login(node, CLIENT, scope="openid ga4gh_passport_v1", username="alice")
        yield Genomics(node, str(tokens["access_token"]), hts_tools, c4gh, researcher, plain, tmp / "objects")
    finally:
        node.stop()


@pytest.fixture(scope="module")
def htsget() -> ModuleType:
    try:
        return importlib.import_module("htsget")
    except ImportError:
        message = "REAL PART MISSING: the GA4GH htsget client (pip install htsget, part of the test extra)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def test_htsget_client_reads_regions_through_a_real_broker_judged_by_samtools_and_bcftools(
    genomics: Genomics, htsget: ModuleType, tmp_path: Path
) -> None:
    g = genomics
    original_bam = g.objects / "hts" / "reads.bam"
    for name, start, end, region in (("chr1", 100_000, 104_000, "chr1:100001-104000"), ("chr3", None, None, "chr3")):
        out = tmp_path / f"{name}.bam"
        with out.open("wb") as sink:
            htsget.get(
                g.url(f"/ga4gh/htsget/v1/reads/{HTS}/reads.bam"),
                sink,
                reference_name=name,
                start=start,
                end=end,
                bearer_token=g.token,
                max_retries=0,
                timeout=30,
            )
        want = lines(run(g.tools.samtools, "view", original_bam, region))
        assert want and lines(run(g.tools.samtools, "view", out)) == want
    out = tmp_path / "chr2.vcf.gz"
    with out.open("wb") as sink:
        htsget.get(
            g.url(f"/ga4gh/htsget/v1/variants/{HTS}/variants.vcf.gz"),
            sink,
            reference_name="chr2",
            start=20_000,
            end=60_000,
            data_format="VCF",
            bearer_token=g.token,
            max_retries=0,
            timeout=30,
        )
    original_vcf = g.objects / "hts" / "variants.vcf.gz"
    want = lines(run(g.tools.bcftools, "view", "--no-version", "-H", "-r", "chr2:20001-60000", original_vcf))
    assert want and lines(run(g.tools.bcftools, "view", "--no-version", "-H", out)) == want


def test_htsget_refusals_through_a_real_broker(genomics: Genomics, htsget: ModuleType, tmp_path: Path) -> None:
    g = genomics
    reads = g.url(f"/ga4gh/htsget/v1/reads/{HTS}/reads.bam")
    with (tmp_path / "x.bam").open("wb") as sink, pytest.raises(htsget.exceptions.ClientError, match="401"):
        htsget.get(reads, sink, max_retries=0, timeout=30)

    def ask(url: str, **params: object) -> tuple[int, str]:
        reply = requests.get(url, params=params, headers={"Authorization": f"Bearer {g.token}"}, timeout=30)
        return reply.status_code, reply.json()["htsget"]["error"]

    anonymous = requests.get(reads, timeout=30)
    assert anonymous.status_code == 401 and anonymous.json()["htsget"]["error"] == "InvalidAuthentication"
    assert ask(g.url(f"/ga4gh/htsget/v1/reads/{CLOSED}/reads.bam")) == (403, "PermissionDenied")
    assert ask(reads, referenceName="chrNowhere") == (404, "NotFound")
    assert ask(reads, referenceName="chr1", start=9, end=3) == (400, "InvalidRange")
    assert ask(reads, format="CRAM") == (400, "UnsupportedFormat")


def test_crypt4gh_file_decrypts_whole_and_by_range_through_a_real_broker(genomics: Genomics, tmp_path: Path) -> None:
    g = genomics
    url = g.url(f"/data/{C4GH}/sample.bin.c4gh")
    key = base64.b64encode(g.researcher.pub.read_bytes()).decode()
    headers = {"Authorization": f"Bearer {g.token}", "Crypt4GH-Public-Key": key}
    missing = requests.get(url, headers={"Authorization": f"Bearer {g.token}"}, timeout=30)
    assert missing.status_code == 400 and missing.json()["error"] == "public_key_missing"
    whole = requests.get(url, headers=headers, timeout=30)
    assert whole.status_code == 200
    (tmp_path / "whole.c4gh").write_bytes(whole.content)
    assert g.c4gh.decrypt(tmp_path / "whole.c4gh", g.researcher) == (0, g.plain)
    cut = len(whole.content) // 3
    parts = [
        requests.get(url, headers={**headers, "Range": spec}, timeout=30)  # fresh connections: either worker
        for spec in (f"bytes=0-{cut}", f"bytes={cut + 1}-")
    ]
    assert [p.status_code for p in parts] == [206, 206]
    (tmp_path / "ranges.c4gh").write_bytes(b"".join(p.content for p in parts))
    assert g.c4gh.decrypt(tmp_path / "ranges.c4gh", g.researcher) == (0, g.plain)
    via_htsget_header = requests.get(
        url, headers={"Authorization": f"Bearer {g.token}", "Htsget-Context-Public-Key": key}, timeout=30
    )
    assert via_htsget_header.content == whole.content


def test_htsget_client_reads_a_region_of_an_encrypted_bam_through_a_real_broker(
    genomics: Genomics, htsget: ModuleType, tmp_path: Path
) -> None:
    g = genomics
    out = tmp_path / "region.bam.c4gh"
    with out.open("wb") as sink:
        htsget.get(
            g.url(f"/ga4gh/htsget/v1/reads/{C4GH}/reads.bam.c4gh"),
            sink,
            reference_name="chr2",
            start=50_000,
            end=70_000,
            bearer_token=g.token,
            headers={"Htsget-Context-Public-Key": base64.b64encode(g.researcher.pub.read_bytes()).decode()},
            max_retries=0,
            timeout=60,
        )
    code, plain = g.c4gh.decrypt(out, g.researcher)
    assert code == 0
    (tmp_path / "region.bam").write_bytes(plain)
    want = lines(run(g.tools.samtools, "view", g.objects / "hts" / "reads.bam", "chr2:50001-70000"))
    assert want and lines(run(g.tools.samtools, "view", tmp_path / "region.bam")) == want


def test_audit_log_holds_tickets_with_regions_and_reencryptions(genomics: Genomics) -> None:
    g = genomics
    headers = {"Authorization": f"Bearer {g.token}"}
    ticket = requests.get(
        g.url(f"/ga4gh/htsget/v1/reads/{HTS}/reads.bam"),
        params={"referenceName": "chr2", "start": 1000, "end": 2000},
        headers=headers,
        timeout=30,
    )
    assert ticket.status_code == 200
    key = base64.b64encode(g.researcher.pub.read_bytes()).decode()
    served = requests.get(
        g.url(f"/data/{C4GH}/sample.bin.c4gh"), headers={**headers, "Crypt4GH-Public-Key": key}, timeout=30
    )
    assert served.status_code == 200
    listed = g.node.cli("audit", "list", "--event", "gateway.", "--limit", "0", "--json")
    assert listed.returncode == 0, listed.stderr
    events = [record["event"] for record in json.loads(listed.stdout)]
    flat = json.dumps(events)
    # The ticket's record is its decision's, on the htsget route, naming the region asked for.
    assert any(
        e["event"] == "gateway.decision" and e["route"] == "htsget" and e["regions"] == ["chr2:1000-2000"]
        for e in events
    )
    assert any(e["event"] == "gateway.reencryption" and e["dataset"] == C4GH and e["recipient"] for e in events)
    assert g.token not in flat


def _client_env(g: Genomics, home: Path) -> dict[str, str]:
    """A user's environment whose token file holds the browser login's access token (as ``login`` saves it)."""
    CredentialStore(home / "config" / "ga4gh-broker").save(
        Login(
            broker=g.node.issuer,
            client_id=CLIENT.client_id,
            token_endpoint=g.url("/token"),
            userinfo_endpoint=None,
            access_token=g.token,
            expires_at=int(time.time()) + 600,
            scope="openid ga4gh_passport_v1",
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "XDG_"))}
    return {**env, "XDG_CONFIG_HOME": str(home / "config"), "HOME": str(home)}


def test_download_sends_the_crypt4gh_key_and_decrypts_with_the_secret_key(genomics: Genomics, tmp_path: Path) -> None:
    g = genomics
    env = _client_env(g, tmp_path / "home")
    target = f"{C4GH}/sample.bin.c4gh"

    def download(out: Path, *extra: str, passphrase: str | None = None) -> subprocess.CompletedProcess[str]:
        run_env = {**env, "C4GH_PASSPHRASE": passphrase} if passphrase else env
        return subprocess.run(
            [sys.executable, "-m", "broker", "download", "--broker", g.node.issuer, target, "-o", str(out), *extra],
            capture_output=True,
            text=True,
            timeout=120,
            env=run_env,
            check=False,
        )

    without_key = download(tmp_path / "none")
    assert without_key.returncode == 1 and "Crypt4GH-Public-Key" in without_key.stderr
    encrypted = download(tmp_path / "enc", "--crypt4gh-key", str(g.researcher.pub))
    assert encrypted.returncode == 0, encrypted.stderr
    assert "sha-256 verified" in encrypted.stdout
    assert g.c4gh.decrypt(tmp_path / "enc" / "sample.bin.c4gh", g.researcher) == (0, g.plain)
    both = download(
        tmp_path / "plain",
        "--crypt4gh-key",
        str(g.researcher.pub),
        "--crypt4gh-secret-key",
        str(g.researcher.sec),
        passphrase=g.researcher.passphrase,
    )
    assert both.returncode == 0, both.stderr
    assert (tmp_path / "plain" / "sample.bin").read_bytes() == g.plain
    assert "decrypted" in both.stdout
    assert g.token not in both.stdout + both.stderr + encrypted.stdout + encrypted.stderr
    wrong = download(
        tmp_path / "wrong",
        "--crypt4gh-key",
        str(g.researcher.pub),
        "--crypt4gh-secret-key",
        str(g.researcher.sec),
        passphrase="not the passphrase",
    )
    assert wrong.returncode == 2 and "passphrase" in wrong.stderr
    assert not (tmp_path / "wrong" / "sample.bin").exists()


def test_download_region_through_htsget_gives_the_records_samtools_and_bcftools_give(
    genomics: Genomics, tmp_path: Path
) -> None:
    g = genomics
    env = _client_env(g, tmp_path / "home")

    def download(target: str, region: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "broker", "download", "--broker", g.node.issuer, target, "--region", region]
        return subprocess.run(
            [*argv, "-o", str(tmp_path / "out")],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    reads = download(f"{HTS}/reads.bam", "chr1:100001-104000")
    assert reads.returncode == 0, reads.stderr
    got = lines(run(g.tools.samtools, "view", tmp_path / "out" / "reads.chr1_100001-104000.bam"))
    want = lines(run(g.tools.samtools, "view", g.objects / "hts" / "reads.bam", "chr1:100001-104000"))
    assert want and got == want
    calls = download(f"{HTS}/variants.vcf.gz", "chr2:20001-60000")
    assert calls.returncode == 0, calls.stderr
    out = tmp_path / "out" / "variants.chr2_20001-60000.vcf.gz"
    got = lines(run(g.tools.bcftools, "view", "--no-version", "-H", out))
    original = g.objects / "hts" / "variants.vcf.gz"
    assert got and got == lines(run(g.tools.bcftools, "view", "--no-version", "-H", "-r", "chr2:20001-60000", original))
    closed = download(f"{CLOSED}/reads.bam", "chr1")
    assert closed.returncode == 1 and not (tmp_path / "out" / "reads.chr1.bam").exists()
    assert g.token not in reads.stdout + reads.stderr + closed.stderr
