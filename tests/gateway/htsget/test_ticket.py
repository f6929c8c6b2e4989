"""The ticket JSON: shape per htsget 1.3, data URIs that decode to the inline pieces, byte ranges
split under a size cap, and the GA4GH htsget reference client (``htsget`` on PyPI) reading a
real BAM and VCF through tickets served on a loopback port."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import htsget  # type: ignore[import-untyped]  # the GA4GH reference client ships no type hints
import pytest

from broker.gateway.htsget import (
    ByteRange,
    FileReader,
    HtsgetError,
    Inline,
    Region,
    build_ticket,
    data_uri,
    open_indexed,
    parse_format,
    plan,
)
from tests.gateway.htsget.support import Sample, Tools, answer, assemble, lines, region_text, run
from tests.support.parts import free_port

STORE = "https://store.example/objects/sample.bam"


def ranged(start: int, end: int) -> tuple[str, Mapping[str, str] | None]:
    return STORE, {"Range": f"bytes={start}-{end}"}


def fetch(ticket: dict[str, object], data: bytes) -> bytes:
    """What a client does with a ticket whose URLs point into ``data``."""
    out = bytearray()
    body = ticket["htsget"]
    assert isinstance(body, dict)
    for entry in body["urls"]:
        url = entry["url"]
        if url.startswith("data:"):
            out += base64.b64decode(url.split(",", 1)[1], validate=True)
        else:
            first, last = entry["headers"]["Range"].removeprefix("bytes=").split("-")
            out += data[int(first) : int(last) + 1]
    return bytes(out)


def test_ticket_has_the_htsget_shape_and_decodes_to_the_answer(bam: Sample) -> None:
    assembled, pieces = answer(bam, "bai", regions=[Region("chr1", 99_000, 112_000)])
    ticket = build_ticket(parse_format("BAM", "reads"), pieces, ranged)
    assert set(ticket) == {"htsget"} and set(ticket["htsget"]) == {"format", "urls"}
    assert ticket["htsget"]["format"] == "BAM"
    urls = ticket["htsget"]["urls"]
    assert len(urls) == len(pieces)
    for entry, piece in zip(urls, pieces, strict=True):
        assert entry["class"] == piece.class_
        if isinstance(piece, Inline):
            assert entry["url"].startswith("data:application/octet-stream;base64,") and "headers" not in entry
        else:
            assert entry["url"] == STORE and entry["headers"] == {"Range": f"bytes={piece.start}-{piece.end}"}
    assert fetch(json.loads(json.dumps(ticket)), bam.path.read_bytes()) == assembled


def test_large_ranges_are_split_and_still_concatenate(bam: Sample) -> None:
    assembled, pieces = answer(bam, "bai")
    ticket = build_ticket(parse_format(None, "reads"), pieces, ranged, max_range_bytes=10_000)
    entries = [e for e in ticket["htsget"]["urls"] if not e["url"].startswith("data:")]
    assert len(entries) > 10
    assert all(
        int(e["headers"]["Range"].split("-")[1]) - int(e["headers"]["Range"][6:].split("-")[0]) < 10_000
        for e in entries
    )
    assert fetch(ticket, bam.path.read_bytes()) == assembled


def test_url_without_headers_has_no_headers_member() -> None:
    ticket = build_ticket(
        parse_format(None, "variants"),
        [ByteRange(0, 9, "header"), Inline(b"xyz", "body")],
        lambda s, e: ("https://u", None),
    )
    assert ticket == {
        "htsget": {
            "format": "VCF",
            "urls": [{"url": "https://u", "class": "header"}, {"url": data_uri(b"xyz"), "class": "body"}],
        }
    }
    with pytest.raises(ValueError):
        build_ticket(parse_format(None, "reads"), [ByteRange(5, 4, "body")], ranged)


def test_assemble_refuses_ranges_outside_the_file() -> None:
    with pytest.raises(AssertionError):
        assemble(b"abc", [ByteRange(0, 3, "body")])


# ----- the reference client against a loopback server -------------------------------------


class _Server(ThreadingHTTPServer):
    samples: dict[str, tuple[Sample, str, str]]
    base: str


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: tests read results, not access logs."""

    def _send(self, status: int, body: bytes, content_type: str, extra: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        kind, _, name = parts.path.strip("/").partition("/")
        if kind == "data":
            sample = self.server.samples[name][0]
            first, last = self.headers["Range"].removeprefix("bytes=").split("-")
            data = sample.path.read_bytes()[int(first) : int(last) + 1]
            self._send(206, data, "application/octet-stream", {"Content-Range": f"bytes {first}-{last}/*"})
            return
        sample, index, endpoint = self.server.samples[name]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        try:
            fmt = parse_format(query.get("format"), endpoint)  # type: ignore[arg-type]
            regions = None
            if "referenceName" in query:
                start, end = query.get("start"), query.get("end")
                regions = [Region(query["referenceName"], int(start) if start else None, int(end) if end else None)]
            with FileReader(sample.path) as reader:
                opened = open_indexed(reader, sample.indexes[index].read_bytes(), fmt)
                pieces = plan(reader, opened, regions=regions)
        except HtsgetError as err:
            self._send(err.status, json.dumps(err.body()).encode(), "application/json")
            return
        ticket = build_ticket(
            fmt, pieces, lambda s, e: (f"{self.server.base}/data/{name}", {"Range": f"bytes={s}-{e}"})
        )
        self._send(200, json.dumps(ticket).encode(), "application/vnd.ga4gh.htsget.v1.3.0+json")


@pytest.fixture
def loopback(bam: Sample, vcf_small_blocks: Sample) -> Iterator[str]:
    server = _Server(("127.0.0.1", free_port()), _Handler)
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    server.samples = {"reads": (bam, "csi", "reads"), "variants": (vcf_small_blocks, "tbi", "variants")}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.base
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_reference_client_reads_a_bam_region(hts_tools: Tools, bam: Sample, loopback: str, tmp_path: Path) -> None:
    out = tmp_path / "client.bam"
    with out.open("wb") as handle:
        htsget.get(f"{loopback}/ticket/reads", handle, reference_name="chr1", start=104_000, end=105_000, retry_wait=0)
    region = region_text(Region("chr1", 104_000, 105_000))
    assert region is not None
    expected = lines(run(hts_tools.samtools, "view", bam.path, region))
    assert expected and lines(run(hts_tools.samtools, "view", out)) == expected


def test_reference_client_reads_a_vcf_with_lines_spanning_blocks(
    hts_tools: Tools, vcf_small_blocks: Sample, loopback: str, tmp_path: Path
) -> None:
    out = tmp_path / "client.vcf.gz"
    with out.open("wb") as handle:
        htsget.get(f"{loopback}/ticket/variants", handle, reference_name="chr2", start=50_000, end=90_000, retry_wait=0)
    expected = lines(
        run(hts_tools.bcftools, "view", "--no-version", "-H", "-r", "chr2:50001-90000", vcf_small_blocks.path)
    )
    assert expected and lines(run(hts_tools.bcftools, "view", "--no-version", "-H", out)) == expected


def test_reference_client_sees_not_found(loopback: str, tmp_path: Path) -> None:
    with (tmp_path / "x").open("wb") as handle, pytest.raises(htsget.exceptions.ClientError) as err:
        htsget.get(f"{loopback}/ticket/reads", handle, reference_name="chrNope", max_retries=0, retry_wait=0)
    assert "NotFound" in str(err.value) or "404" in str(err.value)
