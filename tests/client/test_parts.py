"""The client's parts on their own: the token file, URL and text rules, the device-flow poll loop
(against a small real HTTP server that answers what a broker may: slow_down, denial, expiry),
discovery checks and the rendering of untrusted refusal documents."""

from __future__ import annotations

import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, request
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.client.credentials import CredentialStore, Login, config_dir
from broker.client.drs import _flatten, describe_required, explain_refusal
from broker.client.http import Bearer, ClientError, Http, check_url, printable
from broker.client.oauth import DeviceLogin, discover
from tests.gateway.support import ServerThread


def login(broker: str = "https://broker.example", access: str = "at-" + "secret") -> Login:
    return Login(broker, "ga4gh-cli", f"{broker}/token", f"{broker}/userinfo", access, 2_000_000_000, "openid", "rt")


# ------------------------------------------------------------------ the token file


def test_config_dir_follows_xdg_and_ignores_a_relative_value(tmp_path: Path) -> None:
    assert config_dir({"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/h"}) == tmp_path / "ga4gh-broker"
    assert config_dir({"XDG_CONFIG_HOME": "relative", "HOME": "/h"}) == Path("/h/.config/ga4gh-broker")
    assert config_dir({"HOME": "/h"}) == Path("/h/.config/ga4gh-broker")


def test_the_token_file_is_0600_in_a_0700_folder_and_holds_several_brokers(tmp_path: Path) -> None:
    folder = tmp_path / "cfg"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # noqa: S103 - a folder left too open, which the store must tighten
    store = CredentialStore(folder)
    store.save(login("https://a.example"))
    store.save(login("https://b.example", access="other"))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.login_for(None) == login("https://b.example", access="other")  # the last login is the default
    assert store.login_for("https://a.example/") == login("https://a.example")
    store.forget("https://b.example")
    assert store.login_for(None) is None and store.login_for("https://a.example") is not None


def test_a_symlinked_token_file_is_not_read(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    (tmp_path / "elsewhere.json").write_text(json.dumps({"brokers": {}}))
    store.path.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(ClientError) as caught:
        store.read()
    assert caught.value.code == "bad_credentials_file"


def test_a_damaged_token_file_is_a_clear_error(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(ClientError, match="damaged"):
        store.login_for(None)
    store.path.write_text(json.dumps({"current": "x", "brokers": {"x": {"broker": "x"}}}))
    with pytest.raises(ClientError, match="log in again"):
        store.login_for(None)


def test_concurrent_saves_never_leave_a_torn_file(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path)
    store.save(login())
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(30):
                with store.locked():
                    store.save(login(access=f"t{n}-{i}" * 50))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    def reader() -> None:
        for _ in range(200):
            try:
                assert store.login_for(None) is not None
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert not list(tmp_path.glob("*.tmp"))


def test_tokens_never_appear_in_a_repr() -> None:
    assert "at-secret" not in repr(login()) and "rt" not in repr(login()).replace("broker", "")
    assert "at-secret" not in repr(Bearer("at-secret"))


# ------------------------------------------------------------------ URLs and text


@pytest.mark.parametrize(
    "url",
    ["https://broker.example", "http://127.0.0.1:8080/", "http://127.9.9.9/x", "http://[::1]:1/", "http://localhost/"],
)
def test_tokens_may_go_to_https_and_to_loopback(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize(
    "url", ["http://broker.example", "http://10.0.0.1/", "ftp://x/", "file:///etc/passwd", "https://", "javascript:x"]
)
def test_tokens_never_go_to_plain_http_elsewhere(url: str) -> None:
    with pytest.raises(ClientError) as caught:
        check_url(url)
    assert caught.value.exit_status == 2


def test_server_text_cannot_drive_the_terminal() -> None:
    assert printable("ok\x1b[31mred\x1b]0;title\x07\u202eevil\r\n") == "ok[31mred]0;titleevil"
    assert len(printable("x" * 10_000, 50)) == 50


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=60,
)


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["requires", "data_use", "dataset", "x"]), json_values, max_size=4))
def test_any_refusal_document_renders_to_a_few_safe_lines(doc: dict[str, Any]) -> None:
    lines = describe_required(doc)
    assert 1 <= len(lines) <= 80
    assert all("\x1b" not in line and "\n" not in line for line in lines)
    refused = explain_refusal(403, {"error": "\x1b[2J", "msg": doc, "required": doc}, "d/p", "https://b")
    assert "\x1b" not in refused.message


