"""ls and download against a real broker: whole files, parallel, resumed and damaged partial files,
refusals that say what to do (401, 403 with what to apply for, 404), and a purpose-bound dataset."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest

from broker.client.credentials import CredentialStore
from broker.client.download import Downloader
from broker.client.drs import DrsClient
from broker.client.http import Http
from broker.client.oauth import load_tokens
from tests.client.conftest import Broker, Cli

OPEN_FILES = ["big.bin", "dir/calls.vcf.gz", "dir/sub/index.bai", "reads.bam"]


class Interrupted(Exception):
    """Stands in for a dropped connection or a Ctrl-C in the middle of a transfer."""


def interrupted_download(broker: Broker, user: Cli, target: str, out: Path, after: int) -> Path:
    """Start downloading ``target`` with the client library and stop once ``after`` bytes are on disk."""
    http = Http.create()
    tokens = load_tokens(http, CredentialStore(user.config), broker.url)

    def stop(name: str, written: int) -> None:
        if written >= after:
            raise Interrupted(name)

    downloader = Downloader(DrsClient(http, tokens), out, on_chunk=stop)
    dataset, path = target.split("/", 1)
    with pytest.raises(Interrupted):
        downloader.run([(dataset, path)], 1)
    part = out.joinpath(*path.split("/")).with_name(path.split("/")[-1] + ".part")
    assert part.exists() and 0 < part.stat().st_size < len(broker.read(target))
    return part


def test_ls_lists_the_files_of_a_dataset_through_drs(alice: Cli) -> None:
    done = alice.run("ls", "CLI-OPEN")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == OPEN_FILES  # the symlink "escape" is never listed


def test_ls_of_a_dataset_not_granted_says_what_to_apply_for(alice: Cli) -> None:
    done = alice.run("ls", "CLI-CLOSED")
    assert done.returncode == 1 and done.stdout == ""
    assert "access denied (403 no_matching_visa)" in done.stderr
    assert "To read CLI-CLOSED you need:" in done.stderr
    assert "ControlledAccessGrants visa" in done.stderr
    assert "https://data.client.example/datasets/CLI-CLOSED" in done.stderr


def test_download_whole_files_in_parallel_byte_identical_and_checked(
    broker: Broker, alice: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    targets = [f"CLI-OPEN/{name}" for name in OPEN_FILES]
    started = time.monotonic()
    done = alice.run("download", *targets, "-o", str(out), "--parallel", "4")
    assert done.returncode == 0, done.stderr
    for target, name in zip(targets, OPEN_FILES, strict=True):
        assert (out / name).read_bytes() == broker.read(target)
        assert f"{target}: {len(broker.read(target))} bytes, sha-256 verified" in done.stdout
    assert not list(out.rglob("*.part*"))
    assert time.monotonic() - started < 30
    for secret in alice.tokens():
        assert secret not in done.stdout + done.stderr
    again = alice.run("download", targets[0], "-o", str(out))
    assert again.returncode == 0 and "already complete" in again.stdout


def test_an_interrupted_download_resumes_from_its_part_file(broker: Broker, alice: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    part = interrupted_download(broker, alice, "CLI-OPEN/big.bin", out, 1024 * 1024)
    kept = part.stat().st_size
    done = alice.run("download", "CLI-OPEN/big.bin", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert f"(resumed at {kept} bytes)" in done.stdout
    assert (out / "big.bin").read_bytes() == broker.read("CLI-OPEN/big.bin")
    assert not part.exists() and not part.with_name("big.bin.part.json").exists()


def test_a_damaged_part_file_is_detected_and_the_file_fetched_again(broker: Broker, alice: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    part = interrupted_download(broker, alice, "CLI-OPEN/big.bin", out, 1024 * 1024)
    data = bytearray(part.read_bytes())
    data[1000] ^= 0xFF
    part.write_bytes(bytes(data))
    done = alice.run("download", "CLI-OPEN/big.bin", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "checksum mismatch after resuming" in done.stderr
    final = (out / "big.bin").read_bytes()
    assert hashlib.sha256(final).digest() == hashlib.sha256(broker.read("CLI-OPEN/big.bin")).digest()


def test_a_part_of_another_version_of_the_object_is_not_continued(broker: Broker, alice: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    part = interrupted_download(broker, alice, "CLI-OPEN/big.bin", out, 1)
    meta = part.with_name("big.bin.part.json")
    meta.write_text(meta.read_text().replace('"sha256": "', '"sha256": "0'))  # recorded for other content
    done = alice.run("download", "CLI-OPEN/big.bin", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "resumed" not in done.stdout
    assert (out / "big.bin").read_bytes() == broker.read("CLI-OPEN/big.bin")


def test_refusals_say_what_to_do_and_the_rest_still_downloads(broker: Broker, alice: Cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = alice.run(
        "download", "CLI-CLOSED/closed.bam", "CLI-OPEN/missing.bin", "CLI-OPEN/dir/sub/index.bai", "-o", str(out)
    )
    assert done.returncode == 1
    assert "CLI-CLOSED/closed.bam: access denied (403 no_matching_visa)" in done.stderr
    assert "https://data.client.example/datasets/CLI-CLOSED" in done.stderr
    assert "CLI-OPEN/missing.bin: not found (404)" in done.stderr
    assert "2 of 3 downloads failed" in done.stderr
    assert (out / "dir" / "sub" / "index.bai").read_bytes() == broker.read("CLI-OPEN/dir/sub/index.bai")
    assert not (out / "closed.bam").exists() and not list(out.glob("*.part*"))


def test_a_rejected_token_is_a_401_that_asks_to_log_in_again(
    broker: Broker, alice: Cli, cli: Cli, tmp_path: Path
) -> None:
    content = alice.credentials()
    key = broker.url.rstrip("/")
    content["brokers"][key].update(access_token="forged.token.value", refresh_token=None)
    cli.config.mkdir(parents=True)
    cli.write_credentials(content)
    done = cli.run("download", "CLI-OPEN/reads.bam", "-o", str(tmp_path / "out"))
    assert done.returncode == 1
    assert (
        f"CLI-OPEN/reads.bam: your login is not accepted (401); run: ga4gh-broker login --broker {key}" in done.stderr
    )


def test_a_purpose_bound_dataset_downloads_with_a_compatible_purpose(
    broker: Broker, alice: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    missing = alice.run("download", "CLI-HMB/cohort.vcf", "-o", str(out))
    assert missing.returncode == 1 and "403 purpose_missing" in missing.stderr
    assert "declared purpose within DUO:0000006" in missing.stderr and "--purpose" in missing.stderr
    assert "DUO:0000007" in missing.stderr  # a compatible (narrower) purpose is offered
    wrong = alice.run("download", "CLI-HMB/cohort.vcf", "-o", str(out), "--purpose", "DUO:0000042")
    assert wrong.returncode == 1 and "403 purpose_incompatible" in wrong.stderr
    done = alice.run("download", "CLI-HMB/cohort.vcf", "-o", str(out), "--purpose", "DUO:0000006")
    assert done.returncode == 0, done.stderr
    assert (out / "cohort.vcf").read_bytes() == broker.read("CLI-HMB/cohort.vcf")
    listed = alice.run("ls", "CLI-HMB", "--purpose", "DUO:0000007")
    assert listed.returncode == 0 and listed.stdout.split() == ["cohort.vcf"]


@pytest.mark.parametrize(
    "args",
    [
        ("download", "CLI-OPEN/reads.bam", "--purpose", "duo:6"),
        ("download", "CLI-OPEN"),
        ("download", "CLI-OPEN/../closed/closed.bam"),
        ("download", "CLI-OPEN/reads.bam", "--parallel", "0"),
        ("ls", "bad dataset"),
        ("login", "--broker", "http://broker.example"),
        ("download",),
    ],
)
def test_usage_mistakes_exit_2(alice: Cli, args: tuple[str, ...]) -> None:
    done = alice.run(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stderr.strip() and "Traceback" not in done.stderr


def test_the_progress_bar_reports_a_whole_transfer(broker: Broker, alice: Cli, tmp_path: Path) -> None:
    import io

    http = Http.create()
    tokens = load_tokens(http, CredentialStore(alice.config), broker.url)
    err = io.StringIO()
    outcomes = Downloader(DrsClient(http, tokens), tmp_path, progress=True, err=err).run([("CLI-OPEN", "reads.bam")], 1)
    assert outcomes[0].ok, outcomes
    assert "CLI-OPEN/reads.bam" in err.getvalue() and "100%" in err.getvalue()
    assert (tmp_path / "reads.bam").read_bytes() == broker.read("CLI-OPEN/reads.bam")
