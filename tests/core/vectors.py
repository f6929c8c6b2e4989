"""Load the GA4GH test vectors kept in the repository (tests/data/ga4gh/vectors.json).

The file is a copy of the team's shared vectors; tests read only this copy.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

VECTORS_PATH = Path(__file__).resolve().parent.parent / "data" / "ga4gh" / "vectors.json"


@lru_cache(maxsize=1)
def _by_id() -> dict[str, dict[str, Any]]:
    document = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    examples = document["examples"]
    by_id = {example["id"]: example for example in examples}
    if len(by_id) != len(examples):
        raise ValueError(f"{VECTORS_PATH} has duplicate vector ids")
    return by_id


def vector(vector_id: str) -> dict[str, Any]:
    """One vector (``id``, ``kind``, ``ref``, ``note``, ``data``, maybe ``expected``); KeyError if absent."""
    return _by_id()[vector_id]


def data(vector_id: str) -> Any:
    """The ``data`` member of one vector."""
    return vector(vector_id)["data"]


def ids_with_prefix(prefix: str) -> list[str]:
    """Ids of every vector whose id starts with ``prefix``, in file order."""
    return [vector_id for vector_id in _by_id() if vector_id.startswith(prefix)]
