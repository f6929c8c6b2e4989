"""docs/settings.md is generated from the settings schema and kept current."""

from __future__ import annotations

from pathlib import Path

from broker.settings import Settings, reference_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_settings_reference_is_current() -> None:
    written = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert written == reference_markdown(), (
        "docs/settings.md is stale: run `python -m broker.settings > docs/settings.md`"
    )


def test_settings_reference_names_every_setting() -> None:
    text = reference_markdown()
    for key in ("store.backend", "gateway.stores.<name>.headers", "trust.visa_issuers[].jku", "oidc.require_pkce"):
        assert f"`{key}`" in text
    assert "source" not in [line.split("`")[1] for line in text.splitlines() if line.startswith("| `")]
    assert set(Settings.model_fields) - {"source"} <= {
        line.split("`")[1].split(".")[0].split("[")[0] for line in text.splitlines() if line.startswith("| `")
    } | {"server", "store", "keys", "limits", "trust", "policy", "oidc", "login", "dac", "gateway"}
