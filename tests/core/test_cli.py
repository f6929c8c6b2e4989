"""``ga4gh-broker passport inspect|verify`` and ``visa sign``, run through the real command line.

The settings trust test issuers and a test broker by pinned JWKS, as an operator would
write them; our own key ring lives in the test's data directory.
"""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker.cli import main
from tests.core.vectors import data
from tests.support.forge import Signer, TestKey, forge

SPEC_ISSUER = "https://visas.spec.test/"
OWN = "https://broker.cli.test/"
BROKER = "https://broker.spec.test/"
ISSUERS = [
    SPEC_ISSUER,
    "https://issuer.example1.org/oidc",
    "https://other.example2.org/oidc",
    "https://broker.example3.org/oidc",
]
TYPES = [
    "AffiliationAndRole",
    "ControlledAccessGrants",
    "ControlledAccessGrants",
    "AcceptedTermsAndPolicies",
    "ResearcherStatus",
    "LinkedIdentities",
]


@pytest.fixture(scope="module")
def signers() -> dict[str, Signer]:
    return {
        iss: Signer(iss, TestKey.generate("ES256", f"cli-k{i}"), iss.rstrip("/") + "/jwks.json")
        for i, iss in enumerate(ISSUERS)
    }


@pytest.fixture(scope="module")
def broker() -> Signer:
    return Signer(BROKER, TestKey.generate("RS256", "cli-broker"))


@pytest.fixture()
def config(tmp_path: Path, signers: dict[str, Signer], broker: Signer) -> str:
    settings = {
        "issuer": OWN,
        "data_dir": str(tmp_path / "var"),
        "trust": {
            "visa_issuers": [{"iss": s.iss, "jwks": s.key.jwks()} for s in signers.values()],
            "brokers": [{"iss": broker.iss, "jwks": broker.key.jwks()}],
        },
    }
    path = tmp_path / "broker.yaml"
    path.write_text(json.dumps(settings))  # JSON is YAML
    return str(path)


def example_passport(signers: dict[str, Signer], broker: Signer, drop: int | None = None) -> str:
    """The spec's example passport (example-passport-claim-v1.2): its six visas, signed by their issuers.

    The spec's dates are in 2020; iat/exp are moved to now so the visas are live.
    """
    now = int(time.time())
    visas = []
    for i, payload in enumerate(copy.deepcopy(data("example-passport-claim-v1.2")["ga4gh_passport_v1"])):
        if i == drop:
            continue
        payload.setdefault("iss", SPEC_ISSUER)
        payload.setdefault("sub", "10001")
        payload.update(jti=f"example-{i}", iat=now - 60, exp=now + 3600)
        signer = signers[payload["iss"]]
        visas.append(forge(signer.header(), payload, signer.key.private))
    return broker.passport(visas, sub="holder", iat=now - 5, exp=now + 600)


