"""Hostile-input bounds, on by default (THREAT-MODEL section 1, DESIGN rule 5).

The ``limits:`` settings section. It lives in the core because the core's parsers and
verifiers are what these numbers bound; every other part reads them from here.
"""

from __future__ import annotations

from pydantic import Field

from broker.settings_model import SettingsModel


class LimitSettings(SettingsModel):
    """Bounds on tokens, visas and JSON, the clock leeway, and the verified-token cache size."""

    max_passport_bytes: int = Field(1_048_576, gt=0, description="Longest passport JWT accepted, in bytes.")
    max_visa_bytes: int = Field(16_384, gt=0, description="Longest visa JWT accepted, in bytes.")
    max_visas_per_passport: int = Field(200, gt=0, description="Most visas one passport or visa list may carry.")
    max_json_depth: int = Field(16, gt=0, description="Deepest nesting of JSON in a token or a request body.")
    max_url_claim_chars: int = Field(255, gt=0, description="Longest URL claim (source, URL values) in a visa.")
    clock_leeway_seconds: int = Field(
        60, ge=0, le=300, description="Clock skew tolerated on exp, iat and nbf (0 to 300 seconds)."
    )
    verified_cache_entries: int = Field(
        200_000, gt=0, description="Most verified tokens remembered per process (least recently used go first)."
    )
