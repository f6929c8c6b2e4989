"""Metrics (Prometheus text), the audit hook, settings validation, and forwarded-header
trust for generated URLs (THREAT-MODEL PX-20)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from broker.gateway.drs import encode_object_id
from broker.gateway.metrics import Counter, Histogram
from broker.gateway.paths import ObjectRef
from broker.gateway.settings import GatewaySettings
from broker.settings import SettingsError, build_settings
from tests.gateway.conftest import AUTH, Stack
from tests.gateway.support import ServerThread, build_app
from tests.support.settings import replace

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? -?[0-9.e+Inf]+$')


def test_metrics_count_requests_decisions_bytes_and_upstream_latency(stack: Stack, tmp_path: Path) -> None:
    app = build_app(stack.settings, stack.authorizer, tmp_path)
    with ServerThread(app) as server:
        requests.get(server.url + "/data/ds1/small.bin", headers=AUTH, timeout=5)
        requests.get(server.url + "/data/ds1/small.bin", headers={**AUTH, "Range": "bytes=0-9,20-29"}, timeout=5)
        requests.get(server.url + "/data/ds1/small.bin", timeout=5)
        requests.get(server.url + "/data/ds1/small.bin", headers={"Authorization": "Bearer tok-none"}, timeout=5)
        requests.get(server.url + "/data/ds1/%2e%2e/x", headers=AUTH, timeout=5)
        requests.get(server.url + "/data/web1/dir/nested.bin", headers=AUTH, timeout=5)
        r = requests.get(server.url + "/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = r.text
    for line in text.splitlines():
        assert line.startswith("# ") or SAMPLE.match(line), line
    assert 'gateway_decisions_total{outcome="allow",reason="visa_matched"} 3' in text
    assert 'gateway_decisions_total{outcome="deny",reason="missing_token"} 1' in text
    assert 'gateway_decisions_total{outcome="deny",reason="no_matching_visa"} 1' in text
    assert 'gateway_decisions_total{outcome="deny",reason="dot_segment"} 1' in text
    assert 'gateway_requests_total{route="data",method="GET",status="401"} 1' in text
    streamed = len(stack.files.small) + len(stack.files.nested)
    sent = float(re.search(r'gateway_bytes_streamed_total\{dataset="ds1"\} (\S+)', text).group(1))
    assert sent > len(stack.files.small)  # the full file plus the multipart body
    assert f'gateway_bytes_streamed_total{{dataset="web1"}} {len(stack.files.nested)}' in text
    assert 'gateway_upstream_latency_seconds_count{store="archive"} 1' in text
    assert 'gateway_upstream_latency_seconds_bucket{store="archive",le="+Inf"} 1' in text
    assert streamed


def test_metrics_endpoint_can_be_switched_off(stack: Stack, tmp_path: Path) -> None:
    app = build_app(replace(stack.settings, metrics=False), stack.authorizer, tmp_path)
    with ServerThread(app) as server:
        assert requests.get(server.url + "/metrics", timeout=5).status_code == 404


def test_metrics_need_the_configured_token_when_one_is_set(stack: Stack, tmp_path: Path) -> None:
    app = build_app(replace(stack.settings, metrics_token="scrape-secret-1"), stack.authorizer, tmp_path)
    with ServerThread(app) as server:
        assert requests.get(server.url + "/metrics", timeout=5).status_code == 401
        wrong = requests.get(server.url + "/metrics", headers={"Authorization": "Bearer scrape-secret-2"}, timeout=5)
        assert wrong.status_code == 401 and "scrape-secret" not in wrong.text
        right = requests.get(server.url + "/metrics", headers={"Authorization": "Bearer scrape-secret-1"}, timeout=5)
        assert right.status_code == 200 and "gateway_requests_total" in right.text


def test_metrics_without_a_token_answer_only_loopback_peers(stack: Stack, tmp_path: Path) -> None:
    app = build_app(stack.settings, stack.authorizer, tmp_path)
    with app.test_client() as client:
        remote = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.10"})
        assert remote.status_code == 404
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
        assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1.evil"}).status_code == 404


def test_metric_families_render_and_escape() -> None:
    c = Counter("x_total", "help", ("a",))
    c.inc('q"\\\n')
    assert 'x_total{a="q\\"\\\\\\n"} 1' in "\n".join(c.render())
    with pytest.raises(ValueError):
        c.inc("a", amount=-1)
    h = Histogram("h_seconds", "help", buckets=(0.1, 1.0))
    h.observe(0.5)
    lines = h.render()
    assert 'h_seconds_bucket{le="0.1"} 0' in lines and 'h_seconds_bucket{le="1"} 1' in lines
    assert 'h_seconds_bucket{le="+Inf"} 1' in lines and "h_seconds_count 1" in lines


def test_audit_hook_sees_decisions_with_visas_and_transfers_with_bytes(stack: Stack) -> None:
    stack.audit.clear()
    requests.get(stack.url + "/data/ds1/dir/nested.bin", headers=AUTH, timeout=5)
    requests.get(stack.url + "/data/ds2/secret.bin", headers=AUTH, timeout=5)
    decisions = [e for e in stack.audit if e.kind == "decision"]
    transfers = [e for e in stack.audit if e.kind == "transfer"]
    assert (decisions[0].subject, decisions[0].outcome, decisions[0].visas_used) == (
        "alice@example.org",
        "allow",
        ("jti-ds1",),
    )
    assert decisions[0].basis == {"rule": "ds1-read"}
    assert (decisions[1].outcome, decisions[1].reason, decisions[1].dataset) == ("deny", "no_matching_visa", "ds2")
    assert len(transfers) == 1 and transfers[0].bytes_sent == len(stack.files.nested)
    assert transfers[0].outcome == "complete" and transfers[0].subject == "alice@example.org"


def test_px20_forwarded_headers_do_not_steer_generated_urls(stack: Stack, tmp_path: Path) -> None:
    settings = replace(stack.settings, public_base_url="https://data.example.org")
    app = build_app(settings, stack.authorizer, tmp_path)
    object_id = encode_object_id(ObjectRef("ds1", "small.bin"))
    with ServerThread(app) as server:
        r = requests.get(
            server.url + f"/ga4gh/drs/v1/objects/{object_id}/access/https",
            timeout=5,
            headers={
                **AUTH,
                "Host": "evil.test",
                "X-Forwarded-Host": "evil.test",
                "X-Forwarded-Proto": "http",
                "Forwarded": "host=evil.test",
            },
        )
        obj = requests.get(
            server.url + f"/ga4gh/drs/v1/objects/{object_id}",
            timeout=5,
            headers={**AUTH, "X-Forwarded-Host": "evil.test"},
        )
    assert r.json()["url"].startswith("https://data.example.org/data/ds1/small.bin?expires=")
    assert obj.json()["self_uri"] == f"drs://data.example.org/{object_id}"


# ------------------------------------------------------------------ settings


def parse_gateway_settings(raw: dict, source: str = "<gateway>") -> GatewaySettings:
    """The ``gateway:`` section of settings loaded from ``raw`` (as the loader reads a file)."""
    return build_settings({"gateway": raw}, source).gateway


def test_settings_parse_from_yaml_shaped_data() -> None:
    s = parse_gateway_settings(
        {
            "mode": "offload",
            "stores": {
                "local": {"kind": "directory", "path": "/srv", "offload_location": "/_gw/local/"},
                "up": {"kind": "http", "base_url": "https://store.example/o/", "headers": {"X-Api-Key": "k"}},
            },
            "datasets": {"ds1": {"store": "local", "prefix": "cohort1"}, "ds2": {"store": "up", "mode": "stream"}},
            "max_ranges": 4,
        }
    )
    assert isinstance(s, GatewaySettings) and s.datasets["ds1"].prefix == "cohort1"
    assert s.stores["up"].header_values() == {"X-Api-Key": "k"} and s.max_ranges == 4


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"max_ranges": 0}, "gateway.max_ranges"),
        ({"signed_url_lifetime_seconds": 301}, "gateway.signed_url_lifetime_seconds"),
        ({"url_signing_key": "short"}, "gateway.url_signing_key"),
        ({"mode": "mirror"}, "gateway.mode"),
        ({"stores": {"s": {"kind": "ftp"}}}, "gateway.stores.s.kind"),
        ({"stores": {"s": {"kind": "directory"}}}, "gateway.stores.s.path"),
        ({"stores": {"s": {"kind": "http", "base_url": "file:///etc"}}}, "gateway.stores.s.base_url"),
        ({"stores": {"s": {"kind": "http", "base_url": "http://x/?q=1"}}}, "gateway.stores.s.base_url"),
        (
            {"stores": {"s": {"kind": "http", "base_url": "http://x/", "headers": {"Host": "y"}}}},
            "gateway.stores.s.headers.Host",
        ),
        (
            {"stores": {"s": {"kind": "http", "base_url": "http://x/", "headers": {"X-K": "a\r\nb"}}}},
            "gateway.stores.s.headers.X-K",
        ),
        (
            {"stores": {"s": {"kind": "directory", "path": "/x"}}, "datasets": {"d": {"store": "t"}}},
            "gateway.datasets.d.store",
        ),
        (
            {
                "stores": {"s": {"kind": "directory", "path": "/x"}},
                "datasets": {"d": {"store": "s", "prefix": "../up"}},
            },
            "gateway.datasets.d.prefix",
        ),
        (
            {"stores": {"s": {"kind": "directory", "path": "/x"}}, "datasets": {"d d": {"store": "s"}}},
            "gateway.datasets.d d",
        ),
        (
            {
                "stores": {"s": {"kind": "directory", "path": "/x"}},
                "datasets": {"d": {"store": "s", "mode": "offload"}},
            },
            "gateway.datasets.d.mode",
        ),
        ({"cors_origins": ["*"]}, "gateway.cors_origins[0]"),
        ({"unknown": 1}, "gateway.unknown"),
    ],
)
def test_settings_mistakes_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(SettingsError) as info:
        parse_gateway_settings(raw, "broker.yaml")
    assert info.value.key == key and info.value.source == "broker.yaml"


def test_upstream_credentials_are_redacted_when_printed() -> None:
    from broker.settings import redacted

    s = parse_gateway_settings(
        {
            "stores": {"up": {"kind": "http", "base_url": "http://x/", "headers": {"X-Api-Key": "s3cret"}}},
            "url_signing_key": "k" * 40,
        }
    )
    shown = repr(redacted(s))
    assert "s3cret" not in shown and "kkkk" not in shown
