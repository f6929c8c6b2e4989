"""The base every settings section is declared with, and the error a cross-field rule raises.

Each area owns its settings model (``broker/<area>/settings.py``); :mod:`broker.settings`
composes them into the root model, loads the YAML file and the ``BROKER_*`` overrides, and
turns every mistake into one line naming the file, the key and what was expected.

Sections are pydantic models that are frozen (settings never change in a running process),
strict (a YAML string is not an integer, ``yes`` is not a boolean) and closed (an unknown key
is a mistake, never ignored). Secrets are :class:`pydantic.SecretStr`: they print as ``***``
and only the code that uses one calls ``get_secret_value()``.

Rules a type cannot say (a dataset names an existing store, two DACs never share a source)
are functions of each area, called by the root model with the key path of the section; they
raise :class:`SettingsProblem`, which pydantic lets through untouched (it is not a
``ValueError``), so the loader can name the exact key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from broker.errors import StartupError


class SettingsModel(BaseModel):
    """Base of every settings section: frozen, strict, no unknown keys."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid", validate_default=False)


class SettingsProblem(StartupError):
    """A cross-field rule is broken at ``key`` (a dotted path such as ``gateway.datasets.ds1.store``)."""

    code = "settings_error"

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.detail = message
