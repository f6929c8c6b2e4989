"""Command-line commands of broker.keys (registered by broker.cli)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add this area's commands to the ga4gh-broker parser (none yet)."""
