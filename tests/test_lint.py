"""The tree is ruff clean (configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tree_is_ruff_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_tree_is_ruff_formatted() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", str(ROOT)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_layers_hold() -> None:
    """The layer contracts of pyproject.toml ([tool.importlinter]) all hold."""
    result = subprocess.run(
        [_lint_imports(), "--no-cache"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _lint_imports() -> str:
    """The lint-imports command of the interpreter running the tests."""
    return str(Path(sys.executable).parent / "lint-imports")


# Each area's Flask adapter and the modules that may import it (the area's init or gateway/wiring.py registers it).
WEB_ADAPTERS = {
    "broker.dac": ({"broker.dac.web"}, set()),
    "broker.oidc": ({"broker.oidc.web"}, set()),
    "broker.login": ({"broker.login.web"}, set()),
    "broker.gateway": (
        {"broker.gateway.routes", "broker.gateway.drs", "broker.gateway.htsget_routes", "broker.gateway.lean"},
        {"broker.gateway.wiring"},
    ),
}


def test_in_each_area_the_web_adapter_sits_above_the_services() -> None:
    """No service module of an area imports that area's web adapter (views -> services, never back)."""
    import grimp  # the import graph library of import-linter, a test dependency

    graph = grimp.build_graph("broker", exclude_type_checking_imports=True)
    offenders = []
    for area, (adapters, allowed) in WEB_ADAPTERS.items():
        web = {m for a in adapters for m in ({a} | graph.find_descendants(a) if a in graph.modules else {a})}
        for module in {area} | graph.find_descendants(area):
            if module in web or module in allowed:
                continue
            for target in graph.find_modules_directly_imported_by(module):
                if target in web:
                    offenders.append(f"{module} -> {target}")
    assert not offenders, "\n".join(sorted(offenders))


def test_types_check_with_mypy() -> None:
    """mypy finds no error in broker/ (configured in pyproject.toml: strict on core, store, trust, net)."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_no_lazy_import_holds_the_graph_and_no_import_cycle() -> None:
    """Imports inside functions are only for an optional backend (said in a comment); no module
    cycle and no pair of packages importing each other (issue 10's rules, counted by the script
    that printed its figures)."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "structure.py"), "--check", str(ROOT / "broker")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
