"""Contract breaks the fuzz targets found in modules this branch may not edit (issue 11, "Fuzzing").

Each is written as the test its owner's fix must make pass, marked ``xfail(strict=True)``: it
fails today (so the suite stays green and the finding stays visible), and the day the module is
fixed the strict mark turns it into a failure that says "remove this mark and move the test to
the module's own folder". ``fuzz.targets.KNOWN_OUTSIDE_FINDINGS`` describes each; the fuzz
targets step over inputs that hit them so a campaign keeps finding new ones. The crashing inputs
are kept in fuzz/regressions/<target>/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.gateway.ranges import if_range_holds
from broker.settings import SettingsError, build_settings, load_settings
from fuzz.targets import KNOWN_OUTSIDE_FINDINGS, regression_inputs

HUGE_DATES = [
    "1 Jan 99999999999999999999 0:0 GMT",
    "Thu, 01 Jan 1970 00:00:99999999999999999999 GMT",
    "1 Jan 9555555555 0:0 GMT",
]


@pytest.mark.xfail(strict=True, reason=KNOWN_OUTSIDE_FINDINGS["ranges-if-range-overflow"])
@pytest.mark.parametrize("value", HUGE_DATES)
def test_if_range_with_an_absurd_date_means_send_the_whole_thing(value: str) -> None:
    """RFC 9110 13.1.5: an If-Range that is not a valid date is "send the whole thing", never a 500."""
    assert if_range_holds(value, '"etag-1"', 1_700_000_000.0) is False


def test_the_if_range_crash_inputs_are_kept_as_regressions() -> None:
    assert len(regression_inputs("ranges")) >= 10  # replayed by the short pass (tests/core/test_fuzz_short_pass.py)


@pytest.mark.xfail(strict=True, reason=KNOWN_OUTSIDE_FINDINGS["settings-non-string-top-key"])
@pytest.mark.parametrize("raw", [{1: "x"}, {None: None}, {("a",): 1}], ids=["int-key", "null-key", "tuple-key"])
def test_settings_with_a_non_string_top_key_are_a_settings_error(raw: dict) -> None:
    with pytest.raises(SettingsError):
        build_settings(raw, "broker.yaml")


@pytest.mark.xfail(strict=True, reason=KNOWN_OUTSIDE_FINDINGS["settings-yaml-constructor"])
@pytest.mark.parametrize(
    "text", ["issuer: 2001-02-30\n", "[" * 3000 + "\n"], ids=["impossible-date", "deep-flow-nesting"]
)
def test_settings_file_yaml_the_constructor_refuses_is_a_settings_error(text: str, tmp_path: Path) -> None:
    path = tmp_path / "broker.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError):
        load_settings(path, environ={})
