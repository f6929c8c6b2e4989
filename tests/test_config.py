"""Settings: embedded defaults, YAML file, BROKER_* overrides, and one clear line per mistake."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from broker.oidc.scopes import DEFAULT_SCOPES
from broker.settings import Settings, SettingsError, build_settings, load_settings, redacted


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broker.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_gives_embedded_defaults() -> None:
    settings = load_settings(None, environ={"XDG_DATA_HOME": "/data"})
    assert settings.issuer == "http://127.0.0.1:8080/"
    assert settings.store.backend == "sqlite"
    assert settings.sqlite_path == Path("/data/ga4gh-broker/broker.db")
    assert settings.keys.algorithm == "ES256"
    assert settings.source == "<defaults>"


def test_file_values_are_read_and_nested_defaults_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "issuer: https://broker.example/\nstore: {backend: redis, url: 'redis://10.0.0.1:6380/2'}\n")
    settings = load_settings(path, environ={})
    assert settings.issuer == "https://broker.example/"
    assert settings.store.backend == "redis"
    assert settings.store.url.get_secret_value() == "redis://10.0.0.1:6380/2"
    assert settings.store.namespace == "ga4gh-broker"  # untouched default
    assert settings.source == str(path)


def test_environment_overrides_file_with_typed_values(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {workers: 2}\n")
    env = {"BROKER_SERVER__WORKERS": "5", "BROKER_KEYS__ALGORITHM": "RS256", "BROKER_ISSUER": "https://x.example/"}
    settings = load_settings(path, environ=env)
    assert settings.server.workers == 5
    assert settings.keys.algorithm == "RS256"
    assert settings.issuer == "https://x.example/"


def test_broker_config_variable_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "data_dir: /srv/broker\n")
    settings = load_settings(None, environ={"BROKER_CONFIG": str(path)})
    assert settings.data_dir == "/srv/broker"


def test_trusted_issuers_become_dataclasses(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
trust:
  visa_issuers:
    - iss: https://login.example/oidc/
      jku: [https://login.example/oidc/jwk]
      visa_types: [ControlledAccessGrants]
""",
    )
    issuer = load_settings(path, environ={}).trust.visa_issuers[0]
    assert issuer.iss == "https://login.example/oidc/"
    assert issuer.jku == ["https://login.example/oidc/jwk"]
    assert issuer.visa_types == ["ControlledAccessGrants"]
    assert issuer.sources is None


MISTAKES = [
    # (file text, key named in the message, words the message must contain)
    ("stroe: {backend: sqlite}\n", "stroe", "unknown setting"),
    ("store: {backend: mysql}\n", "store.backend", "expected one of 'sqlite', 'redis'"),
    ("server: {workers: many}\n", "server.workers", "expected an integer"),
    ("server: {workers: true}\n", "server.workers", "expected an integer"),
    ("keys: {algorithm: HS256}\n", "keys.algorithm", "expected one of 'ES256', 'RS256'"),
    ("issuer: ftp://x/\n", "issuer", "expected an http(s) URL"),
    ("trust: {visa_issuers: [{jku: [https://a/jwk]}]}\n", "trust.visa_issuers[0].iss", "required setting is missing"),
    ("trust: {visa_issuers: [{iss: https://a/}]}\n", "trust.visa_issuers[0]", "at least one of jku, jwks, jwks_file"),
    ("limits: {max_visas_per_passport: 0}\n", "limits.max_visas_per_passport", "greater than 0"),
    ("keys: {storage: store}\n", "keys.encryption_secret", "required when keys.storage is 'store'"),
    ("keys: {rotate_every_days: 0.01}\n", "keys.rotate_every_days", "longer than keys.publish_ahead_seconds"),
    ("store: [sqlite]\n", "store", "expected a mapping"),
    ("server:\n  bind: [1\n", "", "line 3, column 1: expected ','"),
    ("- just\n- a list\n", "", "expected a mapping of settings"),
    # Start-up refuses these, so config check must too (one validation for both).
    ("trust: {visa_issuers: [{iss: https://a/, jku: [http://a/jwk]}]}\n", "trust.visa_issuers[0].jku[0]", "https"),
    (
        "trust: {visa_issuers: [{iss: https://a/, jwks_file: /nonexistent/k.json}]}\n",
        "trust.visa_issuers[0].jwks_file",
        "file not found",
    ),
    ("policy: {directory: /nonexistent/policies}\n", "policy.directory", "policies"),
    ("gateway: {datasets: {ds1: {store: nowhere}}}\n", "gateway.datasets.ds1.store", "no store named"),
    (
        "oidc: {clients: [{client_id: c, auth_method: none, redirect_uris: [https://a/cb], scopes: [openid, admin]}]}"
        "\n",
        "oidc.clients[0].scopes[1]",
        "expected one of openid, profile, email, ga4gh_passport_v1, dac, ga4gh_permissions, got 'admin'",
    ),
]


