"""Crypt4GH in offload mode behind the example nginx front: the header from the broker, the body from nginx.

The gateway runs with ``mode: offload`` for the encrypted dataset and the example
``examples/nginx/gateway-server.conf`` in front (a real nginx). A researcher fetches the re-encrypted
header as one range (answered by the broker) and the rest as another (answered by nginx from the
stored file after ``X-Accel-Redirect``); ``crypt4gh decrypt`` reads the two joined. Who sent the
bytes is told by the gateway's own byte counter, which counts only what the broker streamed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from broker.gateway.settings import Crypt4GHSettings, DatasetSettings, DataStoreSettings, GatewaySettings
from tests.gateway.crypt4gh.conftest import Crypt4GH, Keys
from tests.gateway.support import EXAMPLES, Grant, Nginx, ServerThread, TableAuthorizer, build_app, render
from tests.support.parts import free_port

PASS_ENV = "TEST_GATEWAY_C4GH_OFFLOAD_PASSPHRASE"
PLAIN_SIZE = 4 * 65536 + 999


@dataclass
class Front:
    url: str
    app: Any
    plain: bytes
    keys: Keys

    def get(self, name: str, **headers: str) -> requests.Response:
        sent = {"Authorization": "Bearer tok", "Crypt4GH-Public-Key": self.keys.researcher.pub_header_value()}
        return requests.get(f"{self.url}/data/enc/{name}", headers={**sent, **headers}, timeout=30)

    def streamed(self) -> float:
        return float(self.app.extensions["gateway"].metrics.bytes_streamed.value("enc"))

    def settled(self, expected: float) -> bool:
        """Whether the broker's byte count reaches ``expected`` and stays there.

        A transfer is counted when its body ends, which may be after the client (behind nginx's
        buffers) has all the bytes; so wait for it, then make sure nothing more comes.
        """
        deadline = time.monotonic() + 10
        while self.streamed() != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        return self.streamed() == expected


@pytest.fixture(scope="module")
def front(c4gh: Crypt4GH, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Front]:
    root = tmp_path_factory.mktemp("c4gh-offload")
    plain = random.Random(99).randbytes(PLAIN_SIZE)
    (root / "enc").mkdir()
    (root / "enc" / "node-only.c4gh").write_bytes(c4gh.encrypt(plain, [keys.node]))
    (root / "enc" / "two-recipients.c4gh").write_bytes(c4gh.encrypt(plain, [keys.other, keys.node]))
    settings = GatewaySettings(
        stores={"local": DataStoreSettings(kind="directory", path=str(root), offload_location="/_gateway/local/")},
        datasets={"enc": DatasetSettings(store="local", prefix="enc", encryption="crypt4gh", mode="offload")},
        crypt4gh=Crypt4GHSettings(key_file=str(keys.node.sec), passphrase_env=PASS_ENV),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASS_ENV, keys.node.passphrase)
        app = build_app(settings, TableAuthorizer({"tok": Grant("rita@example.org", frozenset({"enc"}))}), root / "d")
    front_port = free_port()
    with ServerThread(app) as gateway:
        conf = render(
            EXAMPLES / "gateway-server.conf",
            {
                "LISTEN": f"127.0.0.1:{front_port}",
                "GATEWAY_ADDR": f"127.0.0.1:{gateway.port}",
                "LOCAL_STORE_ROOT": f"{root}/",
                "ARCHIVE_URL": "http://127.0.0.1:9/",
                "ARCHIVE_API_KEY": "unused",
                "FILES_ROOT": f"{root}/",
            },
        )
        nginx = Nginx(tmp_path_factory.mktemp("nginx-c4gh"), {"front": conf}).start()
        try:
            nginx.wait(front_port)
            yield Front(f"http://127.0.0.1:{front_port}", app, plain, keys)
        finally:
            nginx.stop()


def test_header_from_the_broker_body_from_nginx_decrypts(front: Front, c4gh: Crypt4GH, tmp_path: Path) -> None:
    start_count = front.streamed()  # every test ends with the count settled
    whole = front.get("node-only.c4gh")  # a whole file is streamed by the broker
    assert whole.status_code == 200
    served = whole.content
    front_count = start_count + len(served)
    # One packet (the file was stored for the node alone): the header is 16 bytes and that packet.
    assert served[:8] == b"crypt4gh" and int.from_bytes(served[12:16], "little") == 1
    header_end = 16 + int.from_bytes(served[16:20], "little")
    assert front.settled(front_count)
    head = front.get("node-only.c4gh", Range=f"bytes=0-{header_end - 1}")
    assert head.status_code == 206
    assert front.settled(front_count + header_end)  # the header: sent by the broker
    body = front.get("node-only.c4gh", Range=f"bytes={header_end}-")
    assert body.status_code == 206
    assert body.headers["Content-Range"] == f"bytes {header_end}-{len(served) - 1}/{len(served)}"
    assert front.settled(front_count + header_end)  # the body: not one byte from the broker, nginx sent it
    joined = head.content + body.content
    assert joined == served
    (tmp_path / "joined.c4gh").write_bytes(joined)
    assert c4gh.decrypt(tmp_path / "joined.c4gh", front.keys.researcher) == (0, front.plain)


def test_a_header_that_changed_length_is_streamed_and_still_decrypts(
    front: Front, c4gh: Crypt4GH, tmp_path: Path
) -> None:
    before = front.streamed()
    whole = front.get("two-recipients.c4gh").content
    assert front.settled(before + len(whole))
    new_header_end = 16 + int.from_bytes(whole[16:20], "little")
    before = front.streamed()
    body = front.get("two-recipients.c4gh", Range=f"bytes={new_header_end}-")
    assert body.status_code == 206
    assert front.settled(before + len(body.content))  # the trimmed header is shorter: streamed here
    head = front.get("two-recipients.c4gh", Range=f"bytes=0-{new_header_end - 1}")
    assert front.settled(before + len(body.content) + len(head.content))
    (tmp_path / "joined.c4gh").write_bytes(head.content + body.content)
    assert c4gh.decrypt(tmp_path / "joined.c4gh", front.keys.researcher) == (0, front.plain)


def test_conditional_and_missing_key_requests_never_reach_nginx(front: Front) -> None:
    before = front.streamed()
    whole = front.get("node-only.c4gh")
    start = 16 + int.from_bytes(whole.content[16:20], "little")
    assert front.settled(before := before + len(whole.content))
    conditional = front.get("node-only.c4gh", Range=f"bytes={start}-", **{"If-Range": whole.headers["ETag"]})
    assert conditional.status_code == 206
    assert front.settled(before + len(conditional.content))
    no_key = requests.get(
        f"{front.url}/data/enc/node-only.c4gh",
        headers={"Authorization": "Bearer tok", "Range": f"bytes={start}-"},
        timeout=10,
    )
    assert no_key.status_code == 400 and no_key.json()["error"] == "public_key_missing"
