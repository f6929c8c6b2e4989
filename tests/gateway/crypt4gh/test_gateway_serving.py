"""A ``encryption: crypt4gh`` dataset on the gateway, judged by the real ``crypt4gh decrypt``.

The stored file is encrypted to the node and to another node; the gateway serves it re-encrypted
to the researcher's key (from ``Crypt4GH-Public-Key`` and its two other spellings), whole and by
Range, and the researcher's own ``crypt4gh decrypt`` recovers the plaintext byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from broker.gateway.encrypted import KEY_HEADERS
from broker.gateway.service import AuditEvent
from broker.gateway.settings import (
    Crypt4GHSettings,
    DatasetSettings,
    DataStoreSettings,
    GatewaySettings,
    check_gateway,
)
from broker.settings_model import SettingsProblem
from tests.gateway.crypt4gh.conftest import Crypt4GH, Keys
from tests.gateway.support import Grant, ServerThread, TableAuthorizer, build_app

PASS_ENV = "TEST_GATEWAY_C4GH_PASSPHRASE"
PLAIN_SIZE = 3 * 65536 + 12345  # several segments, the last one short


@dataclass
class Encrypted:
    url: str
    plain: bytes
    stored: bytes
    audit: list[AuditEvent]
    app: Any
    keys: Keys

    def get(self, key: str | None = None, header: str = KEY_HEADERS[0], **extra: str) -> requests.Response:
        headers = {"Authorization": "Bearer tok", **extra}
        if key is not None:
            headers[header] = key
        return requests.get(f"{self.url}/data/enc/cohort/sample.bam.c4gh", headers=headers, timeout=30)


def gateway_settings(root: Path, key_file: Path, **dataset: Any) -> GatewaySettings:
    return GatewaySettings(
        stores={"local": DataStoreSettings(kind="directory", path=str(root))},
        datasets={"enc": DatasetSettings(store="local", prefix="enc", encryption="crypt4gh", **dataset)},
        crypt4gh=Crypt4GHSettings(key_file=str(key_file), passphrase_env=PASS_ENV),
    )


@pytest.fixture(scope="module")
def enc(c4gh: Crypt4GH, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Encrypted]:
    root = tmp_path_factory.mktemp("c4gh-store")
    plain = random.Random(16).randbytes(PLAIN_SIZE)
    stored = c4gh.encrypt(plain, [keys.other, keys.node])
    (root / "enc" / "cohort").mkdir(parents=True)
    (root / "enc" / "cohort" / "sample.bam.c4gh").write_bytes(stored)
    settings = gateway_settings(root, keys.node.sec)
    check_gateway(settings)
    audit: list[AuditEvent] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(PASS_ENV, keys.node.passphrase)
        app = build_app(
            settings, TableAuthorizer({"tok": Grant("rita@example.org", frozenset({"enc"}))}), root / "d", audit.append
        )
    with ServerThread(app) as server:
        yield Encrypted(server.url, plain, stored, audit, app, keys)


def decrypt(c4gh: Crypt4GH, keys: Keys, data: bytes, tmp: Path, name: str = "served.c4gh") -> tuple[int, bytes]:
    path = tmp / name
    path.write_bytes(data)
    return c4gh.decrypt(path, keys.researcher)


def test_whole_stream_decrypts_to_the_plaintext_with_the_researchers_key(
    enc: Encrypted, c4gh: Crypt4GH, tmp_path: Path
) -> None:
    reply = enc.get(enc.keys.researcher.pub_header_value())
    assert reply.status_code == 200, reply.text
    served = reply.content
    assert served.startswith(b"crypt4gh") and served != enc.stored
    assert int(reply.headers["Content-Length"]) == len(served)
    assert decrypt(c4gh, enc.keys, served, tmp_path) == (0, enc.plain)
    # The body is the stored body, unchanged: only the header differs.
    assert served.endswith(enc.stored[-PLAIN_SIZE:])
    # The third key (never a recipient) cannot read it, nor can the node's own key (its packet was dropped).
    (tmp_path / "again.c4gh").write_bytes(served)
    assert c4gh.decrypt(tmp_path / "again.c4gh", enc.keys.third)[0] != 0
    assert c4gh.decrypt(tmp_path / "again.c4gh", enc.keys.node)[0] != 0


def test_ranges_from_separate_requests_join_into_one_decryptable_stream(
    enc: Encrypted, c4gh: Crypt4GH, tmp_path: Path
) -> None:
    key = enc.keys.researcher.pub_header_value()
    whole = enc.get(key).content
    head = enc.get(key, Range="bytes=0-99")
    middle = enc.get(key, Range=f"bytes=100-{len(whole) // 2}")
    tail = enc.get(key, Range=f"bytes={len(whole) // 2 + 1}-")
    assert (head.status_code, middle.status_code, tail.status_code) == (206, 206, 206)
    assert tail.headers["Content-Range"] == f"bytes {len(whole) // 2 + 1}-{len(whole) - 1}/{len(whole)}"
    joined = head.content + middle.content + tail.content
    assert joined == whole  # the re-encrypted header is the same bytes on every request
    assert decrypt(c4gh, enc.keys, joined, tmp_path) == (0, enc.plain)
    past = enc.get(key, Range=f"bytes={len(whole)}-")
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(whole)}"
    etag = head.headers["ETag"]
    assert enc.get(key, **{"If-None-Match": etag}).status_code == 304


def test_every_key_header_spelling_is_accepted_and_they_must_agree(enc: Encrypted) -> None:
    value = enc.keys.researcher.pub_header_value()
    raw = base64.b64encode(enc.keys.researcher.recipient().public).decode()
    first = enc.get(value).content
    for header in KEY_HEADERS:
        assert enc.get(value, header=header).content == first
    assert enc.get(raw).content == first  # the raw 32-byte key names the same recipient
    conflict = enc.get(value, **{KEY_HEADERS[1]: enc.keys.third.pub_header_value()})
    assert conflict.status_code == 400 and conflict.json()["error"] == "public_key_conflict"


def test_a_request_without_a_key_gets_a_400_saying_how_to_send_one(enc: Encrypted) -> None:
    reply = enc.get(None)
    assert reply.status_code == 400
    body = reply.json()
    assert body["error"] == "public_key_missing"
    assert "Crypt4GH-Public-Key" in body["message"] and "base64" in body["message"]
    bad = enc.get("not base64!")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_public_key"
    # The decision still comes first: without access, no word about keys.
    anonymous = requests.get(f"{enc.url}/data/enc/cohort/sample.bam.c4gh", timeout=10)
    assert anonymous.status_code == 401


def test_head_drs_metrics_and_audit_describe_the_served_stream(enc: Encrypted) -> None:
    key = enc.keys.researcher.pub_header_value()
    whole = enc.get(key).content
    head = requests.head(
        f"{enc.url}/data/enc/cohort/sample.bam.c4gh",
        headers={"Authorization": "Bearer tok", KEY_HEADERS[0]: key},
        timeout=10,
    )
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(whole)
    drs_id = base64.urlsafe_b64encode(b"enc/cohort/sample.bam.c4gh").rstrip(b"=").decode()
    drs = requests.get(
        f"{enc.url}/ga4gh/drs/v1/objects/{drs_id}",
        headers={"Authorization": "Bearer tok", KEY_HEADERS[0]: key},
        timeout=30,
    )
    assert drs.status_code == 200, drs.text
    assert drs.json()["size"] == len(whole)
    assert drs.json()["checksums"] == [{"type": "sha-256", "checksum": hashlib.sha256(whole).hexdigest()}]
    assert (
        requests.get(
            f"{enc.url}/ga4gh/drs/v1/objects/{drs_id}", headers={"Authorization": "Bearer tok"}, timeout=10
        ).json()["error"]
        == "public_key_missing"
    )
    gateway = enc.app.extensions["gateway"]
    before = gateway.metrics.reencryptions.value("enc")
    enc.get(key)
    assert gateway.metrics.reencryptions.value("enc") == before + 1
    event = [e for e in enc.audit if e.kind == "reencryption"][-1]
    assert (event.subject, event.dataset, event.recipient) == (
        "rita@example.org",
        "enc",
        enc.keys.researcher.recipient().fingerprint,
    )


def test_htsget_on_an_encrypted_file_asks_for_the_key_then_for_an_index(enc: Encrypted) -> None:
    url = f"{enc.url}/ga4gh/htsget/v1/reads/enc/cohort/sample.bam.c4gh"
    no_key = requests.get(url, headers={"Authorization": "Bearer tok"}, timeout=10)
    assert no_key.status_code == 400 and no_key.json()["htsget"]["error"] == "InvalidInput"
    keyed = requests.get(
        url, headers={"Authorization": "Bearer tok", KEY_HEADERS[0]: enc.keys.researcher.pub_header_value()}, timeout=10
    )
    assert keyed.status_code == 404 and keyed.json()["htsget"]["error"] == "NotFound"  # no .bai beside it


def test_settings_refuse_an_encrypted_dataset_without_a_key_or_an_offload_location(tmp_path: Path) -> None:
    with pytest.raises(SettingsProblem, match="offload"):
        check_gateway(gateway_settings(tmp_path, tmp_path / "node.sec", mode="offload"))
    bare = GatewaySettings(
        stores={"local": DataStoreSettings(kind="directory", path=str(tmp_path))},
        datasets={"enc": DatasetSettings(store="local", encryption="crypt4gh")},
    )
    with pytest.raises(SettingsProblem, match="key_file"):
        check_gateway(bare)
