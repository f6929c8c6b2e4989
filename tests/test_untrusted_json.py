"""The non-recursive JSON nesting bound that runs before any json.loads of hostile input."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.core.untrusted_json import exceeds_depth


def depth_of(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


def test_hostile_hundred_thousand_levels_is_refused_without_recursion() -> None:
    assert exceeds_depth("[" * 100_000, 16)
    assert exceeds_depth('{"a":' * 50_000, 16)


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"keys": ["[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", '\\"[[[[[[[[[[[[[[[[[[[[[[[']})
    assert not exceeds_depth(text, 3)


def test_exact_boundary() -> None:
    assert not exceeds_depth("[" * 16 + "]" * 16, 16)
    assert exceeds_depth("[" * 17 + "]" * 17, 16)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\ab'), children, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(json_values, st.integers(min_value=0, max_value=8))
def test_agrees_with_the_parsed_depth(value: object, limit: int) -> None:
    assert exceeds_depth(json.dumps(value), limit) == (depth_of(value) > limit)