@pytest.mark.parametrize(("text", "key", "words"), MISTAKES, ids=[m[1] or m[2] for m in MISTAKES])
def test_each_mistake_names_file_key_and_expectation(tmp_path: Path, text: str, key: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert message.startswith(str(path))
    assert caught.value.key == key
    assert words in message
    assert "\n" not in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="file not found"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_bad_environment_override_names_the_key() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(None, environ={"BROKER_STORE__BACKEND": "oracle"})
    assert caught.value.key == "store.backend"


def test_unknown_environment_override_is_refused() -> None:
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(None, environ={"BROKER_STORE__BAKEND": "redis"})


def test_redacted_hides_every_secret() -> None:
    settings = load_settings(
        None,
        environ={
            "BROKER_KEYS__ENCRYPTION_SECRET": "kek-passphrase-123",
            "BROKER_STORE__URL": "redis://:hunter2@127.0.0.1:6379/0",
        },
    )
    text = repr(redacted(settings))
    assert "kek-passphrase-123" not in text
    assert "hunter2" not in text
    assert redacted(settings)["keys"]["encryption_secret"] == "***"


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.issuer = "https://evil/"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("store: {backend: mysql}\n", "store.backend"),
        ("bogus: 1\n", "bogus"),
        ("server: {workers: x}\n", "server.workers"),
        ("issuer: 42\n", "issuer"),
        ("limits:\n  max_json_depth: -1\n", "limits.max_json_depth"),
    ],
)
def test_cli_reports_one_line_and_exit_status_2(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    result = subprocess.run(
        [sys.executable, "-m", "broker", "-c", str(path), "config", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("raw", [{1: "x"}, {None: None}, {("a",): 1}], ids=["int-key", "null-key", "tuple-key"])
def test_a_top_key_that_is_not_a_name_is_a_settings_error(raw: dict) -> None:
    """Found by the settings fuzz target: ``1: x`` or a bare ``?`` once raised TypeError from Settings(**raw)."""
    with pytest.raises(SettingsError, match="expected setting names at the top"):
        build_settings(raw, "broker.yaml")


@pytest.mark.parametrize(
    ("text", "words"),
    [("issuer: 2001-02-30\n", "impossible date"), ("[" * 3000 + "\n", "nested too deeply")],
    ids=["impossible-date", "deep-flow-nesting"],
)
def test_yaml_its_constructor_refuses_is_a_settings_error(text: str, words: str, tmp_path: Path) -> None:
    """PyYAML raises ValueError / RecursionError (not YAMLError) for these: still one line, never a traceback."""
    path = tmp_path / "broker.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError, match=words):
        load_settings(path, environ={})


def test_an_unreadable_value_is_not_echoed_because_it_may_be_a_secret(tmp_path: Path) -> None:
    path = tmp_path / "broker.yaml"
    path.write_text("oidc: {clients: [{id: a, secret_hash: 2024-02-31}]}\n", encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={})
    assert "2024-02-31" not in str(caught.value)


# ---------------------------------------------------------------------------- where state lives


def test_unnamed_data_dir_is_the_users_data_folder_whatever_the_working_folder() -> None:
    assert load_settings(None, environ={"XDG_DATA_HOME": "/x/data"}).data_dir == "/x/data/ga4gh-broker"
    assert load_settings(None, environ={"HOME": "/home/ann"}).data_dir == "/home/ann/.local/share/ga4gh-broker"
    service = {"STATE_DIRECTORY": "/var/lib/ga4gh-broker:/var/lib/other", "XDG_DATA_HOME": "/x/data"}
    assert load_settings(None, environ=service).data_dir == "/var/lib/ga4gh-broker"  # systemd's StateDirectory=


def test_relative_paths_in_a_settings_file_are_relative_to_its_folder(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    shutil.copytree(Path(__file__).parent.parent / "policies", tmp_path / "rules")
    path = tmp_path / "conf" / "broker.yaml"
    path.write_text(
        "data_dir: state\n"
        "policy: {directory: ../rules}\n"
        "keys: {directory: /abs/keys}\n"
        "gateway:\n"
        "  stores: {genomes: {kind: directory, path: data/genomes}}\n"
        "  datasets: {DS1: {store: genomes}}\n",
        encoding="utf-8",
    )
    settings = load_settings(path, environ={})
    assert settings.data_dir == str(tmp_path / "conf" / "state")
    assert settings.sqlite_path == tmp_path / "conf" / "state" / "broker.db"
    assert Path(settings.policy.directory).resolve() == tmp_path / "rules"
    assert settings.keys.directory == "/abs/keys"  # absolute paths are kept
    assert settings.gateway.stores["genomes"].path == str(tmp_path / "conf" / "data" / "genomes")


def test_a_relative_path_from_the_environment_stays_relative_to_the_working_folder(tmp_path: Path) -> None:
    path = write(tmp_path, "issuer: https://broker.example/\n")
    settings = load_settings(path, environ={"BROKER_DATA_DIR": "here"})
    assert settings.data_dir == "here"


def test_a_declared_client_without_scopes_gets_what_discovery_advertises_and_may_be_given_dac(tmp_path: Path) -> None:
    client = "{client_id: c, auth_method: none, redirect_uris: [https://a/cb]}"
    plain = load_settings(write(tmp_path, f"oidc: {{clients: [{client}]}}\n"), environ={})
    assert tuple(plain.oidc.clients[0].scopes) == DEFAULT_SCOPES == ("openid", "profile", "email", "ga4gh_passport_v1")
    given = client.replace("}", ", scopes: [openid, dac, ga4gh_permissions]}")
    named = load_settings(write(tmp_path, f"oidc: {{clients: [{given}]}}\n"), environ={})
    assert named.oidc.clients[0].scopes == ["openid", "dac", "ga4gh_permissions"]
