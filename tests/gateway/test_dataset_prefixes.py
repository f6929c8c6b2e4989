"""Issue 6: two datasets on one store never reach the same object.

``gateway.datasets.*.prefix`` defaults to the whole store; with two datasets on one store and
empty, equal or nested prefixes, ``/data/PUB/DS2/secret.bam`` served DS2's file under PUB's
policy. The settings check refuses such a configuration, so ``config check`` and start-up do.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from broker.settings import SettingsError, build_settings

STORES = {
    "local": {"kind": "directory", "path": "/srv/genomes"},
    "other": {"kind": "directory", "path": "/srv/other"},
    "web": {"kind": "http", "base_url": "https://objects.example/o/"},
}


def gateway(datasets: dict[str, Any]) -> dict[str, Any]:
    return {"gateway": {"stores": STORES, "datasets": datasets}}


@pytest.mark.parametrize(
    "datasets,inner,outer",
    [
        ({"PUB": {"store": "local"}, "DS2": {"store": "local", "prefix": "PUB/DS2"}}, "DS2", "PUB"),  # the issue
        ({"PUB": {"store": "local"}, "DS2": {"store": "local"}}, "DS2", "PUB"),  # two whole-store datasets
        ({"A": {"store": "local", "prefix": "a"}, "B": {"store": "local", "prefix": "a"}}, "B", "A"),
        ({"A": {"store": "local", "prefix": "a"}, "B": {"store": "local", "prefix": "a/b"}}, "B", "A"),
        ({"B": {"store": "local", "prefix": "a/b/c"}, "A": {"store": "local", "prefix": "a"}}, "A", "B"),
        ({"A": {"store": "web", "prefix": "x/y"}, "B": {"store": "web", "prefix": "x"}}, "B", "A"),
    ],
    ids=["issue-6-empty-and-nested", "two-empty", "equal", "nested", "contains", "http-store"],
)
def test_overlapping_dataset_prefixes_on_one_store_are_refused(
    datasets: dict[str, Any], inner: str, outer: str
) -> None:
    with pytest.raises(SettingsError) as info:
        build_settings(gateway(datasets), "gw.yaml")
    error = info.value
    assert error.key == f"gateway.datasets.{inner}.prefix"
    message = str(error)
    assert "\n" not in message
    assert f"dataset {inner!r}" in message and f"dataset {outer!r}" in message


@pytest.mark.parametrize(
    "datasets",
    [
        {"A": {"store": "local", "prefix": "a"}, "B": {"store": "local", "prefix": "ab"}},  # segments, not strings
        {"A": {"store": "local", "prefix": "a/b"}, "B": {"store": "local", "prefix": "a/c"}},  # siblings
        {"A": {"store": "local"}, "B": {"store": "other"}},  # whole stores, but two stores
        {"A": {"store": "local", "prefix": "x"}, "B": {"store": "web", "prefix": "x"}},
        {"A": {"store": "local", "prefix": "a.b"}, "B": {"store": "local", "prefix": "a"}},
    ],
    ids=["string-prefix-is-not-nesting", "siblings", "two-stores", "same-prefix-other-store", "dot-in-name"],
)
def test_disjoint_dataset_prefixes_are_accepted(datasets: dict[str, Any]) -> None:
    settings = build_settings(gateway(datasets), "gw.yaml")
    assert set(settings.gateway.datasets) == set(datasets)


def test_config_check_refuses_nested_dataset_prefixes_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text(
        "gateway:\n"
        "  stores: {local: {kind: directory, path: /srv/genomes}}\n"
        "  datasets:\n"
        "    PUB: {store: local}\n"
        "    DS2: {store: local, prefix: PUB/DS2}\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "broker", "-c", str(config), "config", "check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "gateway.datasets.DS2.prefix" in lines[0] and "'PUB'" in lines[0] and "'DS2'" in lines[0]
