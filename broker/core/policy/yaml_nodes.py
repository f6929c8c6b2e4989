"""Reading policy YAML with its line numbers: a typed walk over PyYAML's composed nodes.

Why not ``yaml.safe_load``: a loaded dict forgets where each value was written, silently
keeps the last of two equal keys (a second ``EGAD0001:`` entry would replace the first), and
turns ``0123`` into 83. Here files are *composed* (``yaml.compose``), which keeps every
node's mark, and each field is read through :class:`Node`, which knows its file, line and
dotted field path, checks the expected shape and raises :class:`PolicyError` saying what was
expected. Text fields take the scalar exactly as written, so ``value: 0123`` is ``"0123"``;
``true``/``false``/``null`` are refused where text is expected (quote them if meant as text).
Merge keys (``<<``) are refused: a rule read a year later should show its fields written out.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from broker.core.policy.errors import PolicyError

try:  # libyaml is much faster on big files; both give the same nodes and marks
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"

MAX_FILE_BYTES = 16 * 1024 * 1024  # a policy file larger than this is a mistake, not a policy


def compose_file(path: Path, display: str) -> Node | None:
    """Read and compose one YAML file; ``None`` for an empty file. Raises :class:`PolicyError`."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PolicyError(display, 0, 0, "", f"file is {size} bytes; the limit is {MAX_FILE_BYTES}")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PolicyError(display, 0, 0, "", "file is not UTF-8 text") from None
    except OSError as exc:
        raise PolicyError(display, 0, 0, "", f"cannot read the file ({exc.__class__.__name__})") from None
    return compose_text(text, display)


def compose_text(text: str, display: str) -> Node | None:
    """Compose YAML text (one document); ``None`` when it holds nothing."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        line = mark.line + 1 if mark else 0
        column = mark.column + 1 if mark else 0
        raise PolicyError(display, line, column, "", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(display, 0, 0, "", f"invalid YAML: {exc.__class__.__name__}") from None
    if root is None or (isinstance(root, yaml.ScalarNode) and root.tag == _NULL):
        return None
    return Node(root, display, "")


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag
    if tag == _NULL:
        return "nothing (null)"
    if tag == _BOOL:
        return f"the boolean {node.value}"
    if tag in (_INT, _FLOAT):
        return f"the number {node.value}"
    return f"the text {node.value!r}"


@dataclass(frozen=True)
class Node:
    """One YAML node with where it was written (file, line, field path) and typed readers."""

    raw: yaml.Node
    file: str
    path: str

    @property
    def line(self) -> int:
        return self.raw.start_mark.line + 1

    @property
    def column(self) -> int:
        return self.raw.start_mark.column + 1

    def error(self, message: str, field: str | None = None) -> PolicyError:
        """A :class:`PolicyError` at this node (or naming a sub-field of it)."""
        return PolicyError(self.file, self.line, self.column, self.path if field is None else field, message)

    def child(self, raw: yaml.Node, name: str) -> Node:
        path = f"{self.path}.{name}" if self.path and not name.startswith("[") else f"{self.path}{name}"
        return Node(raw, self.file, path)

    @property
    def is_null(self) -> bool:
        return isinstance(self.raw, yaml.ScalarNode) and self.raw.tag == _NULL

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.raw, yaml.MappingNode)

    @property
    def is_list(self) -> bool:
        return isinstance(self.raw, yaml.SequenceNode)

    @property
    def is_scalar(self) -> bool:
        return isinstance(self.raw, yaml.ScalarNode)

    def describe(self) -> str:
        return _describe(self.raw)

    # ------------------------------------------------------------------ readers

    def text(self, what: str = "text") -> str:
        """A scalar exactly as written (numbers keep their spelling). Empty text is refused."""
        raw = self.raw
        if not isinstance(raw, yaml.ScalarNode) or raw.tag not in (_STR, _INT, _FLOAT):
            hint = " (put it in quotes if you mean the text)" if isinstance(raw, yaml.ScalarNode) else ""
            raise self.error(f"expected {what}, got {self.describe()}{hint}")
        if raw.value == "":
            raise self.error(f"expected {what}, got empty text")
        return str(raw.value)

    def texts(self, what: str = "text") -> list[tuple[str, Node]]:
        """One text or a non-empty list of texts, each with its node (for its line)."""
        if self.is_list:
            items = self.items()
            if not items:
                raise self.error(f"expected {what} or a list of them, got an empty list")
            return [(item.text(what), item) for item in items]
        return [(self.text(what), self)]

    def boolean(self) -> bool:
        raw = self.raw
        if isinstance(raw, yaml.ScalarNode) and raw.tag == _BOOL:
            return raw.value.lower() in ("true", "yes", "on")
        raise self.error(f"expected true or false, got {self.describe()}")

    def items(self) -> list[Node]:
        """The elements of a list."""
        raw = self.raw
        if not isinstance(raw, yaml.SequenceNode):
            raise self.error(f"expected a list, got {self.describe()}")
        return [self.child(item, f"[{index}]") for index, item in enumerate(raw.value)]

    def entries(self, what: str = "a mapping") -> Iterator[tuple[str, Node, Node]]:
        """``(key text, key node, value node)`` of a mapping; duplicate keys are refused."""
        raw = self.raw
        if not isinstance(raw, yaml.MappingNode):
            raise self.error(f"expected {what}, got {self.describe()}")
        seen: dict[str, int] = {}
        for key_raw, value_raw in raw.value:
            key_node = Node(key_raw, self.file, self.path)
            if isinstance(key_raw, yaml.ScalarNode) and key_raw.tag == _MERGE:
                raise key_node.error("merge keys (<<) are not supported; write the fields out")
            key = key_node.text("a name")
            if key in seen:
                raise key_node.error(
                    f"{key!r} is written twice (first on line {seen[key]})", field=self.child(value_raw, key).path
                )
            seen[key] = key_node.line
            yield key, key_node, self.child(value_raw, key)

    def fields(
        self, allowed: Collection[str], required: Collection[str] = (), what: str = "a mapping"
    ) -> dict[str, Node]:
        """A mapping whose keys must be among ``allowed``; every name in ``required`` must be present."""
        out: dict[str, Node] = {}
        for key, key_node, value in self.entries(what):
            if key not in allowed:
                raise key_node.error(_unknown_field_message(key, allowed), field=value.path)
            out[key] = value
        missing = [name for name in required if name not in out]
        if missing:
            raise self.error(f"missing required field {missing[0]!r}")
        return out


def _unknown_field_message(key: str, allowed: Collection[str]) -> str:
    known = sorted(allowed)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field {key!r} (expected one of: {', '.join(known)}){hint}"
