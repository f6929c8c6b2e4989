"""What every command gets (:class:`Context`) and how it fails (:class:`CommandError`).

Kept apart from :mod:`broker.cli` so that command modules import it without importing the
parser that imports them.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.errors import BrokerError
from broker.settings import Settings, load_settings
from broker.store import open_kernel
from broker.store.base import StoreError
from broker.store.kernel import Kernel


class CommandError(BrokerError):
    """A command failed in a way a person can act on; ``exit_status`` is the process's exit code."""

    code = "command_failed"

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = status


@dataclass
class Context:
    """What a command gets: parsed args and lazily loaded settings."""

    args: argparse.Namespace
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.args.config)
        return self._settings

    @contextmanager
    def kernel(self) -> Iterator[Kernel]:
        """The store kernel the settings name, closed afterwards; a store failure is one line (CommandError)."""
        settings = self.settings
        try:
            kernel = open_kernel(settings.store, settings.sqlite_path)
        except StoreError as exc:
            raise CommandError(f"store: {exc}") from None
        try:
            yield kernel
        except StoreError as exc:
            raise CommandError(f"store: {exc}") from None
        finally:
            kernel.close()

    def missing_store(self) -> Path | None:
        """The SQLite file the settings name when it does not exist (a reader must not create it), else None."""
        settings = self.settings
        if settings.store.backend != "sqlite":
            return None
        path = Path(settings.store.path) if settings.store.path else settings.sqlite_path
        return None if path.is_file() else path

    def out(self, text: str = "") -> None:
        print(text)

    def out_json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, sort_keys=False))


Handler = Callable[[Context], int | None]
