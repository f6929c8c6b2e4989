"""SHA-256 checksums of objects for DRS, computed once per object version.

Hashing a 30 GB CRAM takes tens of seconds, so a checksum is cached under the object's
version (size and mtime for files, size and validators for HTTP objects): in memory per
process, and optionally in a folder shared by every process on the machine (one small
file per object version, written to a temporary name and renamed so readers never see
half a record). An object without a usable version (an upstream with neither ETag nor
Last-Modified) is hashed on each request rather than cached wrongly.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

_HEX64 = re.compile(r"[0-9a-f]{64}")


class ChecksumCache:
    """sha-256 per (store, object path, version); bounded in memory, optional on disk."""

    def __init__(self, directory: Path | None, max_entries: int = 10_000) -> None:
        self.directory = directory
        self.max_entries = max_entries
        self._memory: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # how many times bytes were actually hashed (for tests and metrics)

    @staticmethod
    def _key(store: str, path: str, version: str) -> str:
        return hashlib.sha256("\0".join((store, path, version)).encode("utf-8")).hexdigest()

    def get(self, store: str, path: str, version: str) -> str | None:
        if not version:
            return None
        key = self._key(store, path, version)
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        if self.directory is not None:
            try:
                text = (self.directory / key).read_text("ascii").strip()
            except (FileNotFoundError, UnicodeDecodeError):
                return None
            if _HEX64.fullmatch(text):
                self._remember(key, text)
                return text
        return None

    def compute(self, store: str, path: str, version: str, chunks: Iterable[bytes]) -> str:
        """Hash the bytes (consuming ``chunks``) and cache the digest under ``version``."""
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        value = digest.hexdigest()
        self.computed += 1
        if version:
            key = self._key(store, path, version)
            self._remember(key, value)
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
                tmp = self.directory / f".{key}.{os.getpid()}.{threading.get_ident()}"
                tmp.write_text(value, "ascii")
                os.replace(tmp, self.directory / key)
        return value

    def _remember(self, key: str, value: str) -> None:
        with self._lock:
            self._memory[key] = value
            self._memory.move_to_end(key)
            while len(self._memory) > self.max_entries:
                self._memory.popitem(last=False)
