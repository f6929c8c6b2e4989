"""``ga4gh-broker policy check | test | explain | required | diff`` on real directories."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from broker.cli import main
from broker.core.linked_identities import format_linked_identities
from tests.support.forge import Signer, TestKey, visa_object

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "policies"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_shipped_policies_pass_their_persona_tests(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "policy", "test", str(SHIPPED))
    assert status == 0, out + err
    lines = [line for line in out.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert lines and all(line.startswith("PASS") for line in lines)
    assert len(lines) >= 20
    assert "0 failed" in out


def test_shipped_policies_check_clean(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "policy", "check", str(SHIPPED), "--json")
    summary = json.loads(out)
    assert status == 0 and summary["ok"] and summary["warnings"] == []
    assert summary["datasets"] >= 5 and summary["pattern_templates"] >= 1


def test_check_reports_every_mistake_with_file_and_line(tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.yaml").write_text(
        "datasets:\n  A:\n    description: x\n    read: {rule: nope}\n  B:\n    descripton: y\n"
    )
    status, _, err = run(capsys, "policy", "check", str(tmp_path))
    assert status == 1
    assert f"{tmp_path / 'bad.yaml'}:4: datasets.A.read.rule: rule 'nope' is not defined" in err
    assert f"{tmp_path / 'bad.yaml'}:6: datasets.B.descripton: unknown field 'descripton'" in err
    assert "2 mistake(s)" in err


def copy_shipped(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(SHIPPED, target)
    return target


def test_failing_case_is_reported_with_its_explanation_and_exit_1(tmp_path: Path, capsys) -> None:
    directory = copy_shipped(tmp_path)
    cases = directory / "tests" / "registered_access.yaml"
    cases.write_text(
        cases.read_text()
        .replace(
            "    persona: carol\n    dataset: B1MG-RA-0001\n    expect: deny",
            "    persona: carol\n    dataset: B1MG-RA-0001\n    expect: allow",
        )
        .replace("    reasons: [not_linked]\n", "", 1)
    )
    status, out, _ = run(capsys, "policy", "test", str(directory))
    assert status == 1
    assert "FAIL" in out and "expected allow, got deny" in out
    assert "is not linked to the holder" in out  # the explanation of the failure
    assert "1 failed" in out


def test_wrong_reason_code_fails_the_case(tmp_path: Path, capsys) -> None:
    directory = copy_shipped(tmp_path)
    cases = directory / "tests" / "registered_access.yaml"
    cases.write_text(cases.read_text().replace("reasons: [not_linked]", "reasons: [expired]"))
    status, out, _ = run(capsys, "policy", "test", str(directory), "--json")
    report = json.loads(out)
    assert status == 1 and report["failed"] == 1
    failed = next(c for c in report["cases"] if not c["passed"])
    assert "expected reason(s) expired" in failed["problem"]


def test_unknown_persona_in_a_case_is_a_load_error(tmp_path: Path, capsys) -> None:
    directory = copy_shipped(tmp_path)
    (directory / "tests" / "extra.yaml").write_text("tests:\n  - {name: x, persona: zed, dataset: A, expect: allow}\n")
    status, _, err = run(capsys, "policy", "test", str(directory))
    assert status == 1 and "extra.yaml:2: persona: no persona 'zed'" in err


def test_explain_persona_prints_each_visa_considered(capsys) -> None:
    status, out, _ = run(
        capsys,
        "policy",
        "explain",
        "--policies",
        str(SHIPPED),
        "--dataset",
        "EGAD00001000001",
        "--persona",
        str(SHIPPED / "personas" / "dave.yaml"),
    )
    assert status == 3  # deny
    assert "DENY" in out
    for jti in ("dave-longer-id", "dave-upper-case", "dave-trailing-slash", "dave-spoofed-dac"):
        assert f"jti '{jti}'" in out
    assert "source 'https://ega-archive.org/dacs/EGAC00001000003' does not match list:trusted_dacs" in out
    assert "required visas" in out


def test_explain_json_has_decision_rule_and_required_document(capsys) -> None:
    status, out, _ = run(
        capsys,
        "policy",
        "explain",
        "--policies",
        str(SHIPPED),
        "--dataset",
        "NORDIC-COHORT-01",
        "--persona",
        str(SHIPPED / "personas" / "bob.yaml"),
        "--json",
    )
    report = json.loads(out)
    assert status == 0 and report["decision"]["allow"]
    assert report["rule"]["kind"] == "all_of" and report["rule"]["met"]
    assert report["required"]["format"] == "ga4gh-broker.required-visas/v1"
    uses = {b["use"] for b in report["decision"]["basis"]}
    assert uses == {"grant", "link"}


def test_required_prints_the_document(capsys) -> None:
    status, out, _ = run(capsys, "policy", "required", "--policies", str(SHIPPED), "--dataset", "EGAD5000000001")
    document = json.loads(out)
    assert status == 0
    assert document["requires"]["visa"]["value"] == {"one_of": ["https://ega-archive.org/datasets/EGAD5000000001"]}
    status, _, err = run(capsys, "policy", "required", "--policies", str(SHIPPED), "--dataset", "NOPE")
    assert status == 1 and "no dataset 'NOPE'" in err


def test_diff_lists_the_decisions_a_change_flips(tmp_path: Path, capsys) -> None:
    new = copy_shipped(tmp_path)
    lists = new / "lists.yaml"
    lists.write_text(lists.read_text().replace("values: [uio.no, ki.se, helsinki.fi]", "values: [ki.se, helsinki.fi]"))
    status, out, _ = run(
        capsys,
        "policy",
        "diff",
        str(SHIPPED),
        str(new),
        "--personas",
        str(SHIPPED / "personas"),
        "--tests",
        str(SHIPPED / "tests"),
    )
    assert status == 0
    assert "1 decision(s) flip" in out
    assert "bob on NORDIC-COHORT-01: allow -> deny" in out
    status, out, _ = run(
        capsys,
        "policy",
        "diff",
        str(SHIPPED),
        str(new),
        "--personas",
        str(SHIPPED / "personas"),
        "--json",
        "--exit-code",
    )
    report = json.loads(out)
    assert status == 1 and [(f["persona"], f["dataset"]) for f in report["flips"]] == [("bob", "NORDIC-COHORT-01")]


def test_diff_of_identical_rules_flips_nothing(capsys) -> None:
    status, out, _ = run(
        capsys,
        "policy",
        "diff",
        str(SHIPPED),
        str(SHIPPED),
        "--personas",
        str(SHIPPED / "personas"),
        "--dataset",
        "EGAD5000000042",
        "--exit-code",
    )
    assert status == 0 and out.startswith("0 decision(s) flip")


def test_explain_passport_verifies_it_with_the_trust_settings(tmp_path: Path, capsys) -> None:
    now = int(time.time())
    broker = Signer("https://other-broker.example/", TestKey.generate("ES256", kid="broker-1"))
    issuer = Signer(
        "https://permissions.ega.example.org/",
        TestKey.generate("ES256", kid="ega-1"),
        jku="https://permissions.ega.example.org/jwks",
    )
    stranger = Signer(
        "https://stranger.example/", TestKey.generate("ES256", kid="s-1"), jku="https://stranger.example/jwks"
    )
    dataset = "EGAD5000000042"
    grant = issuer.visa(
        "alice",
        visa_object(
            value=f"https://ega-archive.org/datasets/{dataset}",
            source="https://ega-archive.org/dacs/EGAC00001000002",
            by="dac",
            asserted=now - 86400,
        ),
        iat=now - 60,
        exp=now + 3600,
        jti="grant-1",
    )
    linker = issuer.visa(
        "alice",
        visa_object(
            "LinkedIdentities",
            format_linked_identities([(broker.iss, "alice")]),
            source="https://permissions.ega.example.org/",
            by="system",
            asserted=now - 86400,
        ),
        iat=now - 60,
        exp=now + 7200,
        jti="link-1",
    )
    untrusted = stranger.visa(
        "alice",
        visa_object(
            value=f"https://ega-archive.org/datasets/{dataset}", source="https://ega-archive.org/dacs/EGAC00001000002"
        ),
        iat=now - 60,
        exp=now + 3600,
        jti="stranger-1",
    )
    passport = broker.passport([grant, linker, untrusted], "alice", iat=now - 10, exp=now + 600)
    (tmp_path / "passport.jwt").write_text(passport)
    settings = {
        "issuer": "https://broker.test/",
        "data_dir": str(tmp_path / "var"),
        "trust": {
            "visa_issuers": [{"iss": issuer.iss, "jwks": issuer.key.jwks()}],
            "brokers": [{"iss": broker.iss, "jwks": broker.key.jwks()}],
        },
        "policy": {"directory": str(SHIPPED)},
    }
    (tmp_path / "settings.yaml").write_text(json.dumps(settings))
    status, out, err = run(
        capsys,
        "-c",
        str(tmp_path / "settings.yaml"),
        "policy",
        "explain",
        "--dataset",
        dataset,
        "--passport",
        str(tmp_path / "passport.jwt"),
    )
    assert status == 0, out + err
    assert "ALLOW" in out and "holder iss 'https://other-broker.example/', sub 'alice'" in out
    assert "linked to the holder by 1 LinkedIdentities visa(s)" in out
    assert "visas ignored by verification" in out and "#2: untrusted_issuer" in out
    assert passport not in out + err and grant not in out + err  # tokens are never printed


@pytest.mark.parametrize(("binding", "verdict"), [("linked", "DENY"), ("same_sub", "ALLOW")])
def test_explain_passport_uses_the_signing_brokers_identity_binding(
    tmp_path: Path, capsys, binding: str, verdict: str
) -> None:
    """A grant for the passport's own sub, with no LinkedIdentities visa: only a ``same_sub`` broker vouches."""
    now = int(time.time())
    broker = Signer("https://other-broker.example/", TestKey.generate("ES256", kid="broker-1"))
    issuer = Signer(
        "https://permissions.ega.example.org/",
        TestKey.generate("ES256", kid="ega-1"),
        jku="https://permissions.ega.example.org/jwks",
    )
    dataset = "EGAD5000000042"
    grant = issuer.visa(
        "alice",
        visa_object(
            value=f"https://ega-archive.org/datasets/{dataset}",
            source="https://ega-archive.org/dacs/EGAC00001000002",
            by="dac",
            asserted=now - 86400,
        ),
        iat=now - 60,
        exp=now + 3600,
        jti="grant-1",
    )
    (tmp_path / "passport.jwt").write_text(broker.passport([grant], "alice", iat=now - 10, exp=now + 600))
    settings = {
        "issuer": "https://broker.test/",
        "data_dir": str(tmp_path / "var"),
        "trust": {
            "visa_issuers": [{"iss": issuer.iss, "jwks": issuer.key.jwks()}],
            "brokers": [{"iss": broker.iss, "jwks": broker.key.jwks(), "identity_binding": binding}],
        },
        "policy": {"directory": str(SHIPPED)},
    }
    (tmp_path / "settings.yaml").write_text(json.dumps(settings))
    status, out, err = run(
        capsys,
        "-c",
        str(tmp_path / "settings.yaml"),
        "policy",
        "explain",
        "--dataset",
        dataset,
        "--passport",
        str(tmp_path / "passport.jwt"),
    )
    assert status == (0 if verdict == "ALLOW" else 3), out + err
    assert out.startswith(f"dataset {dataset} (read): {verdict}"), out
    if verdict == "DENY":
        assert "not_linked" in out
