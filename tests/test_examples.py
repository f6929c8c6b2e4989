"""The shipped examples are what they say: settings the broker accepts, a compose file that fits together.

- ``examples/upstreams/`` and ``examples/federation/`` pass ``ga4gh-broker config check`` as a
  real process, exactly as docs/federation.md tells an operator to run it;
- ``examples/compose/``: no Docker engine here, so the compose file is checked as YAML against
  the rules of the Compose specification it relies on (services, build context, volumes,
  depends_on, ports, variables), the broker's settings are checked in the folder layout its
  mounts make inside the container with the environment compose gives it, and nginx checks
  its configuration with ``nginx -t``. ``docker compose config`` runs too when docker exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.parts import require_binary

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
COMPOSE = EXAMPLES / "compose"
SETTINGS_EXAMPLES = sorted(
    str(p.relative_to(ROOT)) for folder in ("upstreams", "federation") for p in (EXAMPLES / folder).glob("*.yaml")
)
COMPOSE_TOP_KEYS = {"name", "services", "volumes", "networks", "secrets", "configs"}
SERVICE_KEYS = {
    "image", "build", "command", "environment", "volumes", "ports", "expose", "depends_on",
    "healthcheck", "restart", "secrets", "networks",
}  # fmt: skip
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[?-][^}]*)?\}")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    return subprocess.run(
        [sys.executable, "-m", "broker", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**clean, **(env or {})},
        check=False,
    )


def test_every_command_of_docs_federation_runs() -> None:
    """The sh blocks of docs/federation.md, run as written from the checkout."""
    text = (ROOT / "docs" / "federation.md").read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) >= 3
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    for block in blocks:
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", block],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (block, done.stderr)


def test_there_are_upstream_and_two_broker_examples() -> None:
    assert {"examples/upstreams/ls-login.yaml", "examples/upstreams/keycloak.yaml"} <= set(SETTINGS_EXAMPLES)
    assert {"examples/federation/broker-se.yaml", "examples/federation/broker-fi.yaml"} <= set(SETTINGS_EXAMPLES)


@pytest.mark.parametrize("example", SETTINGS_EXAMPLES)
def test_settings_example_passes_config_check(example: str) -> None:
    done = cli("-c", example, "config", "check")
    assert done.returncode == 0, done.stderr


def test_the_two_brokers_trust_each_other_for_their_own_dac_only() -> None:
    se = yaml.safe_load((EXAMPLES / "federation" / "broker-se.yaml").read_text())
    fi = yaml.safe_load((EXAMPLES / "federation" / "broker-fi.yaml").read_text())
    for this, other in ((se, fi), (fi, se)):
        issuers = {i["iss"]: i for i in this["trust"]["visa_issuers"]}
        peer = issuers[other["issuer"]]
        assert peer["sources"] == [c["source"] for c in other["dac"]["committees"]]
        assert peer["visa_types"] == ["ControlledAccessGrants"]
        brokers = {b["iss"]: b for b in this["trust"]["brokers"]}
        assert brokers[other["issuer"]]["identity_binding"] == "linked"
        assert brokers["https://login.aai.lifescience-ri.eu/oidc/"]["identity_binding"] == "same_sub"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load((COMPOSE / "compose.yaml").read_text()))


def _env_example() -> dict[str, str]:
    pairs = [line.split("=", 1) for line in (COMPOSE / ".env.example").read_text().splitlines()]
    return {k.strip(): v.strip() for k, v in (p for p in pairs if len(p) == 2 and not p[0].startswith("#"))}


def _interpolate(text: str, env: dict[str, str]) -> str:
    return VARIABLE.sub(lambda m: env[m.group(1)], text)


def test_compose_file_fits_together() -> None:
    compose = _compose()
    assert set(compose) <= COMPOSE_TOP_KEYS
    services: dict[str, Any] = compose["services"]
    assert set(services) == {"postgres", "broker", "nginx"}
    declared_volumes = set(compose.get("volumes") or {})
    used_volumes: set[str] = set()
    for name, service in services.items():
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        assert ("image" in service) != ("build" in service), name
        if "build" in service:
            context = COMPOSE / service["build"]["context"]
            assert (context / service["build"].get("dockerfile", "Dockerfile")).is_file(), name
        depends = service.get("depends_on") or []
        assert set(depends) <= set(services) - {name}, name
        for mount in service.get("volumes", []):
            source, target, *mode = mount.split(":")
            assert target.startswith("/") and mode in ([], ["ro"]), mount
            if source.startswith("."):
                assert (COMPOSE / source).exists(), mount
            else:
                used_volumes.add(source)
        for port in service.get("ports", []):
            assert re.fullmatch(r"\d+:\d+", port), port
    assert used_volumes == declared_volumes
    assert services["broker"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]
    # every ${VARIABLE} has a value in .env.example, and nothing secret is written into the file itself
    text = (COMPOSE / "compose.yaml").read_text()
    assert set(VARIABLE.findall(text)) <= set(_env_example())
    assert not [value for value in _env_example().values() if value in text]


def test_compose_broker_settings_pass_config_check_inside_the_container_layout(tmp_path: Path) -> None:
    """The broker service's bind mounts rebuilt under tmp_path, its environment as compose gives it."""
    broker = _compose()["services"]["broker"]
    root = tmp_path / "container"
    for mount in broker["volumes"]:
        source, target, *_ = mount.split(":")
        if not source.startswith("."):
            continue
        place = root / target.lstrip("/")
        place.parent.mkdir(parents=True, exist_ok=True)
        if (COMPOSE / source).is_dir():
            place.symlink_to((COMPOSE / source).resolve())
        else:  # a copy: the settings loader resolves its file's real folder for relative paths
            shutil.copyfile(COMPOSE / source, place)
    env = {k: _interpolate(str(v), _env_example()) for k, v in broker["environment"].items()}
    command = list(broker["command"])
    assert command[0] == "-c" and command[-1] == "serve"
    settings = root / command[1].lstrip("/")
    done = cli("-c", str(settings), "config", "check", env=env)
    assert done.returncode == 0, done.stderr
    assert '"backend": "postgres"' in done.stdout
    assert '"mode": "offload"' in done.stdout
    assert not [secret for secret in _env_example().values() if secret in done.stdout]  # secrets never printed


def test_compose_nginx_configuration_passes_nginx_t(tmp_path: Path) -> None:
    nginx = require_binary("nginx", "the compose example's nginx.conf is checked by nginx -t")
    # Outside compose the service name "broker" does not resolve; loopback stands in for it.
    conf = (COMPOSE / "nginx.conf").read_text().replace("server broker:8080;", "server 127.0.0.1:8080;")
    assert "server 127.0.0.1:8080;" in conf
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(conf)
    done = subprocess.run(
        [nginx, "-t", "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf"), "-g", f"pid {tmp_path}/nginx.pid;"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    settings = yaml.safe_load((COMPOSE / "broker.yaml").read_text())
    location = settings["gateway"]["stores"]["genomes"]["offload_location"]
    assert f"location {location} {{" in conf and "internal;" in conf


def test_docker_compose_config_accepts_the_compose_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    plugin = docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)
    if not plugin or plugin.returncode != 0:
        pytest.skip("no docker compose CLI here: the YAML and schema tests above stand in for `docker compose config`")
    assert docker is not None
    (tmp_path / ".env").write_text((COMPOSE / ".env.example").read_text())
    done = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE / "compose.yaml"), "--env-file", str(tmp_path / ".env"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
