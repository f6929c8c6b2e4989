"""Request paths to object keys (THREAT-MODEL PX-01, PX-02, PX-05, PX-08): unit rules,
hypothesis properties, and raw-socket requests against the running gateway."""

from __future__ import annotations

import posixpath
import socket
from urllib.parse import quote, unquote, urljoin, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.gateway.paths import PathError, _check_segment, parse_data_target, quote_segments, validate_object_path
from tests.gateway.conftest import AUTH, Stack
from tests.gateway.support import Recorded, RecordingUpstream, ServerThread, build_app, raw_exchange, raw_get, respond

ACCEPTED = {
    "/data/ds1/a.bam": ("ds1", "a.bam"),
    "/data/ds1/dir/sub/a.bam": ("ds1", "dir/sub/a.bam"),
    "/data/ds1/a%20b.bam": ("ds1", "a b.bam"),
    "/data/ds1/%C3%BC.vcf.gz": ("ds1", "ü.vcf.gz"),
    "/data/ds1/a.b..c": ("ds1", "a.b..c"),
    "/data/ds1/...": ("ds1", "..."),
    "/data/ds1/.hidden": ("ds1", ".hidden"),
    "/data/ds1/a%2Ebam": ("ds1", "a.bam"),
    "/data/ds1/x?expires=1&signature=abc": ("ds1", "x"),
    "/data/ds%31/x": ("ds%31", "x"),  # kept raw: an unknown dataset, never ds1
}

REFUSED = [
    "/data/ds1/../ds2/secret.bin",
    "/data/ds1/%2e%2e/ds2/secret.bin",
    "/data/ds1/%2E%2E%2Fds2",
    "/data/ds1/.%2e/ds2",
    "/data/ds1/%2e./ds2",
    "/data/ds1/%252e%252e%252fds2",
    "/data/ds1/%252e%252e/ds2",
    "/data/ds1/%c0%ae%c0%ae/ds2",
    "/data/ds1/%c0%af",
    "/data/ds1/%e0%80%ae%e0%80%ae/x",
    "/data/ds1/..;/ds2/x",
    "/data/ds1/a;b",
    "/data/ds1/..%5cds2",
    "/data/ds1/..\\ds2",
    "/data/ds1/%5c",
    "/data/ds1/a/.",
    "/data/ds1/a/..",
    "/data/ds1/./a",
    "/data/ds1//a",
    "/data/ds1/a//b",
    "/data/ds1/a/",
    "/data/ds1/",
    "/data/ds1",
    "/data//ds1/a",
    "/data/ds1/%2fetc%2fpasswd",
    "/data/ds1/%2Fetc",
    "/data/ds1/a%00.bam",
    "/data/ds1/%00",
    "/data/ds1/a%0d%0aX-Injected:%201",
    "/data/ds1/%ef%bc%8e%ef%bc%8e/ds2",
    "/data/ds1/%e2%80%a4%e2%80%a4/x",
    "/data/ds1/%ef%bc%8f",
    "/data/ds1/%ef%bc%bc",
    "/data/ds1/%e2%80%ae.bam",
    "/data/ds1/%",
    "/data/ds1/%2",
    "/data/ds1/%zz",
    "/data/ds1/%ff",
    "/data/ds1/a b",
    "/data/ds1/\x7f",
    "/data/ds1/ü",
    "http://127.0.0.1/data/ds1/a",
    "*",
    "127.0.0.1:6379",
    "//evil/data/ds1/a",
    "/data/ds1/a#frag",
    "/data/ds1/" + "a/" * 70 + "x",
    "/data/ds1/" + "a" * 256,
    "/other/ds1/a",
    "/data%2fds1/a",
    "/data/ds1/a?b=<script>",
]


@pytest.mark.parametrize("target,expected", ACCEPTED.items())
def test_px01_canonical_key_of_plain_paths(target: str, expected: tuple[str, str]) -> None:
    t = parse_data_target(target)
    assert (t.ref.dataset, t.ref.path) == expected


@pytest.mark.parametrize("target", REFUSED)
def test_px01_traversal_and_ambiguous_encodings_are_refused(target: str) -> None:
    with pytest.raises(PathError) as info:
        parse_data_target(target)
    assert info.value.status in (400, 414)
    assert info.value.code and info.value.message