def run(
    capsys: pytest.CaptureFixture[str],
    *argv: str,
    stdin: str | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[int, str, str]:
    if stdin is not None:
        assert monkeypatch is not None
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ---------------------------------------------------------------------- passport inspect


def test_inspect_example_passport_prints_every_visa_with_its_verdict(
    config: str, signers: dict[str, Signer], broker: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "-c", config, "passport", "inspect", example_passport(signers, broker))
    assert status == 0
    assert out.startswith("passport: accepted")
    assert "visas: 6 (6 accepted, 0 rejected)" in out
    table = out.split("visas: 6")[1].split("details:")[0].strip().splitlines()[2:]  # after the heading row
    assert len(table) == 6
    for index, (row, visa_type) in enumerate(zip(table, TYPES, strict=True)):
        cells = row.split()
        assert cells[0] == str(index) and cells[1] == "accepted" and visa_type in row
    assert "faculty@med.stanford.edu" in out and "https://ega-archive.org/datasets/EGAD00000000432" in out
    assert out.count("      header: ") == 6 and out.count("      claims: ") == 6


def test_inspect_shows_the_reason_of_each_refused_visa(
    config: str, signers: dict[str, Signer], broker: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without visa 1, visa 3's conditions are unmet; the passport itself stands."""
    status, out, _ = run(capsys, "-c", config, "passport", "inspect", example_passport(signers, broker, drop=0))
    assert status == 0
    assert "visas: 5 (4 accepted, 1 rejected)" in out
    assert "[1] rejected: conditions_unmet:" in out


def test_inspect_json(
    config: str,
    signers: dict[str, Signer],
    broker: Signer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passport = example_passport(signers, broker)
    status, out, _ = run(
        capsys, "-c", config, "passport", "inspect", "--json", stdin=passport + "\n", monkeypatch=monkeypatch
    )
    report = json.loads(out)
    assert status == 0
    assert report["passport"]["verdict"] == "accepted"
    assert report["passport"]["header"] == {"alg": "RS256", "kid": "cli-broker", "typ": "vnd.ga4gh.passport+jwt"}
    assert report["passport"]["claims"]["iss"] == BROKER
    assert [v["verdict"] for v in report["visas"]] == ["accepted"] * 6
    assert [v["summary"]["type"] for v in report["visas"]] == TYPES
    assert report["visas"][2]["claims"]["ga4gh_visa_v1"]["conditions"]
    assert passport not in out  # the token itself is never printed


def test_inspect_refused_passport(config: str, signers: dict[str, Signer], capsys: pytest.CaptureFixture[str]) -> None:
    stranger = Signer("https://stranger.test/", TestKey.generate("ES256", "x"))
    now = int(time.time())
    passport = stranger.passport([signers[SPEC_ISSUER].visa(iat=now - 5, exp=now + 600)])
    status, out, _ = run(capsys, "-c", config, "passport", "inspect", "--json", passport)
    report = json.loads(out)
    assert status == 1
    assert report["passport"]["verdict"] == "rejected" and report["passport"]["reason"] == "untrusted_issuer"
    assert report["passport"]["claims"]["iss"] == "https://stranger.test/"  # decoded for display only
    (visa,) = report["visas"]
    assert visa["verdict"] == "not judged" and visa["claims"]["iss"] == SPEC_ISSUER
    status, out, _ = run(capsys, "-c", config, "passport", "inspect", passport)
    assert status == 1 and out.startswith("passport: REJECTED (untrusted_issuer: ")
    assert "visas: 1 (not judged: the passport was refused)" in out


def test_inspect_userinfo_document(
    config: str, signers: dict[str, Signer], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = signers[SPEC_ISSUER]
    document = {
        "iss": OWN,
        "sub": "alice",
        "ga4gh_passport_v1": [signer.visa(iat=int(time.time()) - 5, exp=int(time.time()) + 600), "x.y"],
    }
    status, out, _ = run(
        capsys, "-c", config, "passport", "inspect", stdin=json.dumps(document), monkeypatch=monkeypatch
    )
    assert status == 0
    assert out.startswith("userinfo visa list: accepted")
    assert "visas: 2 (1 accepted, 1 rejected)" in out and "malformed" in out


# ---------------------------------------------------------------------- passport verify


def test_verify_exit_status(
    config: str,
    signers: dict[str, Signer],
    broker: Signer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passport = example_passport(signers, broker)
    status, out, _ = run(capsys, "-c", config, "passport", "verify", passport)
    assert (status, out.strip()) == (0, "accepted: 6 of 6 visas accepted")

    head, payload, signature = passport.split(".")
    tampered = f"{head}.{payload[:-4]}AAAA.{signature}"
    status, out, _ = run(capsys, "-c", config, "passport", "verify", tampered)
    assert status == 1 and out.startswith("rejected: ")

    status, _, err = run(capsys, "-c", config, "passport", "verify", stdin="   \n", monkeypatch=monkeypatch)
    assert status == 2 and "empty" in err

    bad_config = Path(config).with_name("bad.yaml")
    bad_config.write_text("limits: {max_visa_bytes: -1}\n")
    status, _, err = run(capsys, "-c", str(bad_config), "passport", "verify", passport)
    assert status == 2 and "max_visa_bytes" in err


def test_verify_lists_ignored_visas(
    config: str, signers: dict[str, Signer], broker: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    now = int(time.time())
    good = signers[SPEC_ISSUER].visa(iat=now - 5, exp=now + 600)
    status, out, _ = run(
        capsys, "-c", config, "passport", "verify", broker.passport([good, "junk"], iat=now - 5, exp=now + 600)
    )
    assert status == 0
    assert out.splitlines() == [
        "accepted: 1 of 2 visas accepted",
        "  visa 1 ignored: malformed: expected 3 dot-separated segments, got 1",
    ]


# ---------------------------------------------------------------------- visa sign


def _rotate(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-c", config, "keys", "rotate", "--immediate")[0] == 0


def test_visa_sign_prints_a_visa_our_verifier_accepts(
    config: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _rotate(config, capsys)
    conditions = json.dumps([[{"type": "AffiliationAndRole", "value": "pattern:faculty@*"}]])
    status, out, _ = run(
        capsys,
        "-c",
        config,
        "visa",
        "sign",
        "--sub",
        "alice",
        "--type",
        "ControlledAccessGrants",
        "--value",
        "https://ega.example/datasets/EGAD1",
        "--source",
        "https://ega.example/dac",
        "--by",
        "dac",
        "--exp-in",
        "600",
        "--conditions",
        conditions,
    )
    assert status == 0
    token = out.strip()
    assert token.count(".") == 2
    affiliation = run(
        capsys,
        "-c",
        config,
        "visa",
        "sign",
        "--sub",
        "alice",
        "--type",
        "AffiliationAndRole",
        "--value",
        "faculty@uni.example",
        "--source",
        "https://uni.example/",
        "--by",
        "so",
    )[1].strip()
    document = json.dumps({"ga4gh_passport_v1": [token, affiliation]})
    status, out, _ = run(capsys, "-c", config, "passport", "inspect", "--json", stdin=document, monkeypatch=monkeypatch)
    report = json.loads(out)
    assert status == 0 and [v["verdict"] for v in report["visas"]] == ["accepted", "accepted"]
    header = report["visas"][0]["header"]
    assert header["typ"] == "vnd.ga4gh.visa+jwt" and header["jku"] == OWN.rstrip("/") + "/.well-known/jwks.json"
    claims = report["visas"][0]["claims"]
    assert claims["iss"] == OWN and claims["exp"] - claims["iat"] == 600


@pytest.mark.parametrize(
    "args,message",
    [
        (
            [
                "--type",
                "ControlledAccessGrants",
                "--value",
                "https://ega.example/d",
                "--source",
                "https://ega.example/",
            ],
            "by is required",
        ),
        (["--type", "ResearcherStatus", "--value", "not a url", "--source", "https://x.example/"], "URL"),
        (
            [
                "--type",
                "ResearcherStatus",
                "--value",
                "https://x.example/",
                "--source",
                "https://x.example/",
                "--conditions",
                "[[{]]",
            ],
            "--conditions",
        ),
        (
            [
                "--type",
                "ResearcherStatus",
                "--value",
                "https://x.example/",
                "--source",
                "https://x.example/",
                "--exp-in",
                "0",
            ],
            "--exp-in",
        ),
    ],
)
def test_visa_sign_refuses_bad_visas(
    config: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    _rotate(config, capsys)
    status, out, err = run(capsys, "-c", config, "visa", "sign", "--sub", "alice", *args)
    assert status == 2 and out == "" and message in err


def test_visa_sign_without_a_key_says_what_to_do(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(
        capsys,
        "-c",
        config,
        "visa",
        "sign",
        "--sub",
        "a",
        "--type",
        "ResearcherStatus",
        "--value",
        "https://x.example/",
        "--source",
        "https://x.example/",
    )
    assert status == 1 and "keys rotate" in err


# ---------------------------------------------------------------------- from any working folder


def _cli(cwd: Path, env: dict[str, str], *argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", *argv],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _sign(cwd: Path, env: dict[str, str], *config: str) -> str:
    done = _cli(cwd, env, *config, "keys", "rotate", "--immediate")
    assert done.returncode == 0, done.stderr
    visa = ["visa", "sign", "--sub", "alice", "--type", "ResearcherStatus"]
    done = _cli(cwd, env, *config, *visa, "--value", "https://x.example/", "--source", "https://x.example/")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _inspect_elsewhere(cwd: Path, env: dict[str, str], visa: str, *config: str) -> None:
    document = json.dumps({"ga4gh_passport_v1": [visa]})
    done = _cli(cwd, env, *config, "passport", "inspect", "--json", "-", stdin=document)
    assert done.returncode == 0, done.stderr
    assert [v["verdict"] for v in json.loads(done.stdout)["visas"]] == ["accepted"]
    assert "unavailable" not in done.stderr
    assert list(cwd.iterdir()) == []  # no stray ./var, no new store


def test_inspect_from_another_folder_finds_the_keys_of_a_broker_run_without_settings(tmp_path: Path) -> None:
    """Issue 14: with no settings file, state lives in the user's data folder, not in ./var."""
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir(), there.mkdir()
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("BROKER_CONFIG", None)
    env.pop("STATE_DIRECTORY", None)
    visa = _sign(here, env)
    assert (tmp_path / "data" / "ga4gh-broker" / "keys").is_dir() and list(here.iterdir()) == []
    _inspect_elsewhere(there, env, visa)


def test_inspect_from_another_folder_with_a_settings_file_naming_a_relative_data_dir(tmp_path: Path) -> None:
    here, there, conf = tmp_path / "here", tmp_path / "there", tmp_path / "conf"
    for folder in (here, there, conf):
        folder.mkdir()
    (conf / "broker.yaml").write_text("data_dir: state\n")
    env = {k: v for k, v in os.environ.items() if k not in ("BROKER_CONFIG", "STATE_DIRECTORY")}
    visa = _sign(here, env, "-c", "../conf/broker.yaml")
    assert (conf / "state" / "keys").is_dir()
    _inspect_elsewhere(there, env, visa, "-c", str(conf / "broker.yaml"))


def test_inspect_with_no_keys_says_where_it_looked_and_creates_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    env.pop("BROKER_CONFIG", None)
    env.pop("STATE_DIRECTORY", None)
    signer = Signer("http://127.0.0.1:8080/", TestKey.generate("ES256", "k1"), "http://127.0.0.1:8080/jwks")
    visa = signer.visa("alice", {"type": "ResearcherStatus", "value": "https://x/", "source": "https://x/", "by": "so"})
    done = _cli(tmp_path, env, "passport", "inspect", "--json", "-", stdin=json.dumps({"ga4gh_passport_v1": [visa]}))
    assert done.returncode == 0, done.stderr
    assert "no key folder at " + str(tmp_path / "data" / "ga4gh-broker" / "keys") in done.stderr
    assert "no settings file" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither ./var nor the data folder was created
