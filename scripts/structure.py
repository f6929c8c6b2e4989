"""Print structural counts of ``broker/``: imports inside functions, import cycles between
modules, pairs of packages that import each other, and lines per package.

Usage: ``python scripts/structure.py [--check] [broker]``. With ``--check`` it exits 1 when
any unexplained inner import, cycle or mutual package pair is left. Counted with an ``ast`` walk; an import under
``if TYPE_CHECKING:`` is not a runtime edge and is left out of the cycle count. An import inside a
function is *explained* when its line, or the comment line just above it, says ``optional`` (the
only allowed reason: an optional backend or a heavy optional dependency); the others are listed.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for sub in ast.walk(child):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def main(root: Path) -> int:
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        modules[module_name(path, root)] = path
    edges: dict[str, set[str]] = defaultdict(set)
    inner = 0
    inner_sites: list[str] = []
    explained = 0
    lines: dict[str, int] = defaultdict(int)
    top = root.name
    for module, path in modules.items():
        text = path.read_text()
        source_lines = text.splitlines()
        tree = ast.parse(text)
        package = ".".join(module.split(".")[:2])
        lines[package] += len(text.splitlines())
        typing_only = _type_checking_lines(tree)
        in_function: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        in_function.add(id(sub))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = resolve(module, node, path.name == "__init__.py")
                targets = [base]
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        targets.append(f"{base}.{alias.name}")
            if id(node) in in_function:
                inner += 1
                here = source_lines[node.lineno - 1]
                above = source_lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                if "optional" in here.partition("#")[2] or (above.startswith("#") and "optional" in above):
                    explained += 1
                else:
                    inner_sites.append(f"{path}:{node.lineno}")
            if node.lineno in typing_only:
                continue
            for target in targets:
                if target.split(".")[0] == top and target in modules and target != module:
                    edges[module].add(target)
    # Strongly connected components (Tarjan) of the module graph: each one of size > 1 is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    sccs: list[list[str]] = []
    counter = [0]

    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in modules:
        if v not in index:
            visit(v)
    packages: dict[str, set[str]] = defaultdict(set)
    for a, targets in edges.items():
        for b in targets:
            pa, pb = ".".join(a.split(".")[:2]), ".".join(b.split(".")[:2])
            if pa != pb:
                packages[pa].add(pb)
    mutual = sorted({tuple(sorted((a, b))) for a, bs in packages.items() for b in bs if a in packages.get(b, ())})
    print(f"imports inside functions: {inner} ({explained} for an optional backend or dependency, said in a comment)")
    print(f"unexplained imports inside functions: {len(inner_sites)}")
    for site in inner_sites:
        print(f"  {site}")
    print(f"import cycles (strongly connected module groups): {len(sccs)}")
    for comp in sccs:
        print(f"  {' <-> '.join(comp)}")
    print(f"packages that import each other: {len(mutual)}")
    for a, b in mutual:
        print(f"  {a} <-> {b}")
    print("lines per package:")
    for package in sorted(lines):
        print(f"  {package}: {lines[package]}")
    return 1 if inner_sites or sccs or mutual else 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--check"]
    status = main(Path(args[0] if args else "broker").resolve())
    sys.exit(status if "--check" in sys.argv[1:] else 0)
