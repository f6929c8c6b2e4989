"""``ga4gh-broker`` with the client's commands added, as the lead will wire them (COMMAND_MODULES).

Run as ``python -m tests.client.run_cli ARGS``; the tests start it as a real process.
"""

from __future__ import annotations

import sys

import broker.cli as cli


def main() -> int:
    if "broker.client.commands" not in cli.COMMAND_MODULES:
        cli.COMMAND_MODULES = (*cli.COMMAND_MODULES, "broker.client.commands")  # type: ignore[assignment]
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
