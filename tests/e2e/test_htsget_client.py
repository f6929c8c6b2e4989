"""The GA4GH ``htsget`` client (PyPI) reads a file through the gateway with a bearer token.

The gateway is not an htsget ticket server, so this test runs a minimal one: a ticket whose
``urls`` are Range requests against the gateway's ``/data/<dataset>/<file>`` route. The
client (htsget 0.2.6, ``htsget/io.py``) sends its ``bearer_token`` only to the ticket server
and sends nothing but each URL's ticket ``headers`` to data URLs, so the ticket server puts
the caller's Authorization header into every URL's ``headers``, as the htsget protocol allows
(htsget 1.2, "urls": "headers"). The bytes the client writes must equal the file.
"""

from __future__ import annotations

import importlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.deployment import Deployment, Node, grant, object_path
from tests.support.parts import in_ci

DATASET = "E2E-HTS"
CLOSED = "E2E-NEVER"
PIECE = 65_536
TICKET_TYPE = "application/vnd.ga4gh.htsget.v1.2.0+json; charset=utf-8"


@dataclass
class TicketServer:
    """``GET /reads/<dataset>`` answers an htsget ticket of Range requests against the gateway."""

    gateway: Node
    sizes: dict[str, int]
    seen_authorization: list[str | None] = field(default_factory=list)

    def ticket(self, dataset: str, authorization: str | None) -> dict[str, object]:
        size = self.sizes[dataset]
        urls = []
        for start in range(0, size, PIECE):
            headers = {"Range": f"bytes={start}-{min(start + PIECE, size) - 1}"}
            if authorization is not None:
                headers["Authorization"] = authorization
            urls.append({"url": self.gateway.url(object_path(dataset)), "headers": headers})
        return {"htsget": {"format": "BAM", "urls": urls}}

    def __enter__(self) -> TicketServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                dataset = self.path.split("?", 1)[0].removeprefix("/reads/")
                authorization = self.headers.get("Authorization")
                outer.seen_authorization.append(authorization)
                if dataset not in outer.sizes:
                    self.send_error(404)
                    return
                body = json.dumps(outer.ticket(dataset, authorization)).encode()
                self.send_response(200)
                self.send_header("Content-Type", TICKET_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                """Quiet: the tokens are in the headers, and nothing here needs a log."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def url(self, dataset: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/reads/{dataset}"


@pytest.fixture(scope="module")
def htsget() -> ModuleType:
    """The htsget client package (in the test extra); missing: skip loudly, or fail under CI."""
    try:
        return importlib.import_module("htsget")
    except ImportError:
        message = "REAL PART MISSING: the GA4GH htsget client (pip install htsget, part of the test extra)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def tickets(deployment: Deployment) -> Iterator[TicketServer]:
    sizes = {name: len(data) for name, data in deployment.files.items()}
    with TicketServer(deployment.nodes[1], sizes) as server:
        yield server


def test_htsget_client_reads_the_file_through_the_gateway_with_a_bearer_token(
    htsget: ModuleType,
    deployment: Deployment,
    tickets: TicketServer,
    member_token: str,
    researcher_token: str,
    tmp_path: Path,
) -> None:
    grant(deployment.nodes[0], member_token, deployment.ids["researcher"], DATASET)
    out = tmp_path / "sample.bam"
    with out.open("wb") as sink:
        htsget.get(tickets.url(DATASET), sink, bearer_token=researcher_token, max_retries=0, retry_wait=0, timeout=10)
    data = deployment.files[DATASET]
    assert len(data) > 3 * PIECE  # several Range requests, the last one short
    assert out.read_bytes() == data
    assert tickets.seen_authorization == [f"Bearer {researcher_token}"]


def test_htsget_client_without_a_token_is_refused_by_the_gateway(
    htsget: ModuleType, deployment: Deployment, tickets: TicketServer, tmp_path: Path
) -> None:
    out = tmp_path / "anonymous.bam"
    with out.open("wb") as sink, pytest.raises(htsget.exceptions.ClientError, match="401"):
        htsget.get(tickets.url(DATASET), sink, max_retries=0, retry_wait=0, timeout=10)
    assert out.read_bytes() == b""


def test_htsget_client_with_a_token_but_no_grant_gets_no_bytes(
    htsget: ModuleType, deployment: Deployment, tickets: TicketServer, researcher_token: str, tmp_path: Path
) -> None:
    out = tmp_path / "closed.bam"
    # The client treats 403 as retryable; with no retries left it raises it.
    with out.open("wb") as sink, pytest.raises(htsget.exceptions.RetryableIOError, match="403"):
        htsget.get(tickets.url(CLOSED), sink, bearer_token=researcher_token, max_retries=0, retry_wait=0, timeout=10)
    assert out.read_bytes() == b""
