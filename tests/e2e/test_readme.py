"""README.md, run as written: every shell block, in order, against a real ``ga4gh-broker demo``.

The blocks are read from README.md itself, so an edit that breaks a command fails here. They run
with bash in a fresh working folder that holds the shipped ``policies/`` and ``examples/`` (links
to this checkout, not copies), with ``ga4gh-broker`` on PATH and a config folder of their own.
The only change made to any command is the port: the demo's free port instead of 8080.

A block may carry a marker on the line before its fence:

- ``install-and-demo``: the first set-up line. Its install part is what ``.ci/run`` does before
  it runs the tests (checked here); its last command, ``ga4gh-broker demo``, is started in the
  background and the rest of the README runs against it;
- ``test-setup`` and ``test-command``: what the tests need and the test command itself; ``.ci/run``
  does the first (checked here) and reads the second from README and runs it;
- ``approve alice``: a device login; its code is approved the way a person does, in a browser
  session as alice (the demo's generated password), by :class:`broker.demo.check.Browser`;
- ``exits 1``: a refusal; it must exit 1 and print what to apply for;
- ``settings`` (a YAML block): written to a file beside the shipped ``policies/`` and checked
  with ``ga4gh-broker config check``.

Every other ``sh`` block must exit 0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from broker.demo.check import Browser
from broker.demo.genomics import sha256_of
from tests.support.parts import free_port, require_binary
from tests.support.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!-- (?:readme-test: )?([\w -]+) -->\s*$")
KNOWN_MARKERS = {"install-and-demo", "test-setup", "test-command", "approve alice", "exits 1", "settings"}
README_PORT = "127.0.0.1:8080"
TEST_COMMAND = "python -m pytest -q -p no:cacheprovider"


@dataclass(frozen=True)
class Block:
    """One fenced block of README.md: its language, text, marker and first line number."""

    lang: str
    text: str
    marker: str | None
    line: int


def readme_blocks() -> list[Block]:
    blocks: list[Block] = []
    lines = README.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        marker = MARKER.match(lines[i - 1]) if i > 0 else None
        end = i + 1
        while not lines[end].startswith("```"):
            end += 1
        blocks.append(Block(opened.group(1), "\n".join(lines[i + 1 : end]) + "\n", marker and marker.group(1), i + 1))
        i = end + 1
    return blocks


def shell_blocks() -> list[Block]:
    return [b for b in readme_blocks() if b.lang == "sh"]


def test_every_readme_shell_block_is_run_by_this_test() -> None:
    """No block can hide: each sh block is plain (must exit 0) or carries a marker this test knows."""
    blocks = shell_blocks()
    assert len(blocks) >= 10
    for block in blocks:
        assert block.marker is None or block.marker in KNOWN_MARKERS, (block.line, block.marker)
    kinds = [b.marker for b in blocks]
    assert kinds[:3] == ["install-and-demo", "test-setup", "test-command"], "the two set-up commands come first"
    assert kinds.count("exits 1") == 1 and kinds.count("approve alice") == 2
    settings = [b for b in readme_blocks() if b.marker == "settings"]
    assert [b.lang for b in settings] == ["yaml"]


def test_the_test_command_is_the_line_ci_reads_and_the_install_is_what_ci_does() -> None:
    blocks = shell_blocks()
    assert blocks[2].text.strip() == TEST_COMMAND
    ci = (ROOT / ".ci" / "run").read_text()
    read = subprocess.run(
        ["awk", "/<!-- test-command -->/{getline; getline; print; exit}", str(README)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.strip() == TEST_COMMAND
    install = [part.strip() for part in blocks[0].text.strip().split("&&")]
    assert install == ["python3 -m venv .venv", ". .venv/bin/activate", "pip install -e .", "ga4gh-broker demo"]
    assert "python3 -m venv .venv" in ci and '-e ".[test]"' in ci  # CI installs the same, with the test extra
    assert blocks[1].text.strip() == 'pip install -e ".[test]" && npm ci --prefix tests/peers --no-audit --no-fund'
    assert "npm ci --prefix tests/peers --no-audit --no-fund" in ci


class ReadmeRun:
    """The reader's folder, shell and demo."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.work = tmp / "reader"
        self.work.mkdir()
        for shipped in ("policies", "examples"):
            (self.work / shipped).symlink_to(ROOT / shipped)
        bin_dir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BROKER_", "XDG_"))}
        self.env = {
            **env,
            "PATH": bin_dir + os.pathsep + env.get("PATH", ""),
            "HOME": str(tmp / "home"),
            "XDG_CONFIG_HOME": str(tmp / "home" / "config"),
        }
        self.env.pop("DISPLAY", None)
        self.env.pop("WAYLAND_DISPLAY", None)
        self.demo: subprocess.Popen[bytes] | None = None
        self.outputs: list[str] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def adapt(self, text: str) -> str:
        return text.replace(README_PORT, f"127.0.0.1:{self.port}")

    def start_demo(self, command: str) -> None:
        log = open(self.work.parent / "demo.log", "wb")  # noqa: SIM115 - closed by stop()
        self._log = log
        self.demo = subprocess.Popen(
            ["bash", "-c", f"exec {command} --port {self.port}"],
            cwd=self.work,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.demo.poll() is None, self.demo_log()
            try:
                if requests.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("the demo did not become ready: " + self.demo_log())

    def demo_log(self) -> str:
        return (self.work.parent / "demo.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process(self.demo, getattr(self, "_log", None))

    def run(self, block: Block) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", self.adapt(block.text)],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        self.outputs.append(done.stdout + done.stderr)
        return done

    def run_with_approval(self, block: Block, username: str) -> None:
        process = subprocess.Popen(
            ["bash", "-eo", "pipefail", "-c", self.adapt(block.text)],
            cwd=self.work,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        code = None
        while code is None:
            line = process.stdout.readline()
            assert line, f"README line {block.line}: no code printed"
            found = re.search(r"enter the code: (\S+)", line)
            code = found.group(1) if found else None
        passwords = json.loads((self.work / "ga4gh-broker-demo" / "demo-accounts.json").read_text())
        Browser(self.base).approve_device(code, username, passwords[username])
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, (block.line, out, err)


@pytest.mark.timeout(900)  # the whole README, two device logins included, on a busy 2-core machine
def test_every_readme_command_runs_against_the_demo_and_the_shipped_files(tmp_path: Path) -> None:
    for binary in ("curl", "samtools", "bcftools"):
        require_binary(binary, "README.md's commands use it")
    reader = ReadmeRun(tmp_path)
    try:
        for block in readme_blocks():
            where = f"README.md line {block.line}"
            if block.marker == "install-and-demo":
                reader.start_demo(block.text.strip().split("&&")[-1].strip())
            elif block.marker in ("test-setup", "test-command") or block.lang not in ("sh", "yaml"):
                continue
            elif block.marker == "settings":
                (reader.work / "readme-settings.yaml").write_text(block.text)
                done = subprocess.run(
                    [sys.executable, "-m", "broker", "-c", "readme-settings.yaml", "config", "check"],
                    cwd=reader.work,
                    env={**reader.env, "BROKER_KEYS__ENCRYPTION_SECRET": "s" * 40},
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=False,
                )
                assert done.returncode == 0, (where, done.stderr)
            elif block.lang != "sh":
                continue
            elif block.marker == "approve alice":
                reader.run_with_approval(block, "alice")
            elif block.marker == "exits 1":
                done = reader.run(block)
                assert done.returncode == 1, (where, done.stdout, done.stderr)
                assert "403" in done.stderr and "To read DEMO-BAM you need:" in done.stderr, (where, done.stderr)
                assert not (reader.work / "downloads" / "demo.bam").exists()
            else:
                done = reader.run(block)
                assert done.returncode == 0, (where, done.stdout, done.stderr, reader.demo_log())
        refused = next(out for out in reader.outputs if "To read DEMO-BAM you need:" in out)
        shown = next(b for b in readme_blocks() if b.lang == "text" and "To read DEMO-BAM" in b.text)
        for line in shown.text.splitlines():
            assert line.split("...")[0] in refused, f"README shows a line the client does not print: {line!r}"
    finally:
        reader.stop()
    data = reader.work / "ga4gh-broker-demo" / "data"
    for name, target in (
        ("DEMO-VCF/demo.vcf.gz", reader.work / "downloads" / "demo.vcf.gz"),
        ("DEMO-VCF/demo.vcf.gz.tbi", reader.work / "downloads" / "demo.vcf.gz.tbi"),
        ("DEMO-BAM/demo.bam", reader.work / "downloads" / "demo.bam"),
        ("DEMO-BAM/demo.bam.bai", reader.work / "downloads" / "demo.bam.bai"),
        ("DEMO-VCF/demo.vcf.gz", reader.work / "demo.vcf.gz"),
    ):
        assert sha256_of(target) == sha256_of(data / name), name
    assert (reader.work / "demo.head.bam").read_bytes() == (data / "DEMO-BAM" / "demo.bam").read_bytes()[:65536]