def test_px05_absolute_and_authority_forms_are_refused() -> None:
    for target in ("http://169.254.169.254/latest/meta-data", "https://x/data/ds1/a", "127.0.0.1:6379", "*"):
        with pytest.raises(PathError) as info:
            parse_data_target(target)
        assert info.value.code == "invalid_target"


def test_quoted_segments_keep_separators_inside_segments() -> None:
    assert quote_segments(("a b", "c/d", "ü", "~x-y_z.w")) == "a%20b/c%2Fd/%C3%BC/~x-y_z.w"


# ------------------------------------------------------------------ properties

DANGEROUS = st.sampled_from(
    [
        "..",
        ".",
        "%2e",
        "%2E",
        "%252e",
        "%c0%ae",
        "%e0%80%ae",
        "/",
        "//",
        "%2f",
        "%2F",
        "%5c",
        "\\",
        "%00",
        ";",
        "%3b",
        "%ef%bc%8e",
        "%ef%bc%8f",
        "%25",
        "%",
        "a",
        "b.bam",
        "%20",
        "~",
        "%0a",
        "%c3%bc",
        "?",
        "#",
        "ds2",
    ]
)
PIECES = st.lists(st.one_of(DANGEROUS, st.text(max_size=4)), max_size=12).map("".join)


def remove_dot_segments_resolve(base: str, path: str) -> str:
    """What an RFC 3986 client/upstream would make of base + path (dot segments resolved)."""
    return urlsplit(urljoin(base, path)).path


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PIECES)
def test_px01_property_accepted_keys_never_leave_the_prefix(tail: str) -> None:
    """For any path: accepted <=> a key under the dataset whose every later reading is the same."""
    try:
        target = parse_data_target("/data/ds1/" + tail)
    except PathError:
        return
    ref = target.ref
    assert ref.dataset == "ds1"
    # The key is already canonical: normalising it (as a filesystem or posixpath would) is a no-op.
    joined = posixpath.join("/store/ds1", ref.path)
    assert posixpath.normpath(joined) == joined and joined.startswith("/store/ds1/")
    assert not any(seg in ("", ".", "..") for seg in ref.segments)
    # The upstream URL built from it resolves (RFC 3986 5.2.4) to itself, under the prefix,
    # and decoding it once more (a double-decoding upstream) changes nothing.
    quoted = quote_segments(ref.segments)
    resolved = remove_dot_segments_resolve("http://up/ds1/", quoted)
    assert resolved == "/ds1/" + quoted
    assert unquote(quoted) == ref.path and unquote(ref.path) == ref.path


SAFE_SEGMENT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Zl", "Zp"), blacklist_characters="/\\;%"),
    min_size=1,
    max_size=20,
).filter(lambda s: s not in (".", "..") and all(c not in s for c in "\uff0e\uff0f\uff3c\u2024"))


@settings(max_examples=300, deadline=None)
@given(st.lists(SAFE_SEGMENT, min_size=1, max_size=6))
def test_property_every_legitimate_name_round_trips_exactly(segments: list[str]) -> None:
    """Decoding happens exactly once: quote(name) parses back to name, for any ordinary name."""
    try:
        validate_object_path("/".join(segments))
    except PathError:
        return  # NFKC-equivalent of a dot segment or separator: refused on purpose
    target = parse_data_target("/data/ds1/" + "/".join(quote(s, safe="") for s in segments))
    assert target.ref.segments == tuple(segments)


# ------------------------------------------------------------------ over the wire


