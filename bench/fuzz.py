#!/usr/bin/env python
"""Fuzz every hostile-input boundary of the broker for a bounded number of executions (atheris).

The same campaign as ``python -m fuzz.run campaign`` (see fuzz/run.py and fuzz/targets.py for
the targets and the contract each one asserts), with the defaults of the out-of-CI run:

    nice -n 10 .venv/bin/python bench/fuzz.py --total 10000000 --work var/fuzz

Each target gets its share of ``--total`` (fast parsers more, the verifier and the loaders
less), runs in its own process from its seeds, its regression inputs (fuzz/regressions/) and the
corpus earlier runs left in ``--work``, and its crashes are listed with the input saved under
``<work>/crashes/``. The exit status is 1 when anything crashed. CI runs a short pass of every
target instead (tests/core/test_fuzz_short_pass.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    """Run the campaign with this script's arguments (``--total`` is required)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # run as a script from anywhere: the fuzz package is at the root
    from fuzz.run import main as fuzz_main

    return fuzz_main(["campaign", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
