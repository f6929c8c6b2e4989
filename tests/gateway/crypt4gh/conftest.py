"""Real Crypt4GH parts for the core's tests: keys from ``crypt4gh-keygen``, files from ``crypt4gh encrypt``,
and ``crypt4gh decrypt`` as the judge of every re-encrypted stream."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.gateway.c4gh import (
    NodeKey,
    Part,
    RandomReader,
    RecipientKey,
    iter_parts,
    load_node_key,
    parse_recipient_key,
)
from tests.support.parts import require_binary

WHY = "the Crypt4GH core is judged by the real crypt4gh command (pip install crypt4gh)"
CLI_TIMEOUT = 60


@dataclass(frozen=True)
class KeyPair:
    """A key pair written by crypt4gh-keygen, with its passphrase (test data only)."""

    name: str
    sec: Path
    pub: Path
    passphrase: str

    def pub_header_value(self) -> str:
        """What a NeIC client sends in X-C4GH-Public-Key: base64 of the whole .pub file."""
        return base64.b64encode(self.pub.read_bytes()).decode()

    def recipient(self) -> RecipientKey:
        return parse_recipient_key(self.pub_header_value())

    def node_key(self) -> NodeKey:
        return load_node_key(self.sec, passphrase_env="NODE_PASS", environ={"NODE_PASS": self.passphrase})


@dataclass(frozen=True)
class Crypt4GH:
    """The crypt4gh and crypt4gh-keygen commands."""

    cli: str
    keygen: str

    def make_keys(self, folder: Path, name: str, passphrase: str) -> KeyPair:
        sec, pub = folder / f"{name}.sec", folder / f"{name}.pub"
        # crypt4gh-keygen reads the new passphrase with getpass: without a controlling terminal
        # (a new session) getpass falls back to standard input.
        subprocess.run(
            [self.keygen, "--sk", str(sec), "--pk", str(pub), "-C", name, "-f"],
            input=f"{passphrase}\n{passphrase}\n".encode(),
            capture_output=True,
            start_new_session=True,
            check=True,
            timeout=CLI_TIMEOUT,
        )
        return KeyPair(name=name, sec=sec, pub=pub, passphrase=passphrase)

    def encrypt(self, plain: bytes, recipients: Sequence[KeyPair]) -> bytes:
        args = [self.cli, "encrypt"]
        for key in recipients:
            args += ["--recipient_pk", str(key.pub)]
        done = subprocess.run(args, input=plain, capture_output=True, check=True, timeout=CLI_TIMEOUT)
        return done.stdout

    def rearrange(self, stored: bytes, key: KeyPair, start: int, end_exclusive: int) -> bytes:
        """``crypt4gh rearrange``: the same file for the same key, with an edit list for the range."""
        done = subprocess.run(
            [self.cli, "rearrange", "--sk", str(key.sec), "--range", f"{start}-{end_exclusive}"],
            input=stored,
            capture_output=True,
            check=True,
            timeout=CLI_TIMEOUT,
            env={**os.environ, "C4GH_PASSPHRASE": key.passphrase},
        )
        return done.stdout

    def decrypt_many(self, jobs: Sequence[tuple[Path, KeyPair]]) -> list[tuple[int, bytes]]:
        """Decrypt files concurrently (each run pays Python start-up and scrypt): (exit code, stdout)."""
        return self.decrypt_checked([(path, key, None) for path, key in jobs])

    def decrypt_checked(self, jobs: Sequence[tuple[Path, KeyPair, KeyPair | None]]) -> list[tuple[int, bytes]]:
        """As :meth:`decrypt_many`, each job optionally checking the writer with ``--sender_pk``."""
        procs = []
        for path, key, sender in jobs:
            env = {**os.environ, "C4GH_PASSPHRASE": key.passphrase}
            extra = ["--sender_pk", str(sender.pub)] if sender else []
            with path.open("rb") as stdin:
                procs.append(
                    subprocess.Popen(
                        [self.cli, "decrypt", "--sk", str(key.sec), *extra],
                        stdin=stdin,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        env=env,
                    )
                )
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=CLI_TIMEOUT)
            results.append((proc.returncode, out))
        return results

    def decrypt(self, path: Path, key: KeyPair) -> tuple[int, bytes]:
        return self.decrypt_many([(path, key)])[0]


@pytest.fixture(scope="session")
def c4gh() -> Crypt4GH:
    # The commands come with the project's own `crypt4gh` dependency, in the interpreter's bin folder:
    # look there too when that folder is not on PATH (`.venv/bin/python -m pytest`).
    bindir = str(Path(sys.executable).parent)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", os.pathsep.join([os.environ.get("PATH", ""), bindir]))
        return Crypt4GH(cli=require_binary("crypt4gh", WHY), keygen=require_binary("crypt4gh-keygen", WHY))


@dataclass(frozen=True)
class Keys:
    node: KeyPair
    researcher: KeyPair
    other: KeyPair  # another recipient of the stored file (another node)
    third: KeyPair  # someone the file was never meant for


@pytest.fixture(scope="session")
def keys(c4gh: Crypt4GH, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("c4gh-keys")
    return Keys(
        node=c4gh.make_keys(folder, "node", "node passphrase é"),
        researcher=c4gh.make_keys(folder, "researcher", "researcher-pass"),
        other=c4gh.make_keys(folder, "other", "other-pass"),
        third=c4gh.make_keys(folder, "third", "third-pass"),
    )


def write_served(path: Path, parts: Sequence[Part], header: bytes, reader: RandomReader, chunk: int = 7919) -> Path:
    """Write the served stream of ``parts`` to ``path`` through the streaming helper (odd chunk size on purpose)."""
    with path.open("wb") as out:
        for data in iter_parts(parts, header, reader, chunk):
            out.write(data)
    return path