def test_px01_raw_socket_traversal_never_reaches_the_upstream_outside_the_prefix(stack: Stack, tmp_path) -> None:
    """A recording upstream behind an http store: for every attack path it sees nothing
    outside /ds1/, and nothing at all for refused ones."""
    from broker.gateway.settings import DatasetSettings, DataStoreSettings
    from tests.support.settings import replace

    def serve(rec: Recorded, sock: socket.socket) -> None:
        respond(sock, "200 OK", [("Content-Length", "2"), ("Connection", "close")], b"ok")

    with RecordingUpstream(serve) as upstream:
        settings = replace(
            stack.settings,
            stores={**stack.settings.stores, "rec": DataStoreSettings(kind="http", base_url=upstream.url)},
            datasets={**stack.settings.datasets, "ds1": DatasetSettings(store="rec", prefix="ds1")},
        )
        with ServerThread(build_app(settings, stack.authorizer, tmp_path)) as server:
            statuses = {}
            for target in REFUSED + list(ACCEPTED):
                if not target.startswith("/data/") or target.startswith("/data/ds%31"):
                    continue
                wire = target.replace(" ", "%20") if " " in target and target in ACCEPTED else target
                responses, _ = raw_exchange(
                    server.port,
                    (
                        f"GET {wire} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-ds1\r\nConnection: close\r\n\r\n"
                    ).encode("latin-1", "replace"),
                )
                statuses[target] = responses[0].status if responses else None
        seen = [r.target for r in upstream.requests]
    for target in REFUSED:
        if target.startswith("/data/"):
            assert statuses[target] in (400, 414), (target, statuses[target])
    assert seen, "the accepted paths reached the upstream"
    for path in seen:
        assert path.startswith("/ds1/"), path
        resolved = remove_dot_segments_resolve("http://up/", path)
        assert resolved == path and "%2e" not in path.lower() and "%25" not in path
    # every plain accepted path reached it (the one with a signed-URL query plus a token is a 400)
    assert len(seen) == len([t for t in ACCEPTED if t.startswith("/data/ds1/") and "?" not in t])


def test_px01_raw_socket_refusals_are_400_from_the_gateway(stack: Stack) -> None:
    for target in (
        "/data/ds1/..%2fds2/secret.bin",
        "/data/ds1/%252e%252e/ds2/secret.bin",
        "/data/ds1/%c0%ae%c0%ae/ds2/secret.bin",
        "/data/ds1/..;/ds2/secret.bin",
        "/data/ds1//small.bin",
        "/data/ds1/small.bin%00",
        "/data/ds1/small.bin/.",
        "/data/ds1/%5c..%5cds2%5csecret.bin",
    ):
        resp = raw_get(stack.gateway.port, target, AUTH)
        assert resp.status == 400, target
        assert stack.files.secret not in resp.body and stack.files.small[:32] not in resp.body
        assert resp.header("Content-Type") == "application/json"


@pytest.mark.parametrize("dataset", ["ds%31", "DS1", "Ds1", "ds1.", "ds1%2e", "%64s1", "ds\uff11", "ds1 "])
def test_px02_other_spellings_of_a_dataset_never_open_it(stack: Stack, dataset: str) -> None:
    wire = dataset.replace(" ", "%20").replace("\uff11", "%EF%BC%91")
    resp = raw_get(stack.gateway.port, f"/data/{wire}/small.bin", AUTH)
    assert resp.status in (400, 403, 404)
    assert stack.files.small[:32] not in resp.body


@pytest.mark.parametrize(
    "request_line",
    [
        "GET http://169.254.169.254/data/ds1/small.bin HTTP/1.1",
        "GET http://127.0.0.1:6379/data/ds1/small.bin HTTP/1.1",
        "CONNECT 127.0.0.1:6379 HTTP/1.1",
    ],
)
def test_px05_absolute_form_and_connect_never_serve(stack: Stack, request_line: str) -> None:
    stack.authorizer.calls.clear()
    responses, _ = raw_exchange(
        stack.gateway.port,
        (
            f"{request_line}\r\nHost: 127.0.0.1:6379\r\nAuthorization: Bearer tok-ds1\r\nConnection: close\r\n\r\n"
        ).encode(),
    )
    assert responses and responses[0].status in (400, 404, 405)
    assert stack.files.small[:32] not in responses[0].body
    assert stack.authorizer.calls == []


@pytest.mark.parametrize("target", ["/data/ds1/a%0d%0aSet-Cookie:%20x=1", "/data/ds1/small.bin%0d%0a"])
def test_px08_crlf_in_path_is_400_and_never_a_header(stack: Stack, target: str) -> None:
    resp = raw_get(stack.gateway.port, target, AUTH)
    assert resp.status == 400
    assert resp.header("Set-Cookie") is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=300))
def test_property_ascii_segment_rules(text: str) -> None:
    """The fast path for plain ASCII agrees with the written rules."""
    expected = (
        0 < len(text) <= 255
        and text not in (".", "..")
        and not any(c in "/\\;%" or ord(c) < 0x20 or ord(c) == 0x7F for c in text)
    )
    try:
        _check_segment(text)
        accepted = True
    except PathError:
        accepted = False
    assert accepted == expected
