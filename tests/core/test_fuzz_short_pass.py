"""A short atheris pass of every fuzz target (fuzz/targets.py), so CI runs each one.

Each target runs in its own process (coverage instrumentation and the verifier target's network
guard stay out of this one) for a few hundred executions from its seeds and every input in
fuzz/regressions/<target>/ (libFuzzer runs the whole corpus first), and must finish clean: any
broken contract is an uncaught exception there and a non-zero exit here. The long run is
``bench/fuzz.py`` (outside CI).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import TARGETS, regression_inputs, write_corpus
from tests.support.parts import in_ci

ROOT = Path(__file__).resolve().parents[2]
RUNS = 300


def require_atheris() -> None:
    if importlib.util.find_spec("atheris") is None:
        message = "REAL PART MISSING: the atheris fuzzer is not installed (pip install -e '.[test]')"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_short_pass_keeps_its_contract(name: str, tmp_path: Path) -> None:
    require_atheris()
    corpus = tmp_path / "corpus"
    write_corpus(name, corpus)
    seeded = len(list(corpus.iterdir()))
    assert seeded >= len(TARGETS[name].seeds()) > 0
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fuzz.run",
            "one",
            name,
            f"-runs={RUNS}",
            "-seed=1",
            "-timeout=20",
            "-max_total_time=60",
            "-print_final_stats=1",
            f"-artifact_prefix={tmp_path}/crash-",
            str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    tail = done.stderr[-3000:]
    assert done.returncode == 0, f"{name} broke its contract:\n{tail}"
    executed = [int(n) for n in re.findall(r"stat::number_of_executed_units:\s*(\d+)", done.stderr)]
    assert executed and executed[-1] >= min(RUNS, seeded), tail


def test_every_regression_input_belongs_to_a_target() -> None:
    folder = ROOT / "fuzz" / "regressions"
    names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    assert set(names) <= set(TARGETS), names
    assert all(regression_inputs(n) for n in names)
