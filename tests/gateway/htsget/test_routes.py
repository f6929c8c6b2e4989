"""The htsget web adapter on a real HTTP server: tickets whose URLs go back through the data route.

The bytes a client assembles from a ticket (data: URIs decoded, byte ranges fetched from the
gateway with the ticket's headers) are read by samtools/bcftools and must hold exactly the
records ``samtools view FILE REGION`` / ``bcftools view -r`` give on the original.
"""

from __future__ import annotations

import base64
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from broker.gateway.service import AuditEvent
from broker.gateway.settings import DatasetSettings, DataStoreSettings, GatewaySettings
from tests.gateway.htsget.support import Sample, Tools, lines, run
from tests.gateway.support import Grant, ServerThread, TableAuthorizer, build_app

BASE = "/ga4gh/htsget/v1"
TOKENS = {"tok-hts": Grant("alice@example.org", frozenset({"hts"})), "tok-none": Grant("bob@example.org", frozenset())}


@dataclass
class HtsStack:
    url: str
    root: Path
    audit: list[AuditEvent]
    authorizer: TableAuthorizer
    app: Any

    def ticket(self, path: str, bearer: str | None = "tok-hts", **params: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return requests.get(f"{self.url}{BASE}/{path}", params=params, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def hts(bam: Sample, vcf: Sample, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HtsStack]:
    root = tmp_path_factory.mktemp("hts-store")
    folder = root / "hts" / "dir"
    folder.mkdir(parents=True)
    shutil.copy(bam.path, folder / "reads.bam")
    shutil.copy(bam.indexes["bai"], folder / "reads.bam.bai")
    shutil.copy(vcf.path, folder / "calls.vcf.gz")
    shutil.copy(vcf.indexes["csi"], folder / "calls.vcf.gz.csi")  # no .tbi: the CSI is found next
    shutil.copy(bam.path, folder / "unindexed.bam")
    settings = GatewaySettings(
        stores={"local": DataStoreSettings(kind="directory", path=str(root))},
        datasets={"hts": DatasetSettings(store="local", prefix="hts")},
    )
    audit: list[AuditEvent] = []
    authorizer = TableAuthorizer(dict(TOKENS))
    app = build_app(settings, authorizer, data_dir=root / "data", audit=audit.append)
    with ServerThread(app) as server:
        yield HtsStack(server.url, root, audit, authorizer, app)


def assemble(ticket: dict[str, Any]) -> bytes:
    """What an htsget client does: decode data: URIs, fetch the others with their headers, concatenate."""
    out = bytearray()
    for entry in ticket["htsget"]["urls"]:
        url = entry["url"]
        if url.startswith("data:"):
            out += base64.b64decode(url.partition(",")[2])
            continue
        reply = requests.get(url, headers=entry.get("headers", {}), timeout=30)
        assert reply.status_code == 206, reply.text
        out += reply.content
    return bytes(out)


def records_bam(t: Tools, data: bytes, tmp: Path) -> list[str]:
    path = tmp / "answer.bam"
    path.write_bytes(data)
    return lines(run(t.samtools, "view", path))


def records_vcf(t: Tools, data: bytes, tmp: Path) -> list[str]:
    path = tmp / "answer.vcf.gz"
    path.write_bytes(data)
    return lines(run(t.bcftools, "view", "--no-version", "-H", path))


@pytest.mark.parametrize(
    ("region", "params"),
    [
        ("chr1:100001-110000", {"referenceName": "chr1", "start": 100000, "end": 110000}),  # dense, many blocks
        ("chr2", {"referenceName": "chr2"}),  # a whole chromosome
        ("chrEmpty", {"referenceName": "chrEmpty"}),  # declared, no records
        ("chr3:1-2", {"referenceName": "chr3", "start": 0, "end": 2}),
    ],
)
def test_reads_tickets_give_exactly_the_records_samtools_gives(
    hts: HtsStack, hts_tools: Tools, bam: Sample, tmp_path: Path, region: str, params: dict[str, Any]
) -> None:
    reply = hts.ticket("reads/hts/dir/reads.bam", **params)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("application/vnd.ga4gh.htsget.v1.3.0+json")
    ticket = reply.json()
    assert ticket["htsget"]["format"] == "BAM"
    for entry in ticket["htsget"]["urls"]:
        if not entry["url"].startswith("data:"):
            assert entry["url"].startswith(f"{hts.url}/data/hts/dir/reads.bam")
            assert entry["headers"]["Authorization"] == "Bearer tok-hts"
            assert str(hts.root) not in entry["url"]  # never a storage location
    got = records_bam(hts_tools, assemble(ticket), tmp_path)
    assert got == lines(run(hts_tools.samtools, "view", bam.path, region))


def test_variants_get_and_post_give_exactly_what_bcftools_gives(
    hts: HtsStack, hts_tools: Tools, vcf: Sample, tmp_path: Path
) -> None:
    reply = hts.ticket("variants/hts/dir/calls.vcf.gz", format="VCF", referenceName="chr1", start=5000, end=90000)
    assert reply.status_code == 200, reply.text
    want = lines(run(hts_tools.bcftools, "view", "--no-version", "-H", "-r", "chr1:5001-90000", vcf.path))
    assert want and records_vcf(hts_tools, assemble(reply.json()), tmp_path) == want

    body = {
        "format": "VCF",
        "regions": [
            {"referenceName": "chr2", "start": 10000, "end": 20000},
            {"referenceName": "chr1", "start": 150000, "end": 160000},
            {"referenceName": "chr2", "start": 15000, "end": 30000},  # overlaps the first: merged, each once
        ],
    }
    posted = requests.post(
        f"{hts.url}{BASE}/variants/hts/dir/calls.vcf.gz",
        json=body,
        headers={"Authorization": "Bearer tok-hts"},
        timeout=30,
    )
    assert posted.status_code == 200, posted.text
    want = lines(
        run(hts_tools.bcftools, "view", "--no-version", "-H", "-r", "chr1:150001-160000,chr2:10001-30000", vcf.path)
    )
    assert want and records_vcf(hts_tools, assemble(posted.json()), tmp_path) == want


def test_class_header_gives_the_header_and_no_records(hts: HtsStack, hts_tools: Tools, tmp_path: Path) -> None:
    reply = hts.ticket("reads/hts/dir/reads.bam", **{"class": "header"})
    assert reply.status_code == 200, reply.text
    assert {e["class"] for e in reply.json()["htsget"]["urls"]} == {"header"}
    data = assemble(reply.json())
    assert records_bam(hts_tools, data, tmp_path) == []
    (tmp_path / "h.bam").write_bytes(data)
    assert "@SQ\tSN:chr1\tLN:300000" in run(hts_tools.samtools, "view", "-H", tmp_path / "h.bam").decode()


def test_the_drs_id_of_an_object_names_it_too(hts: HtsStack) -> None:
    drs_id = base64.urlsafe_b64encode(b"hts/dir/reads.bam").rstrip(b"=").decode()
    by_id = hts.ticket(f"reads/{drs_id}", referenceName="chr3")
    by_path = hts.ticket("reads/hts/dir/reads.bam", referenceName="chr3")
    assert by_id.status_code == by_path.status_code == 200
    assert by_id.json() == by_path.json()


def test_service_info_names_htsget_1_3_for_each_endpoint(hts: HtsStack) -> None:
    for endpoint, fmt in (("reads", "BAM"), ("variants", "VCF")):
        info = requests.get(f"{hts.url}{BASE}/{endpoint}/service-info", timeout=10)
        assert info.status_code == 200
        body = info.json()
        assert body["type"] == {"group": "org.ga4gh", "artifact": "htsget", "version": "1.3.0"}
        assert body["htsget"]["datatype"] == endpoint and body["htsget"]["formats"] == [fmt]


def _error(reply: requests.Response) -> str:
    body = reply.json()
    assert set(body) == {"htsget"} and set(body["htsget"]) == {"error", "message"}, body
    assert body["htsget"]["message"]
    return str(body["htsget"]["error"])


def test_refusals_use_the_htsget_error_names_and_statuses(hts: HtsStack) -> None:
    path = "reads/hts/dir/reads.bam"
    anonymous = hts.ticket(path, bearer=None)
    assert (anonymous.status_code, _error(anonymous)) == (401, "InvalidAuthentication")
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    bad = hts.ticket(path, bearer="forged")
    assert (bad.status_code, _error(bad)) == (401, "InvalidAuthentication")
    denied = hts.ticket(path, bearer="tok-none")
    assert (denied.status_code, _error(denied)) == (403, "PermissionDenied")
    # Existence is only told after access: the same 403 for a missing object and a missing reference.
    assert hts.ticket("reads/hts/dir/nothing.bam", bearer="tok-none").status_code == 403
    assert hts.ticket(path, bearer="tok-none", referenceName="chrNone").status_code == 403
    for reply in (
        hts.ticket("reads/hts/dir/nothing.bam"),
        hts.ticket(path, referenceName="chrNone"),
        hts.ticket("reads/hts/dir/unindexed.bam"),
    ):
        assert (reply.status_code, _error(reply)) == (404, "NotFound")
    reversed_range = hts.ticket(path, referenceName="chr1", start=500, end=100)
    assert (reversed_range.status_code, _error(reversed_range)) == (400, "InvalidRange")
    for params, name in (
        ({"format": "CRAM"}, "UnsupportedFormat"),
        ({"class": "body"}, "InvalidInput"),
        ({"start": 5}, "InvalidInput"),
        ({"referenceName": "chr1", "start": "-1"}, "InvalidInput"),
        ({"referenceName": "chr1", "end": str(1 << 33)}, "InvalidInput"),
        ({"referenceName": "*", "start": 1}, "InvalidInput"),
        ({"tags": "NM,MD", "notags": "MD"}, "InvalidInput"),
        ({"class": "header", "referenceName": "chr1"}, "InvalidInput"),
    ):
        reply = hts.ticket(path, **params)
        assert (reply.status_code, _error(reply)) == (400, name), params
    assert hts.ticket("variants/hts/dir/calls.vcf.gz", format="BAM").status_code == 400
    signed = hts.ticket(path, bearer=None, expires="1", signature="x")  # no bearer for the ticket to pass on
    assert (signed.status_code, _error(signed)) == (400, "InvalidInput")
    posted = requests.post(
        f"{hts.url}{BASE}/{path}",
        json={"regions": [{"referenceName": "chr1", "start": 10, "end": 10}]},
        headers={"Authorization": "Bearer tok-hts"},
        timeout=10,
    )
    assert (posted.status_code, _error(posted)) == (400, "InvalidRange")  # POST: start must be below end
    for body in (b"[1]", b"{", b'{"regions": "chr1"}', b'{"regions": []}'):
        reply = requests.post(
            f"{hts.url}{BASE}/{path}",
            data=body,
            headers={"Authorization": "Bearer tok-hts", "Content-Type": "application/json"},
            timeout=10,
        )
        assert (reply.status_code, _error(reply)) == (400, "InvalidInput"), body


def test_tickets_are_counted_and_audited_with_the_region(hts: HtsStack) -> None:
    gateway = hts.app.extensions["gateway"]
    before = gateway.metrics.htsget_tickets.value("reads", "BAM", "all")
    reply = hts.ticket("reads/hts/dir/reads.bam", referenceName="chr2", start=10, end=5000)
    assert reply.status_code == 200
    assert gateway.metrics.htsget_tickets.value("reads", "BAM", "all") == before + 1
    # One audit record per ticket: its decision, on the htsget route, naming the regions asked for.
    issued = [e for e in hts.audit if e.kind == "decision" and e.route == "htsget"][-1]
    assert (issued.subject, issued.dataset, issued.object_path) == ("alice@example.org", "hts", "dir/reads.bam")
    assert (issued.outcome, issued.regions) == ("allow", ("chr2:10-5000",))
    posted = requests.post(
        f"{hts.url}{BASE}/variants/hts/dir/calls.vcf.gz",
        json={"regions": [{"referenceName": "chr1", "start": 5, "end": 50}, {"referenceName": "chr3"}]},
        headers={"Authorization": "Bearer tok-none"},
        timeout=10,
    )
    assert posted.status_code == 403
    refused = [e for e in hts.audit if e.kind == "decision" and e.route == "htsget"][-1]
    assert (refused.subject, refused.outcome, refused.regions) == ("bob@example.org", "deny", ("chr1:5-50", "chr3"))
    text = requests.get(f"{hts.url}/metrics", timeout=10).text
    assert 'gateway_htsget_tickets_total{endpoint="reads",format="BAM",class="all"}' in text
