"""``replace`` for settings models and dataclasses alike, validated like a loaded file."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from pydantic import BaseModel

T = TypeVar("T")


def replace(value: T, **changes: Any) -> T:
    """A copy of ``value`` with ``changes``: a settings model is validated again (secrets given as
    text become ``SecretStr``, cross-field rules run); a dataclass goes through ``dataclasses.replace``."""
    if isinstance(value, BaseModel):
        data = {name: getattr(value, name) for name in type(value).model_fields}
        data.update(changes)
        return type(value).model_validate(data, strict=False)
    return dataclasses.replace(value, **changes)  # type: ignore[type-var]


def unchecked(value: BaseModel, **changes: Any) -> Any:
    """A copy of the settings model ``value`` with ``changes``, NOT validated: for tests that hand a
    lower layer a configuration the loader would refuse, to prove that layer defends itself too."""
    return value.model_copy(update=changes)
