"""Every GA4GH test vector drives a check under its own pytest id (issue 11, item 14).

The vector ids of tests/data/ga4gh/vectors.json are the registry; the tests that use them are
found by what pytest itself collects from every test module that reads the vectors: a vector
counts as used when some collected test has a parameter id equal to the vector id, or starting
with it and a ``-`` (``pattern-matching-vectors-3``, ``visa-jwt-template-v1.2-JWT-True``). A
vector read without being a parameter, or not read at all, fails this test by name.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.core.vectors import VECTORS_PATH

ROOT = Path(__file__).resolve().parents[2]
_READS_VECTORS = re.compile(r"from tests\.core\.vectors import|from tests\.core import vectors")
_PARAM_ID = re.compile(r"\[(.*)\]$")


def vector_ids() -> list[str]:
    return [example["id"] for example in json.loads(VECTORS_PATH.read_text(encoding="utf-8"))["examples"]]


def modules_reading_vectors() -> list[Path]:
    here = Path(__file__).resolve()
    return sorted(
        path
        for path in (ROOT / "tests").rglob("test_*.py")
        if path.resolve() != here and _READS_VECTORS.search(path.read_text(encoding="utf-8"))
    )


def collected_parameter_ids(modules: list[Path]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *map(str, modules)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    ids = []
    for line in done.stdout.splitlines():
        match = _PARAM_ID.search(line.strip()) if "::" in line else None
        if match:
            ids.append(match.group(1))
    return ids


def test_every_vector_id_drives_a_test_under_its_own_id() -> None:
    ids = vector_ids()
    assert len(ids) == len(set(ids)) and len(ids) >= 48
    modules = modules_reading_vectors()
    assert any(m.name == "test_verify_vectors.py" for m in modules), modules
    params = collected_parameter_ids(modules)
    unused = [vid for vid in ids if not any(p == vid or p.startswith(vid + "-") for p in params)]
    assert unused == [], f"vectors that drive no test under their own id: {unused}"
