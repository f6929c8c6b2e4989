"""DRS 1.2 over real HTTP: service-info, objects (GET with Bearer, POST with passports),
access URLs signed for one object and a few minutes (THREAT-MODEL PX-17, PX-18)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from broker.gateway.drs import decode_object_id, encode_object_id
from broker.gateway.paths import ObjectRef
from broker.gateway.service import Refusal
from tests.gateway.conftest import AUTH, Stack
from tests.gateway.support import ServerThread, TableAuthorizer, build_app
from tests.support.settings import replace

DRS = "/ga4gh/drs/v1"


def oid(dataset: str, path: str) -> str:
    return encode_object_id(ObjectRef(dataset, path))


def test_service_info_names_drs_1_2(stack: Stack) -> None:
    info = requests.get(stack.url + DRS + "/service-info", timeout=5).json()
    assert info["type"] == {"group": "org.ga4gh", "artifact": "drs", "version": "1.2.0"}
    assert info["id"] and info["organization"]["name"] and info["version"]


def test_get_object_with_bearer_gives_size_checksum_and_access_method(stack: Stack) -> None:
    object_id = oid("ds1", "dir/nested.bin")
    r = requests.get(stack.url + f"{DRS}/objects/{object_id}", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == object_id and body["size"] == len(stack.files.nested)
    assert body["checksums"] == [{"checksum": hashlib.sha256(stack.files.nested).hexdigest(), "type": "sha-256"}]
    data_url = f"{stack.url}/data/ds1/dir/nested.bin"
    assert body["access_methods"] == [{"type": "https", "access_id": "https", "access_url": {"url": data_url}}]
    # the access_url is the streaming route itself: the same bearer reads it
    assert requests.get(data_url, headers=AUTH, timeout=10).content == stack.files.nested
    assert body["self_uri"] == f"drs://127.0.0.1:{stack.gateway.port}/{object_id}"
    assert body["name"] == "nested.bin" and body["created_time"].endswith("Z")


def test_post_object_with_passports_in_the_body(stack: Stack) -> None:
    object_id = oid("ds1", "small.bin")
    stack.authorizer.calls.clear()
    r = requests.post(stack.url + f"{DRS}/objects/{object_id}", json={"passports": ["tok-none", "tok-ds1"]}, timeout=10)
    assert r.status_code == 200 and r.json()["size"] == len(stack.files.small)
    assert stack.authorizer.calls[-1] == (None, "ds1", "small.bin", ("tok-none", "tok-ds1"))


@pytest.mark.parametrize(
    "body",
    [
        {"passports": "tok-ds1"},
        {"passports": [1]},
        {"passports": [""]},
        {"passports": ["x"] * 11},
        [],
        {"passports": [], "expand": "yes"},
    ],
)
def test_post_object_with_a_bad_body_is_400(stack: Stack, body: object) -> None:
    r = requests.post(stack.url + f"{DRS}/objects/{oid('ds1', 'small.bin')}", json=body, timeout=5)
    assert r.status_code == 400 and r.json()["status_code"] == 400 and r.json()["msg"]


def test_checksum_is_computed_once_per_file_version(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "ds1").mkdir()
    (tmp_path / "ds1" / "f.bin").write_bytes(b"version one")
    settings = replace(
        stack.settings,
        stores={"local": replace(stack.settings.stores["local"], path=str(tmp_path))},
        datasets={"ds1": stack.settings.datasets["ds1"]},
    )
    app = build_app(settings, stack.authorizer, tmp_path / "gw")
    gateway = app.extensions["gateway"]
    url = f"{DRS}/objects/{oid('ds1', 'f.bin')}"
    with ServerThread(app) as server:
        first = requests.get(server.url + url, headers=AUTH, timeout=5).json()
        again = requests.get(server.url + url, headers=AUTH, timeout=5).json()
        assert gateway.checksums.computed == 1 and first["checksums"] == again["checksums"]
        (tmp_path / "ds1" / "f.bin").write_bytes(b"version two, longer")
        changed = requests.get(server.url + url, headers=AUTH, timeout=5).json()
    assert gateway.checksums.computed == 2
    assert changed["checksums"][0]["checksum"] == hashlib.sha256(b"version two, longer").hexdigest()
    # the cache folder is shared: a fresh process reuses the digest without hashing
    app2 = build_app(settings, stack.authorizer, tmp_path / "gw")
    with ServerThread(app2) as server:
        requests.get(server.url + url, headers=AUTH, timeout=5)
    assert app2.extensions["gateway"].checksums.computed == 0


def test_http_store_objects_have_checksums_too(stack: Stack) -> None:
    r = requests.get(stack.url + f"{DRS}/objects/{oid('web1', 'small.bin')}", headers=AUTH, timeout=10)
    assert r.status_code == 200
    assert r.json()["checksums"][0]["checksum"] == hashlib.sha256(stack.files.small).hexdigest()


def test_px17_drs_refusals_come_before_existence(stack: Stack) -> None:
    for path in ("small.bin", "missing.bin"):
        url = stack.url + f"{DRS}/objects/{oid('ds1', path)}"
        assert requests.get(url, timeout=5).status_code == 401
        assert requests.get(url, headers={"Authorization": "Bearer tok-none"}, timeout=5).status_code == 403
    missing = requests.get(stack.url + f"{DRS}/objects/{oid('ds1', 'missing.bin')}", headers=AUTH, timeout=5)
    assert missing.status_code == 404 and missing.json() == {
        "msg": "No such object.",
        "status_code": 404,
        "error": "not_found",
    }
    r = requests.get(stack.url + f"{DRS}/objects/{oid('ds1', 'small.bin')}", timeout=5)
    assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")


@pytest.mark.parametrize(
    "object_id",
    [
        "not base64!",
        "AA",
        oid("ds1", "../ds2/secret.bin"),
        oid("ds1", "a//b"),
        encode_object_id(ObjectRef("ds1", "dir//")),
        encode_object_id(ObjectRef("ds1", "../")),
        encode_object_id(ObjectRef("ds1", "/")),
        encode_object_id(ObjectRef("ds 1", "x")),
        "ZHMxL3NtYWxsLmJpbh",
        "ZHMxL3NtYWxsLmJpbg" + "=" * 2,
    ],
)
def test_invalid_object_ids_are_400(stack: Stack, object_id: str) -> None:
    r = requests.get(stack.url + f"{DRS}/objects/{object_id}", headers=AUTH, timeout=5)
    assert r.status_code in (400, 404) and stack.files.secret[:16] not in r.content


def test_object_id_codec_is_one_to_one() -> None:
    ref = ObjectRef("ds1", "dir/ü x.bin")
    assert decode_object_id(encode_object_id(ref)) == ref
    with pytest.raises(Refusal):
        decode_object_id(encode_object_id(ref)[:-1] + "B")  # non-canonical trailing bits


def test_options_lists_authorizations_without_looking_up_the_object(stack: Stack) -> None:
    r = requests.options(stack.url + f"{DRS}/objects/{oid('ds1', 'missing.bin')}", timeout=5)
    assert r.status_code == 200 and set(r.json()["supported_types"]) == {"PassportAuth", "BearerAuth"}


# ------------------------------------------------------------------ signed access URLs


def access_url(stack: Stack, dataset: str, path: str, **kwargs: object) -> str:
    r = requests.get(stack.url + f"{DRS}/objects/{oid(dataset, path)}/access/https", headers=AUTH, timeout=5, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200, r.text
    return r.json()["url"]


def test_px18_signed_url_downloads_without_a_token_and_supports_ranges(stack: Stack) -> None:
    url = access_url(stack, "ds1", "name with space & ü.bin")
    assert "access_token" not in url and "tok-ds1" not in url
    r = requests.get(url, timeout=5)
    assert r.status_code == 200 and r.content == stack.files.spaced
    r = requests.get(url, headers={"Range": "bytes=0-9"}, timeout=5)
    assert r.status_code == 206 and r.content == stack.files.spaced[:10]
    assert requests.head(url, timeout=5).status_code == 200
    assert r.headers["Cache-Control"] == "private, no-store"


def test_px18_signed_url_is_bound_to_its_object(stack: Stack) -> None:
    url = access_url(stack, "ds1", "small.bin")
    parts = urlsplit(url)
    for other in ("/data/ds1/dir/nested.bin", "/data/ds2/secret.bin", "/data/ds1/small.bin/x", "/data/off1/small.bin"):
        r = requests.get(f"{stack.url}{other}?{parts.query}", timeout=5)
        assert r.status_code in (403, 404) and r.json()["error"] in ("bad_signature", "not_found")
    tampered = parts.query.replace("expires=", "expires=1")
    assert requests.get(f"{stack.url}{parts.path}?{tampered}", timeout=5).status_code == 403
    assert requests.get(f"{stack.url}{parts.path}?{parts.query}&x=1", timeout=5).status_code == 403
    r = requests.get(f"{stack.url}{parts.path}?{parts.query}", headers=AUTH, timeout=5)
    assert r.status_code == 400  # a signed URL and a token: ambiguous, refused


def test_px18_signed_url_expires_and_lifetime_is_capped(stack: Stack, tmp_path: Path) -> None:
    now = [1_000_000.0]
    authorizer = TableAuthorizer(dict(stack.authorizer.tokens), clock=lambda: now[0])
    app = build_app(stack.settings, authorizer, tmp_path)
    app.extensions["gateway"].clock = lambda: now[0]
    with ServerThread(app) as server:
        r = requests.get(server.url + f"{DRS}/objects/{oid('ds1', 'small.bin')}/access/https", headers=AUTH, timeout=5)
        url = r.json()["url"]
        expires = int(urlsplit(url).query.split("expires=")[1].split("&")[0])
        assert expires - now[0] == stack.settings.signed_url_lifetime_seconds <= 300
        assert requests.get(url.replace(stack.url, server.url), timeout=5).status_code == 200
        now[0] += stack.settings.signed_url_lifetime_seconds + 1
        r = requests.get(url, timeout=5)
    assert r.status_code == 403 and r.json()["error"] == "expired_signed_url"


def test_signed_url_never_outlives_the_grant(stack: Stack, tmp_path: Path) -> None:
    now = 1_000_000.0
    grant = replace(stack.authorizer.tokens["tok-ds1"], expires_at=int(now) + 30)
    authorizer = TableAuthorizer({"tok-ds1": grant}, clock=lambda: now)
    app = build_app(stack.settings, authorizer, tmp_path)
    app.extensions["gateway"].clock = lambda: now
    with ServerThread(app) as server:
        url = requests.get(
            server.url + f"{DRS}/objects/{oid('ds1', 'small.bin')}/access/https", headers=AUTH, timeout=5
        ).json()["url"]
    assert f"expires={int(now) + 30}&" in url


def test_access_refusals_and_unknown_access_id(stack: Stack) -> None:
    base = stack.url + f"{DRS}/objects/{oid('ds1', 'small.bin')}/access"
    assert requests.get(base + "/https", timeout=5).status_code == 401
    assert requests.get(base + "/https", headers={"Authorization": "Bearer tok-none"}, timeout=5).status_code == 403
    assert requests.get(base + "/s3", headers=AUTH, timeout=5).status_code == 404
    missing = stack.url + f"{DRS}/objects/{oid('ds1', 'nope.bin')}/access/https"
    assert requests.get(missing, headers=AUTH, timeout=5).status_code == 404
    r = requests.post(base + "/https", json={"passports": ["tok-ds1"]}, timeout=5)
    assert r.status_code == 200 and "/data/ds1/small.bin?expires=" in r.json()["url"]


def test_signing_key_is_shared_by_processes_on_one_data_dir(stack: Stack, tmp_path: Path) -> None:
    a = build_app(stack.settings, stack.authorizer, tmp_path).extensions["gateway"].url_key
    b = build_app(stack.settings, stack.authorizer, tmp_path).extensions["gateway"].url_key
    assert a == b and len(a) == 32
    assert (tmp_path / "gateway" / "url-signing.key").stat().st_mode & 0o777 == 0o600


def test_datasets_can_stay_out_of_drs(stack: Stack, tmp_path: Path) -> None:
    datasets = {**stack.settings.datasets, "ds1": replace(stack.settings.datasets["ds1"], drs=False)}
    app = build_app(replace(stack.settings, datasets=datasets), stack.authorizer, tmp_path)
    with ServerThread(app) as server:
        base = server.url + f"{DRS}/objects/{oid('ds1', 'small.bin')}"
        assert requests.get(base, headers=AUTH, timeout=5).status_code == 404
        assert requests.get(base + "/access/https", headers=AUTH, timeout=5).status_code == 404
        assert requests.get(base, timeout=5).status_code == 401  # still decided first
        assert requests.get(server.url + "/data/ds1/small.bin", headers=AUTH, timeout=5).status_code == 200