def test_deeply_nested_requirements_are_cut() -> None:
    node: dict[str, Any] = {"visa": {"type": "T"}}
    for _ in range(200):
        node = {"any_of": [node, node]}
    lines = describe_required({"dataset": "D", "requires": node})
    assert len(lines) < 80 and lines[-1].strip() == "..."


def test_listing_names_cannot_climb_out_of_the_dataset() -> None:
    contents = [
        {"name": "../etc", "contents": [{"name": "passwd"}]},
        {"name": "a/b"},
        {"name": ".."},
        {"name": "ok", "contents": [{"name": "f.bin"}, {"name": 5}]},
        "junk",
    ]
    assert list(_flatten(contents, "", 0)) == ["ok/f.bin"]


# ------------------------------------------------------------------ the device flow against a small real server


class FakeBroker:
    """A real HTTP server answering the device flow with a scripted sequence of token answers."""

    def __init__(self, answers: list[tuple[int, dict[str, Any]]], issuer_suffix: str = "") -> None:
        self.answers = answers
        self.polls: list[dict[str, str]] = []
        app = Flask("fake-broker")
        fake = self

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            base = request.host_url.rstrip("/")
            return jsonify(
                issuer=base + issuer_suffix,
                token_endpoint=base + "/token",
                device_authorization_endpoint=base + "/device_authorization",
                userinfo_endpoint=base + "/userinfo",
            )

        @app.post("/device_authorization")
        def device() -> Any:
            base = request.host_url.rstrip("/")
            return jsonify(
                device_code="dc",
                user_code="ABCD-EFGH",
                verification_uri=base + "/device",
                interval=2,
                expires_in=600,
            )

        @app.post("/token")
        def token() -> Any:
            fake.polls.append(dict(request.form))
            status, body = fake.answers.pop(0)
            response = jsonify(body)
            response.status_code = status
            return response

        self.server = ServerThread(app)

    def __enter__(self) -> FakeBroker:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)


@pytest.fixture
def clock() -> Iterator[list[float]]:
    yield [0.0]


def run_device(fake: FakeBroker, clock: list[float], sleeps: list[float]) -> Login:
    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    import io

    out = io.StringIO()
    http = Http.create()
    found = discover(http, fake.server.url)
    result = DeviceLogin(http, out, sleep=sleep, clock=lambda: clock[0], open_browser=False).run(found, "cli", None)
    assert "ABCD-EFGH" in out.getvalue()
    return result


def test_polling_waits_the_interval_and_five_seconds_more_after_slow_down(clock: list[float]) -> None:
    tokens: dict[str, Any] = {
        "access_token": "at",
        "token_type": "Bearer",
        "expires_in": 900,
        "refresh_token": "rt",
        "scope": "openid",
    }
    answers: list[tuple[int, dict[str, Any]]] = [
        (400, {"error": "authorization_pending"}),
        (400, {"error": "slow_down"}),
        (400, {"error": "authorization_pending"}),
        (200, tokens),
    ]
    sleeps: list[float] = []
    with FakeBroker(answers) as fake:
        result = run_device(fake, clock, sleeps)
    assert sleeps == [2, 2, 7, 7]
    assert result.refresh_token == "rt" and result.scope == "openid"
    assert all(
        p == {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "dc", "client_id": "cli"}
        for p in fake.polls
    )


@pytest.mark.parametrize(
    "answer,code", [({"error": "access_denied"}, "login_denied"), ({"error": "expired_token"}, "login_expired")]
)
def test_a_denied_or_expired_device_code_ends_the_login(clock: list[float], answer: dict[str, Any], code: str) -> None:
    with FakeBroker([(400, answer)]) as fake, pytest.raises(ClientError) as caught:
        run_device(fake, clock, [])
    assert caught.value.code == code


def test_polling_stops_at_expires_in(clock: list[float]) -> None:
    answers = [(400, {"error": "authorization_pending"})] * 400
    sleeps: list[float] = []
    with FakeBroker(answers) as fake, pytest.raises(ClientError) as caught:
        run_device(fake, clock, sleeps)
    assert caught.value.code == "login_expired" and sum(sleeps) <= 602


def test_a_discovery_document_naming_another_issuer_is_refused() -> None:
    with FakeBroker([], issuer_suffix="/other") as fake, pytest.raises(ClientError) as caught:
        discover(Http.create(), fake.server.url)
    assert caught.value.code == "issuer_mismatch"


def test_a_token_answer_that_is_not_a_bearer_token_is_refused(clock: list[float]) -> None:
    with FakeBroker([(200, {"access_token": "x", "token_type": "mac"})]) as fake, pytest.raises(ClientError) as caught:
        run_device(fake, clock, [])
    assert caught.value.code == "bad_token_answer"
