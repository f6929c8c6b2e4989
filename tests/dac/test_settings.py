"""DAC and visa-source settings: sections of the root settings, cross-field rules with exact keys."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from broker.dac.committees import Directory
from broker.dac.settings import DacEntrySettings, DacSettings, check_dac_settings
from broker.settings import SettingsError, build_settings
from broker.settings_model import SettingsProblem
from broker.visas.settings import VisaSourceSettings, check_visa_sources
from tests.dac.conftest import ISSUER

YAML = """
issuer: https://broker.example/
dac:
  admins: [root]
  dataset_url_template: https://data.example/ds/{dataset}
  visa_lifetime_seconds: 900
  committees:
    - id: A
      name: Genomes DAC
      source: https://dac.example/A
      datasets: [EGAD-1]
      dataset_patterns: ["EGAD-A*"]
      members:
        - {identity: alice, role: chair}
        - {identity: bob}
visa_sources:
  - name: rems
    url: https://rems.example/api/permissions/{user}
    send: upstream_sub
    upstream_issuer: https://login.elixir-czech.org/oidc/
    auth_header: Bearer s3cret
    timeout_seconds: 2
"""


def test_sections_load_through_the_root_settings() -> None:
    settings = build_settings(yaml.safe_load(YAML), "file.yaml")
    dac = settings.dac
    assert dac.visa_lifetime_seconds == 900 and dac.admins == ["root"]
    entry = dac.committees[0]
    assert (entry.id, entry.name, entry.members[0].role, entry.members[1].role) == (
        "A",
        "Genomes DAC",
        "chair",
        "member",
    )
    check_dac_settings(dac, settings.issuer)
    sources = settings.visa_sources
    assert sources[0].send == "upstream_sub" and sources[0].timeout_seconds == 2.0
    assert sources[0].auth_header is not None and sources[0].auth_header.get_secret_value() == "Bearer s3cret"
    check_visa_sources(sources, allow_http_loopback=False)
    directory = Directory(dac, settings.issuer)
    assert directory.governing("EGAD-A7").id == "A"  # type: ignore[union-attr]
    assert directory.get("A").dataset_url("EGAD-1/x y") == "https://data.example/ds/EGAD-1%2Fx%20y"  # type: ignore


def test_loading_names_the_key_of_a_mistake() -> None:
    with pytest.raises(SettingsError) as info:
        build_settings({"dac": {"committees": [{"id": "A"}]}}, "f.yaml")
    assert info.value.key == "dac.committees[0].source" and info.value.source == "f.yaml"
    with pytest.raises(SettingsError) as info:
        build_settings(
            {"visa_sources": [{"name": "x", "url": "https://a/{user}", "timeout_seconds": "soon"}]}, "f.yaml"
        )
    assert info.value.key == "visa_sources[0].timeout_seconds"
    defaults = build_settings({}, "f.yaml")
    assert defaults.visa_sources == [] and defaults.dac == DacSettings()


def _dac(*entries: DacEntrySettings, **kw: Any) -> DacSettings:
    return DacSettings(committees=list(entries), **kw)


A = DacEntrySettings(id="A", source="https://dac.example/A", datasets=["D1"])


@pytest.mark.parametrize(
    ("dac", "key"),
    [
        (_dac(DacEntrySettings(id="A", source="http://dac.example/A")), "dac.committees[0].source"),
        (_dac(DacEntrySettings(id="A", source="https://dac.example/" + "x" * 240)), "dac.committees[0].source"),
        (_dac(DacEntrySettings(id="A", source="https://dac example/A")), "dac.committees[0].source"),
        (_dac(A, DacEntrySettings(id="A", source="https://dac.example/B")), "dac.committees[1].id"),
        (_dac(A, DacEntrySettings(id="B", source="https://dac.example/A")), "dac.committees[1].source"),
        (
            _dac(A, DacEntrySettings(id="B", source="https://dac.example/B", datasets=["D1"])),
            "dac.committees[1].datasets[0]",
        ),
        (
            _dac(A, DacEntrySettings(id="B", source="https://dac.example/B", dataset_patterns=["D*"])),
            "dac.committees[1].dataset_patterns[0]",
        ),
        (_dac(DacEntrySettings(id="bad id", source="https://dac.example/A")), "dac.committees[0].id"),
        (
            _dac(DacEntrySettings(id="A", source="https://dac.example/A", datasets=["ga4gh-broker:x"])),
            "dac.committees[0].datasets[0]",
        ),
        (_dac(A, dataset_url_template="https://data.example/ds"), "dac.dataset_url_template"),
        (_dac(A, dataset_url_template="http://data.example/{dataset}"), "dac.dataset_url_template"),
    ],
)
def test_dac_cross_field_rules(dac: DacSettings, key: str) -> None:
    with pytest.raises(SettingsProblem) as info:
        check_dac_settings(dac, ISSUER)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"url": "https://rems.example/api/permissions"}, "url"),
        ({"url": "https://{user}.example/x"}, "url"),
        ({"url": "http://rems.example/p/{user}"}, "url"),
        ({"url": "http://127.0.0.1:9/p/{user}"}, "url"),  # loopback http only when allowed
        ({"send": "upstream_sub"}, "upstream_issuer"),
        ({"name": "two words"}, "name"),
        ({"auth_header": "Bearer x\r\nX-Evil: 1"}, "auth_header"),
    ],
)
def test_visa_source_rules(changes: dict[str, Any], key: str) -> None:
    base = {"name": "rems", "url": "https://rems.example/p/{user}", **changes}
    with pytest.raises(SettingsProblem) as info:
        check_visa_sources([VisaSourceSettings.model_validate(base, strict=False)], allow_http_loopback=False)
    assert info.value.key == f"visa_sources[0].{key}"


def test_overlapping_patterns_govern_nothing() -> None:
    dac = _dac(
        DacEntrySettings(id="A", source="https://dac.example/A", dataset_patterns=["X-*"]),
        DacEntrySettings(id="B", source="https://dac.example/B", dataset_patterns=["X-1*"]),
    )
    check_dac_settings(dac, ISSUER)  # a type check cannot see glob overlap
    directory = Directory(dac, ISSUER)
    assert directory.governing("X-2").id == "A"  # type: ignore[union-attr]
    assert directory.governing("X-10") is None  # both match: nobody governs it (fail closed)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"dac": {"visa_lifetime_seconds": 0}}, "dac.visa_lifetime_seconds"),
        (
            {"visa_sources": [{"name": "r", "url": "https://r.example/p/{user}", "timeout_seconds": 0.0}]},
            "visa_sources[0].timeout_seconds",
        ),
    ],
)
def test_type_bounds_name_the_key(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(SettingsError) as info:
        build_settings(raw, "f.yaml")
    assert info.value.key == key


def test_area_settings_modules_do_not_import_the_root_settings() -> None:
    """The root settings compose the areas' sections; no section module may import it back."""
    import subprocess
    import sys

    code = (
        "import sys, broker.dac.settings, broker.visas.settings, broker.gateway.settings; "
        "assert 'broker.settings' not in sys.modules, sorted(m for m in sys.modules if m.startswith('broker'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
