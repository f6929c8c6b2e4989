"""``ga4gh-broker demo`` as a user runs it: a real process in a fresh folder, then ``demo --check``."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from broker.cli.demo import introduction
from broker.demo.folder import open_demo
from tests.demo.conftest import RunningDemo, demo_command


def test_demo_check_runs_the_whole_session_against_the_running_demo(running_demo: RunningDemo) -> None:
    done = demo_command("demo", "--check", "--dir", str(running_demo.folder), "--url", running_demo.url, cwd=Path("/"))
    assert done.returncode == 0, done.stdout + done.stderr
    steps = [line for line in done.stdout.splitlines() if line.startswith("ok ")]
    assert len(steps) == 10, done.stdout
    assert "demo check passed" in done.stdout


def test_demo_check_names_the_step_that_breaks(running_demo: RunningDemo) -> None:
    """With DEMO-VCF's index gone, the download step fails and is named; put back, the session passes again."""
    index = running_demo.folder / "data" / "DEMO-VCF" / "demo.vcf.gz.tbi"
    aside = index.with_name("moved-away")
    index.rename(aside)
    try:
        broken = demo_command("demo", "--check", "--dir", str(running_demo.folder), cwd=Path("/"))
    finally:
        aside.rename(index)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "FAILED step 5 (download)" in broken.stdout, broken.stdout
    assert "DEMO-VCF/demo.vcf.gz.tbi" in broken.stdout, broken.stdout
    assert "step 6" not in broken.stdout


def test_the_demo_prints_the_session_and_the_passwords_once_and_keeps_them_private(
    running_demo: RunningDemo,
) -> None:
    printed = running_demo.output()
    accounts_file = running_demo.folder / "demo-accounts.json"
    passwords = json.loads(accounts_file.read_text())
    assert set(passwords) == {"alice", "bob", "dora", "carl"}
    assert all(password in printed for password in passwords.values())
    assert stat.S_IMODE(accounts_file.stat().st_mode) == 0o600
    for expected in (
        f"ga4gh-broker login --broker {running_demo.url}",
        "ga4gh-broker download DEMO-VCF/demo.vcf.gz",
        f"{running_demo.url}dac/datasets/DEMO-BAM",
        "ga4gh-broker demo --check --dir the-demo",
    ):
        assert expected in printed
    # The settings it wrote pass `config check`, and the policy folder passes `policy check`.
    settings = demo_command("-c", str(running_demo.folder / "broker.yaml"), "config", "check", cwd=Path("/"))
    assert settings.returncode == 0, settings.stderr
    policies = demo_command("policy", "check", str(running_demo.folder / "policies"), cwd=Path("/"))
    assert policies.returncode == 0, policies.stderr


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("my own file")
    done = demo_command("demo", "--dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2
    assert "is not a demo folder" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_demo_check_without_a_demo_folder_says_to_start_one(tmp_path: Path) -> None:
    done = demo_command("demo", "--check", "--dir", str(tmp_path / "none"), cwd=tmp_path)
    assert done.returncode == 2
    assert "start the demo first" in done.stderr


def test_running_the_demo_again_resumes_its_folder_without_showing_passwords(tmp_path: Path) -> None:
    """Second start: same people and store, no new passwords, none printed; a new --port moves the issuer."""
    folder = tmp_path / "again"
    first = open_demo(folder, 18080)
    assert first.created_passwords is not None
    passwords = json.loads((folder / "demo-accounts.json").read_text())
    again = open_demo(folder, None)
    assert again.subs == first.subs and again.port == 18080 and again.created_passwords is None
    text = introduction(again, str(folder))
    assert not [p for p in passwords.values() if p in text]
    assert "demo-accounts.json" in text
    moved = open_demo(folder, 18081)
    assert moved.settings().issuer == "http://127.0.0.1:18081/"
    assert moved.subs == first.subs
