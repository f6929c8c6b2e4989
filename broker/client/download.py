"""Downloads that survive interruptions and prove their bytes.

Each file is written to ``<name>.part`` next to its destination, with ``<name>.part.json``
recording the object's sha-256, size and the ETag of the answer that started it. A later run
resumes from the part's size with ``Range: bytes=N-`` and ``If-Range: <ETag>`` (RFC 9110
13.1.5): a server whose object changed answers 200 with the whole new object, and the part
starts over. The sha-256 of the whole file (the part's bytes read back, then the new ones) must
equal the DRS object's checksum before the file is renamed into place; a damaged part is thus
detected, thrown away and the file fetched once more from the start. A destination that
already exists with the right checksum is left alone; one with other content is never
overwritten.

Several files download at once (``parallel`` threads sharing one token source); a progress
bar per file is shown on stderr when it is a terminal.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import requests
from tqdm import tqdm  # type: ignore[import-untyped]

from broker.client.drs import PURPOSE_HEADER, DrsClient, DrsFile, Refused, explain_refusal
from broker.client.http import Bearer, ClientError, NoAuth, printable, read_json

CHUNK = 1024 * 1024
MAX_PARALLEL = 16
_CONTENT_RANGE = re.compile(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19})")
_ETAG = re.compile(r'(W/)?"[\x21\x23-\x7e]{0,200}"')


@dataclass
class Outcome:
    """How one file ended: ``ok`` and a line for the person."""

    name: str
    ok: bool
    message: str


class _Restart(Exception):
    """The part cannot be continued (changed object, bad range answer): start from zero."""


@dataclass
class Downloader:
    """Fetch ``DATASET/PATH`` targets into ``out_dir`` (see the module docstring)."""

    drs: DrsClient
    out_dir: Path
    progress: bool = False
    err: TextIO = sys.stderr
    on_chunk: Callable[[str, int], None] | None = None  # a test hook: called after each chunk written
    decrypt: Callable[[Path], Path] | None = None  # Crypt4GH: verified file -> decrypted file beside it

    def __post_init__(self) -> None:
        self._print_lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.err, flush=True)

    def run(self, targets: list[tuple[str, str]], parallel: int) -> list[Outcome]:
        unique = list(dict.fromkeys(targets))
        workers = max(1, min(parallel, MAX_PARALLEL, len(unique) or 1))
        if workers == 1:
            return [self.one(dataset, path, 0) for dataset, path in unique]
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(self.one, dataset, path, i) for i, (dataset, path) in enumerate(unique)]
            return [f.result() for f in futures]

    def one(self, dataset: str, path: str, position: int) -> Outcome:
        name = f"{dataset}/{path}"
        try:
            described = self.drs.describe(dataset, path)
            dest = self.out_dir.joinpath(*path.split("/"))
            outcome = self._fetch(described, dest, position)
            if outcome.ok and self.decrypt is not None:
                plain = self.decrypt(dest)
                outcome = Outcome(name, True, f"{outcome.message}; decrypted -> {plain}")
            return outcome
        except ClientError as exc:
            return Outcome(name, False, exc.message)
        except OSError as exc:
            return Outcome(name, False, f"{name}: cannot write: {exc.strerror or exc}")

    # ------------------------------------------------------------------ one file

    def _fetch(self, file: DrsFile, dest: Path, position: int) -> Outcome:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():
            return Outcome(file.name, False, f"{file.name}: {dest} is a symlink; not written through it.")
        if dest.exists():
            if _sha256_of(dest) == file.sha256:
                return Outcome(file.name, True, f"{file.name}: already complete ({dest})")
            return Outcome(file.name, False, f"{file.name}: {dest} exists with other content; move it away first.")
        part = dest.with_name(dest.name + ".part")
        meta = dest.with_name(dest.name + ".part.json")
        resumed = self._load(part, meta, file)
        for attempt in (1, 2):
            digest, start = self._transfer(file, part, meta, position, resume=resumed)
            if digest == file.sha256:
                os.replace(part, dest)
                meta.unlink(missing_ok=True)
                how = f" (resumed at {start} bytes)" if start else ""
                return Outcome(file.name, True, f"{file.name}: {file.size} bytes, sha-256 verified{how} -> {dest}")
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            if resumed and attempt == 1:
                self.say(f"{file.name}: checksum mismatch after resuming: the partial file was damaged; starting over")
                resumed = False
                continue
            break
        return Outcome(file.name, False, f"{file.name}: checksum mismatch (sha-256 differs from DRS); nothing kept.")

    def _load(self, part: Path, meta: Path, file: DrsFile) -> bool:
        """True when ``part`` may be continued (same object by checksum and size, not longer than it)."""
        try:
            recorded = json.loads(meta.read_text(encoding="utf-8")) if meta.stat().st_size < 65536 else {}
            size = part.lstat().st_size
        except (OSError, ValueError):
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            return False
        same = (
            isinstance(recorded, dict) and recorded.get("sha256") == file.sha256 and recorded.get("size") == file.size
        )
        if not same or size > file.size or not part.is_file() or part.is_symlink():
            part.unlink(missing_ok=True)
            meta.unlink(missing_ok=True)
            return False
        return True

    def _transfer(self, file: DrsFile, part: Path, meta: Path, position: int, resume: bool) -> tuple[str, int]:
        """Write the object into ``part`` (continuing it when ``resume``).

        Returns the sha-256 of all of it and the offset the bytes fetched now started at.
        """
        for _ in range(3):
            try:
                return self._attempt(file, part, meta, position, resume)
            except _Restart:
                part.unlink(missing_ok=True)
                resume = False
        raise ClientError("restart_loop", f"{file.name}: the server keeps answering ranges this client cannot use.")

    def _attempt(self, file: DrsFile, part: Path, meta: Path, position: int, resume: bool) -> tuple[str, int]:
        sha = hashlib.sha256()
        offset = 0
        etag: str | None = None
        if resume:
            recorded = json.loads(meta.read_text(encoding="utf-8"))
            etag = recorded.get("etag") if isinstance(recorded.get("etag"), str) else None
            offset = _hash_file(part, sha)
            if offset == file.size:
                return sha.hexdigest(), offset
            if etag is None:
                raise _Restart  # nothing to prove the server still has the same version
        headers = dict(self.drs.headers())
        if offset:
            headers["Range"] = f"bytes={offset}-"
            assert etag is not None
            headers["If-Range"] = etag
        response = self._get(file, headers)
        try:
            if response.status_code == 200:
                if offset:
                    sha = hashlib.sha256()
                    offset = 0  # the object changed (or ranges are not served): the whole of it came
                mode = "wb"
            elif response.status_code == 206 and offset:
                found = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", ""))
                if not found or int(found.group(1)) != offset or int(found.group(3)) != file.size:
                    raise _Restart
                mode = "ab"
            elif response.status_code == 416:
                raise _Restart
            else:
                raise self._refusal(response, file.name)
            new_etag = response.headers.get("ETag")
            if mode == "wb":
                etag = new_etag if new_etag and _ETAG.fullmatch(new_etag) else None
                meta.write_text(json.dumps({"sha256": file.sha256, "size": file.size, "etag": etag}), encoding="utf-8")
            flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            flags |= os.O_TRUNC if mode == "wb" else os.O_APPEND
            fd = os.open(part, flags, 0o600)
            with os.fdopen(fd, mode) as out, self._bar(file, offset, position) as bar:
                written = offset
                for chunk in response.iter_content(CHUNK):
                    if written + len(chunk) > file.size:
                        raise ClientError("too_long", f"{file.name}: the server sent more bytes than the object has.")
                    out.write(chunk)
                    sha.update(chunk)
                    written += len(chunk)
                    bar(len(chunk))
                    if self.on_chunk is not None:
                        out.flush()
                        self.on_chunk(file.name, written)
            if written != file.size:
                raise ClientError(
                    "incomplete",
                    f"{file.name}: the transfer stopped at {written} of {file.size} bytes; run again to resume.",
                )
        except requests.exceptions.RequestException as exc:
            raise ClientError(
                "broken", f"{file.name}: the transfer broke off ({exc.__class__.__name__}); run again to resume."
            ) from None
        finally:
            response.close()
        return sha.hexdigest(), offset

    def _get(self, file: DrsFile, headers: dict[str, str]) -> Any:
        tokens = self.drs.tokens
        for attempt in (1, 2):
            token = None if file.signed else tokens.access_token()
            auth = NoAuth() if token is None else Bearer(token)
            response = self.drs.http.request("GET", file.url, auth=auth, headers=headers, stream=True)
            if response.status_code == 401 and token is not None and attempt == 1:
                response.close()
                if tokens.refresh_after_401(token):
                    continue
            return response
        raise AssertionError("unreachable")

    def _refusal(self, response: Any, name: str) -> Refused:
        body = read_json(response, 1024 * 1024) if response.status_code in (401, 403, 404) else {}
        return explain_refusal(response.status_code, body, name, self.drs.tokens.broker)

    @contextlib.contextmanager
    def _bar(self, file: DrsFile, initial: int, position: int) -> Any:
        if not self.progress:
            yield lambda n: None
            return
        with tqdm(
            total=file.size,
            initial=initial,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=printable(file.name, 40),
            position=position,
            leave=True,
            file=self.err,
            dynamic_ncols=True,
        ) as bar:
            yield bar.update


def _hash_file(path: Path, sha: Any) -> int:
    """Feed ``path`` into ``sha``; return its length (the part is read back, not trusted)."""
    total = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(CHUNK):
            sha.update(chunk)
            total += len(chunk)
    return total


def _sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    _hash_file(path, sha)
    return sha.hexdigest()


__all__ = ["PURPOSE_HEADER", "Downloader", "Outcome"]
