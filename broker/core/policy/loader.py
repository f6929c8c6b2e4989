"""Load a policy directory: read every ``*.yaml``/``*.yml`` file in it, validate, compile.

Only files directly in the directory are rules; sub-directories (``personas/``, ``tests/``)
hold persona tests and are read by ``personas.py``. Each file is read once as bytes: the
same bytes are parsed and hashed, so the policy ``version`` (``sha256:`` of every file name
and content, 16 hex digits) identifies exactly the rules in force, for audit and for
``policy diff``. Every mistake in every file is collected and raised together as
:class:`PolicyLoadError`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from broker.core.policy.compile import PolicySet, compile_policy
from broker.core.policy.errors import PolicyError, PolicyLoadError
from broker.core.policy.language import FileContent, parse_file
from broker.core.policy.yaml_nodes import MAX_FILE_BYTES, compose_text

POLICY_SUFFIXES = (".yaml", ".yml")


def policy_files(directory: Path) -> list[Path]:
    """The rule files of a policy directory, in name order."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in POLICY_SUFFIXES)


def load_policy(directory: str | Path) -> PolicySet:
    """Load and compile every rule file of ``directory``; raises :class:`PolicyLoadError`."""
    root = Path(directory)
    if not root.is_dir():
        raise PolicyLoadError([PolicyError(str(root), 0, 0, "", "policy directory not found")])
    paths = policy_files(root)
    if not paths:
        raise PolicyLoadError([PolicyError(str(root), 0, 0, "", "no policy files (*.yaml) in this directory")])
    errors: list[PolicyError] = []
    contents: list[FileContent] = []
    digest = hashlib.sha256()
    for path in paths:
        display = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            errors.append(PolicyError(display, 0, 0, "", f"cannot read the file ({exc.__class__.__name__})"))
            continue
        digest.update(path.name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "big") + data)
        if len(data) > MAX_FILE_BYTES:
            errors.append(PolicyError(display, 0, 0, "", f"file is {len(data)} bytes; the limit is {MAX_FILE_BYTES}"))
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            errors.append(PolicyError(display, 0, 0, "", "file is not UTF-8 text"))
            continue
        try:
            node = compose_text(text, display)
        except PolicyError as exc:
            errors.append(exc)
            continue
        if node is None:
            contents.append(FileContent(display))
            continue
        contents.append(parse_file(node, errors))
    version = "sha256:" + digest.hexdigest()[:16]
    return compile_policy(
        contents, version=version, directory=str(root), files=tuple(str(p) for p in paths), errors=errors
    )
