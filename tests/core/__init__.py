"""Tests of broker.core (pure GA4GH logic), driven in part by tests/data/ga4gh/vectors.json."""
