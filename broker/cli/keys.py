"""``ga4gh-broker keys rotate [--immediate]`` and ``keys list [--json]``.

Both act on the same key ring the server uses (same settings, same storage); a running
server picks up a rotation within about a second, with no restart.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from broker.cli.context import CommandError
from broker.keys.errors import KeyRingError
from broker.keys.ring import KeyRing, KeyState, iso_utc

if TYPE_CHECKING:
    from broker.cli.context import Context

TIME_FIELDS = ("created_at", "not_before", "retired_at", "remove_after")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``keys rotate`` and ``keys list`` to the ga4gh-broker parser."""
    keys = sub.add_parser("keys", help="signing key ring: rotate, list")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    keys_sub.required = True

    rotate = keys_sub.add_parser(
        "rotate",
        help="publish a new signing key; it signs after keys.publish_ahead_seconds",
        description=(
            "Publish a new key now; it starts signing after keys.publish_ahead_seconds and the current key "
            "stays published until every token it signed has expired. If a new key is already waiting, "
            "nothing changes. --immediate: the new key signs at once (use when a key may be compromised)."
        ),
    )
    rotate.add_argument("--immediate", action="store_true", help="sign with the new key at once (emergency)")
    rotate.set_defaults(handler=_rotate)

    listing = keys_sub.add_parser("list", help="the keys of the ring with their state and dates (UTC)")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_list)


@contextmanager
def _ring(ctx: Context) -> Iterator[KeyRing]:
    """The ring of these settings, with its store closed afterwards and errors made one line."""

    settings = ctx.settings
    with ctx.kernel() as kernel:
        try:
            yield KeyRing.open(
                settings.keys,
                settings.keys_path,
                kernel,
                leeway_seconds=settings.limits.clock_leeway_seconds,
                auto_maintain_seconds=None,
            )
        except KeyRingError as exc:
            raise CommandError(f"keys: {exc}") from None


def _rotate(ctx: Context) -> int:
    with _ring(ctx) as ring:
        before = {s.kid for s in ring.states()}
        state = ring.rotate(immediate=ctx.args.immediate)
    if state.kid in before:
        ctx.out(
            f"a rotation is already waiting: {state.kid} ({state.alg}) signs from {iso_utc(state.not_before)}; "
            "nothing changed (use --immediate to sign with a new key now)"
        )
    elif state.state == "active":
        ctx.out(
            f"new key {state.kid} ({state.alg}) signs from now; "
            "the previous key stays published until its tokens expire"
        )
    else:
        ctx.out(f"new key {state.kid} ({state.alg}) published now, signs from {iso_utc(state.not_before)}")
    return 0


def _as_json(state: KeyState) -> dict[str, object]:
    data: dict[str, object] = dataclasses.asdict(state)
    for name in TIME_FIELDS:
        data[name] = iso_utc(getattr(state, name))
    return data


def _list(ctx: Context) -> int:
    with _ring(ctx) as ring:
        states = ring.states()
    if ctx.args.json:
        ctx.out_json({"keys": [_as_json(s) for s in states]})
        return 0
    if not states:
        ctx.out("no keys yet (the server creates the first one on start, or run `ga4gh-broker keys rotate`)")
        return 0
    header = ("KID", "ALG", "STATE", "CREATED", "SIGNS FROM", "RETIRED", "REMOVE AFTER")
    rows = [header] + [
        (s.kid, s.alg, s.state, *(iso_utc(getattr(s, name)) or "-" for name in TIME_FIELDS)) for s in states
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        ctx.out("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0
