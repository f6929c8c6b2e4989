"""DRS 1.2 bundles: a dataset (and each of its folders) listed as ``contents``, after the same
authorisation as its objects, bounded, and never through a symlink."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from broker.gateway.drs import BundleRef, decode_drs_id, encode_bundle_id, encode_object_id
from broker.gateway.paths import DATASET_ID, ObjectRef
from tests.gateway.conftest import AUTH, Stack
from tests.gateway.support import ServerThread, build_app
from tests.support.settings import replace

DRS = "/ga4gh/drs/v1"


def get(stack: Stack, drs_id: str, headers: dict[str, str] | None = AUTH, **params: str) -> requests.Response:
    return requests.get(stack.url + f"{DRS}/objects/{drs_id}", headers=headers, params=params, timeout=10)


def names(contents: list[dict[str, Any]], prefix: str = "") -> set[str]:
    """Every path under a contents tree ('dir/' for a folder)."""
    out: set[str] = set()
    for item in contents:
        if "contents" in item or decode_drs_id(item["id"]).__class__ is BundleRef:
            out.add(prefix + item["name"] + "/")
            out |= names(item.get("contents", []), prefix + item["name"] + "/")
        else:
            out.add(prefix + item["name"])
    return out


def test_a_dataset_lists_its_files_and_folders_never_its_symlinks(stack: Stack) -> None:
    r = get(stack, encode_bundle_id("ds1"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == encode_bundle_id("ds1") and body["name"] == "ds1" and body["contents_truncated"] is False
    listed = {item["name"]: item for item in body["contents"]}
    # link-out, link-etc, link-dir, link-in (symlinks) and fifo are never listed
    assert set(listed) == {"big.bin", "dir", "empty.bin", "name with space & ü.bin", "small.bin"}
    small = listed["small.bin"]
    assert small["id"] == encode_object_id(ObjectRef("ds1", "small.bin"))
    assert small["drs_uri"] == [f"drs://127.0.0.1:{stack.gateway.port}/{small['id']}"]
    assert listed["dir"]["id"] == encode_bundle_id("ds1", ("dir",)) and "contents" not in listed["dir"]
    assert body["size"] == len(stack.files.small) + len(stack.files.spaced) + 256 * 1024 * 1024
    # every listed object id is one the object route answers
    obj = get(stack, small["id"]).json()
    assert obj["size"] == len(stack.files.small)


def test_expand_nests_every_folder(stack: Stack) -> None:
    expanded = get(stack, encode_bundle_id("ds1"), expand="true").json()
    assert "dir/nested.bin" in names(expanded["contents"])
    folder = get(stack, encode_bundle_id("ds1", ("dir",))).json()
    assert folder["name"] == "dir" and [i["name"] for i in folder["contents"]] == ["nested.bin"]
    assert folder["contents"][0]["id"] == encode_object_id(ObjectRef("ds1", "dir/nested.bin"))
    posted = requests.post(
        stack.url + f"{DRS}/objects/{encode_bundle_id('ds1')}",
        json={"passports": ["tok-ds1"], "expand": True},
        timeout=10,
    )
    assert posted.status_code == 200 and names(posted.json()["contents"]) == names(expanded["contents"])


def test_max_objects_cuts_the_listing_and_says_so(stack: Stack) -> None:
    body = get(stack, encode_bundle_id("ds1"), expand="true", max_objects="2").json()
    assert len(body["contents"]) == 2 and body["contents_truncated"] is True
    assert "cut" in body["description"]
    for bad in ("0", "-1", "10001", "x", "1e3"):
        r = get(stack, encode_bundle_id("ds1"), max_objects=bad)
        assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert get(stack, encode_bundle_id("ds1"), expand="yes").status_code == 400


def test_a_bundle_is_refused_exactly_like_an_object_before_existence(stack: Stack) -> None:
    """PX-17: a caller without access learns nothing about which datasets or folders exist."""
    for drs_id in (
        encode_bundle_id("ds1"),
        encode_bundle_id("ds1", ("nope",)),
        encode_object_id(ObjectRef("ds1", "x")),
    ):
        none = get(stack, drs_id, None)
        assert none.status_code == 401 and none.headers["WWW-Authenticate"].startswith("Bearer")
        other = get(stack, drs_id, {"Authorization": "Bearer tok-none"})
        assert other.status_code == 403 and other.json()["error"] == "no_matching_visa"
        assert "contents" not in other.json()
    assert get(stack, encode_bundle_id("ds2"), AUTH).status_code == 403
    assert get(stack, encode_bundle_id("ds1", ("nope",))).status_code == 404
    assert get(stack, encode_bundle_id("ds1", ("small.bin",))).status_code == 404  # a file is no folder
    assert get(stack, encode_bundle_id("ds1", ("link-dir",))).status_code == 404  # nor is a symlink to one
    assert stack.authorizer.calls[-1][1:3] == ("ds1", "link-dir/")


def test_bundles_have_no_access_methods_and_http_stores_are_not_listed(stack: Stack) -> None:
    r = requests.get(stack.url + f"{DRS}/objects/{encode_bundle_id('ds1')}/access/https", headers=AUTH, timeout=10)
    assert r.status_code == 404
    r = get(stack, encode_bundle_id("web1"))
    assert r.status_code == 404 and r.json()["error"] == "listing_unsupported"


def test_a_dataset_out_of_drs_has_no_bundle_and_odd_names_are_skipped(stack: Stack, tmp_path: Path) -> None:
    root = tmp_path / "store"
    (root / "ds1" / "sub").mkdir(parents=True)
    (root / "ds1" / "ok.bin").write_bytes(b"ok")
    (root / "ds1" / "semi;colon.bin").write_bytes(b"refused by the data route")
    (root / "ds1" / "new\nline.bin").write_bytes(b"refused by the data route")
    os.mkfifo(root / "ds1" / "sub" / "pipe")
    (root / "ds1" / "sub" / "loop").symlink_to(root / "ds1")
    stores = {"local": replace(stack.settings.stores["local"], path=str(root))}
    settings = replace(stack.settings, stores=stores, datasets={"ds1": stack.settings.datasets["ds1"]})
    with ServerThread(build_app(settings, stack.authorizer, tmp_path / "gw")) as server:
        url = server.url + f"{DRS}/objects/{encode_bundle_id('ds1')}"
        body = requests.get(url, headers=AUTH, params={"expand": "true"}, timeout=10).json()
        assert names(body["contents"]) == {"ok.bin", "sub/"}
        hidden = replace(settings, datasets={"ds1": replace(settings.datasets["ds1"], drs=False)})
    with ServerThread(build_app(hidden, stack.authorizer, tmp_path / "gw")) as server:
        url = server.url + f"{DRS}/objects/{encode_bundle_id('ds1')}"
        assert requests.get(url, headers=AUTH, timeout=10).status_code == 404
        assert requests.get(url, timeout=10).status_code == 401


segment = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_characters="/\\;%", exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")
    ),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", ".."))


@given(st.from_regex(DATASET_ID, fullmatch=True), st.lists(segment, max_size=4))
def test_bundle_ids_and_object_ids_never_collide(dataset: str, folder: list[str]) -> None:
    from broker.gateway.paths import PathError, validate_object_path

    try:
        if folder:
            validate_object_path("/".join(folder))
    except PathError:
        return  # a folder the path rules refuse (e.g. a compatibility spelling of a dot) has no id
    bundle = encode_bundle_id(dataset, tuple(folder))
    assert decode_drs_id(bundle) == BundleRef(dataset, tuple(folder))
    if folder:
        obj = encode_object_id(ObjectRef(dataset, "/".join(folder)))
        assert obj != bundle and decode_drs_id(obj) == ObjectRef(dataset, "/".join(folder))


def test_non_canonical_bundle_ids_are_refused() -> None:
    from broker.gateway.drs import encode_object_id_text
    from broker.gateway.service import Refusal

    for text in ("ds1//", "ds1/dir//", "ds1/../", "ds1/./", "/", "ds 1/", "ds1/a/../"):
        with pytest.raises(Refusal) as caught:
            decode_drs_id(encode_object_id_text(text))
        assert caught.value.status == 400
