"""htsget on Crypt4GH-encrypted BAM and VCF files: the region comes back as a new Crypt4GH file.

The stored files are encrypted to the node (``crypt4gh encrypt``); the VCF has tiny BGZF blocks with
lines spanning them, and its index is itself encrypted (``.tbi.c4gh``). The PyPI htsget client asks
for a region with the researcher's key in ``Crypt4GH-Public-Key``; what it writes is decrypted with
the real ``crypt4gh decrypt`` and must hold exactly the records samtools/bcftools give on the
original plaintext file.
"""

from __future__ import annotations

import base64
import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
import requests

from broker.gateway.settings import Crypt4GHSettings, DatasetSettings, DataStoreSettings, GatewaySettings
from tests.gateway.crypt4gh.conftest import WHY, Crypt4GH, KeyPair
from tests.gateway.htsget.support import Sample, Tools, lines, run
from tests.gateway.support import Grant, ServerThread, TableAuthorizer, build_app
from tests.support.parts import in_ci, require_binary

PASS_ENV = "TEST_HTSGET_C4GH_PASSPHRASE"
BASE = "/ga4gh/htsget/v1"


@dataclass
class Encrypted:
    url: str
    c4gh: Crypt4GH
    researcher: KeyPair

    @property
    def key(self) -> str:
        return base64.b64encode(self.researcher.pub.read_bytes()).decode()

    def decrypt(self, data: bytes, path: Path) -> bytes:
        path.write_bytes(data)
        code, plain = self.c4gh.decrypt(path, self.researcher)
        assert code == 0
        return plain


@pytest.fixture(scope="module")
def c4gh_cli() -> Crypt4GH:
    bindir = str(Path(sys.executable).parent)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", os.pathsep.join([os.environ.get("PATH", ""), bindir]))
        return Crypt4GH(cli=require_binary("crypt4gh", WHY), keygen=require_binary("crypt4gh-keygen", WHY))


@pytest.fixture(scope="module")
def encrypted(
    c4gh_cli: Crypt4GH, bam: Sample, vcf_small_blocks: Sample, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Encrypted]:
    root = tmp_path_factory.mktemp("hts-c4gh")
    keys = tmp_path_factory.mktemp("hts-c4gh-keys")
    node = c4gh_cli.make_keys(keys, "node", "node-pass")
    researcher = c4gh_cli.make_keys(keys, "researcher", "researcher-pass")
    folder = root / "enc"
    folder.mkdir()
    (folder / "reads.bam.c4gh").write_bytes(c4gh_cli.encrypt(bam.path.read_bytes(), [node]))
    (folder / "reads.bam.bai").write_bytes(bam.indexes["bai"].read_bytes())  # a plain index beside
    (folder / "calls.vcf.gz.c4gh").write_bytes(c4gh_cli.encrypt(vcf_small_blocks.path.read_bytes(), [node]))
    tbi = vcf_small_blocks.indexes["tbi"].read_bytes()
    (folder / "calls.vcf.gz.tbi.c4gh").write_bytes(c4gh_cli.encrypt(tbi, [node]))  # an encrypted index
    settings = GatewaySettings(
        stores={"local": DataStoreSettings(kind="directory", path=str(root))},
        datasets={"enc": DatasetSettings(store="local", prefix="enc", encryption="crypt4gh")},
        crypt4gh=Crypt4GHSettings(key_file=str(node.sec), passphrase_env=PASS_ENV),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASS_ENV, node.passphrase)
        app = build_app(settings, TableAuthorizer({"tok": Grant("rita@example.org", frozenset({"enc"}))}), root / "d")
    with ServerThread(app) as server:
        yield Encrypted(server.url, c4gh_cli, researcher)


@pytest.fixture(scope="module")
def htsget() -> ModuleType:
    try:
        return importlib.import_module("htsget")
    except ImportError:
        message = "REAL PART MISSING: the GA4GH htsget client (pip install htsget, part of the test extra)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


def test_htsget_client_gets_an_encrypted_bam_region_that_decrypts_to_exactly_the_records(
    encrypted: Encrypted, htsget: ModuleType, hts_tools: Tools, bam: Sample, tmp_path: Path
) -> None:
    out = tmp_path / "region.bam.c4gh"
    with out.open("wb") as sink:
        htsget.get(
            f"{encrypted.url}{BASE}/reads/enc/reads.bam.c4gh",
            sink,
            reference_name="chr1",
            start=100_000,
            end=104_000,
            bearer_token="tok",
            headers={"Crypt4GH-Public-Key": encrypted.key},
            max_retries=0,
            timeout=60,
        )
    assert out.read_bytes().startswith(b"crypt4gh")
    plain = tmp_path / "region.bam"
    plain.write_bytes(encrypted.decrypt(out.read_bytes(), tmp_path / "copy.c4gh"))
    want = lines(run(hts_tools.samtools, "view", bam.path, "chr1:100001-104000"))
    assert want and lines(run(hts_tools.samtools, "view", plain)) == want


def test_an_encrypted_vcf_with_lines_across_blocks_and_an_encrypted_index(
    encrypted: Encrypted, hts_tools: Tools, vcf_small_blocks: Sample, tmp_path: Path
) -> None:
    headers = {"Authorization": "Bearer tok", "Crypt4GH-Public-Key": encrypted.key}
    reply = requests.post(
        f"{encrypted.url}{BASE}/variants/enc/calls.vcf.gz.c4gh",
        json={"regions": [{"referenceName": "chr2", "start": 30_000, "end": 45_000}]},
        headers=headers,
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    [entry] = reply.json()["htsget"]["urls"]
    assert entry["headers"]["Crypt4GH-Public-Key"] == encrypted.key
    data = requests.get(entry["url"], headers=entry["headers"], timeout=60)
    assert data.status_code == 200 and int(data.headers["Content-Length"]) == len(data.content)
    plain = tmp_path / "region.vcf.gz"
    plain.write_bytes(encrypted.decrypt(data.content, tmp_path / "copy.c4gh"))
    got = lines(run(hts_tools.bcftools, "view", "--no-version", "-H", plain))
    want = lines(run(hts_tools.bcftools, "view", "--no-version", "-H", "-r", "chr2:30001-45000", vcf_small_blocks.path))
    assert want and got == want


def test_encrypted_tickets_need_the_key_and_refuse_unknown_references(encrypted: Encrypted) -> None:
    url = f"{encrypted.url}{BASE}/reads/enc/reads.bam.c4gh"
    no_key = requests.get(url, params={"referenceName": "chr1"}, headers={"Authorization": "Bearer tok"}, timeout=30)
    assert no_key.status_code == 400 and no_key.json()["htsget"]["error"] == "InvalidInput"
    assert "Crypt4GH-Public-Key" in no_key.json()["htsget"]["message"]
    unknown = requests.get(
        url,
        params={"referenceName": "chrNone"},
        headers={"Authorization": "Bearer tok", "Crypt4GH-Public-Key": encrypted.key},
        timeout=30,
    )
    assert unknown.status_code == 404 and unknown.json()["htsget"]["error"] == "NotFound"
    edited = requests.get(
        f"{encrypted.url}/data/enc/reads.bam.c4gh",
        params={"htsget_format": "BAM", "htsget_region": "5-1:chr1"},
        headers={"Authorization": "Bearer tok", "Crypt4GH-Public-Key": encrypted.key},
        timeout=30,
    )
    assert edited.status_code == 400  # the data URL's query is checked again, as any input
