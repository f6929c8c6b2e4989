"""The hash-chained audit log: the canonical hash, tamper detection on each backend, the CLI."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.cli import main
from broker.settings import Settings
from broker.store.audit import (
    GENESIS_HASH,
    MALFORMED_KEY,
    build_record,
    chain_hash,
    normalize_event,
    parse_anchor,
    verify_chain,
)
from broker.store.base import AuditRecord
from tests.store.conftest import Backend, forged


def chain(n: int) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    prev = GENESIS_HASH
    for i in range(1, n + 1):
        records.append(build_record(i, 1000 + i, {"action": "grant", "n": i}, prev))
        prev = records[-1].hash
    return records


def codes(problems: list) -> set[tuple[int, str]]:  # type: ignore[type-arg]
    return {(p.seq, p.problem) for p in problems}


# ---------------------------------------------------------------------------- the canonical form


def test_chain_hash_is_sha256_of_the_documented_canonical_json() -> None:
    event = {"b": [1, "é", None, True], "a": {"z": 1.5, "y": "\U0001f600"}}
    expected_text = (
        '[7,1700000000,{"a":{"y":"\\ud83d\\ude00","z":1.5},"b":[1,"\\u00e9",null,true]},"' + "ab" * 32 + '"]'
    )
    assert chain_hash(7, 1_700_000_000, event, "ab" * 32) == hashlib.sha256(expected_text.encode()).hexdigest()


def test_chain_hash_matches_fixed_vectors() -> None:
    """Pinned (the first checked with `sha256sum`): a change to the encoding would orphan every stored chain."""
    first = chain_hash(1, 0, {}, GENESIS_HASH)
    assert first == "a83a6cef84b5a0254438ec38449d842a4554ef9cf73d3a80e960bf29feacdb1d"
    assert chain_hash(2, 1_700_000_000, {"action": "grant", "dataset": "EGAD1", "actor": "alice"}, first) == (
        "f4c97cdcaa6dc89f474997d5a8a495f690e09588bbaa7902c60b97f69919f7ad"
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(event=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
def test_an_event_hashes_the_same_after_a_json_round_trip(event: dict) -> None:  # type: ignore[type-arg]
    """What a backend stores and reads back verifies: the hash survives encode/decode."""
    normalized = normalize_event(event)
    record = build_record(3, 5, normalized, GENESIS_HASH)
    reread = json.loads(json.dumps(normalized))
    assert chain_hash(3, 5, reread, GENESIS_HASH) == record.hash


@settings(max_examples=100, deadline=None)
@given(event=st.dictionaries(st.text(max_size=8), json_values, min_size=1, max_size=5), data=st.data())
def test_any_change_to_an_event_is_detected(event: dict, data: st.DataObject) -> None:  # type: ignore[type-arg]
    records = chain(3)
    records[1] = build_record(2, 1002, normalize_event(event), records[0].hash)
    records[2] = build_record(3, 1003, records[2].event, records[1].hash)
    assert verify_chain(records) == []
    key = data.draw(st.sampled_from(sorted(event)))
    other = data.draw(json_values.filter(lambda v: json.dumps(v) != json.dumps(records[1].event[key])))
    edited = AuditRecord(2, 1002, {**records[1].event, key: other}, records[1].prev_hash, records[1].hash)
    assert (2, "hash_mismatch") in codes(verify_chain([records[0], edited, records[2]]))


# ---------------------------------------------------------------------------- verify_chain (pure)


def test_an_intact_chain_has_no_problems() -> None:
    assert verify_chain(chain(5)) == []
    assert verify_chain([]) == []


def test_an_edited_field_is_a_hash_mismatch_at_that_record() -> None:
    records = chain(4)
    r = records[2]
    for edited in (
        AuditRecord(r.seq, r.at + 1, r.event, r.prev_hash, r.hash),
        AuditRecord(r.seq, r.at, {**r.event, "n": 99}, r.prev_hash, r.hash),
        AuditRecord(r.seq, r.at, r.event, r.prev_hash, "f" * 64),
    ):
        problems = verify_chain([*records[:2], edited, records[3]])
        assert (3, "hash_mismatch") in codes(problems)


def test_a_rewritten_record_with_a_recomputed_hash_breaks_the_link_to_the_next() -> None:
    records = chain(4)
    records[1] = forged(2, records[0].hash)
    assert codes(verify_chain(records)) == {(3, "chain_broken")}


def test_a_removed_record_is_a_gap_and_a_broken_chain() -> None:
    records = chain(5)
    del records[2]
    assert codes(verify_chain(records)) == {(4, "gap"), (4, "chain_broken")}


def test_a_removed_first_record_is_detected() -> None:
    assert codes(verify_chain(chain(3)[1:])) == {(2, "gap"), (2, "chain_broken")}


def test_reordered_records_are_detected() -> None:
    records = chain(5)
    records[1], records[3] = records[3], records[1]
    found = codes(verify_chain(records))
    assert (2, "out_of_order") in found
    assert (4, "chain_broken") in found


def test_an_inserted_record_is_detected() -> None:
    records = chain(4)
    records.insert(2, forged(3, records[1].hash))
    found = codes(verify_chain(records))
    assert (3, "out_of_order") in found and (3, "chain_broken") in found


def test_an_anchor_catches_a_truncated_or_rewritten_tail() -> None:
    records = chain(5)
    anchor = (5, records[4].hash)
    assert verify_chain(records, anchor=anchor) == []
    assert codes(verify_chain(records[:4], anchor=anchor)) == {(5, "anchor_missing")}
    rewritten = [*records[:4], forged(5, records[3].hash)]
    assert verify_chain(rewritten) == []  # a consistent rewrite is invisible without an anchor...
    assert codes(verify_chain(rewritten, anchor=anchor)) == {(5, "anchor_mismatch")}  # ...but not with one


def test_a_malformed_stored_record_is_reported_not_raised() -> None:
    records = chain(3)
    records[1] = AuditRecord(2, 0, {MALFORMED_KEY: "undecodable"}, "", "")
    found = codes(verify_chain(records))
    assert (2, "malformed") in found and (3, "chain_broken") in found


@pytest.mark.parametrize(
    "text", ["", "5", "5:", ":" + "a" * 64, "0:" + "a" * 64, "5:" + "A" * 64, "x:" + "a" * 64, "5:" + "a" * 63]
)
def test_a_bad_anchor_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_anchor(text)


# ---------------------------------------------------------------------------- tampering with each backend


def _fill(backend: Backend, n: int = 6) -> list[AuditRecord]:
    records = [
        backend.store.audit_append({"action": "grant", "actor": "alice", "n": i}, at=1000 + i) for i in range(1, n + 1)
    ]
    assert verify_chain(backend.store.audit_records()) == []
    return records


def test_an_event_edited_in_the_backend_is_found(backend: Backend) -> None:
    _fill(backend)
    backend.tamper.edit_event(3, {"action": "grant", "actor": "mallory", "n": 3})
    assert codes(verify_chain(backend.store.audit_records())) == {(3, "hash_mismatch")}


def test_a_record_rewritten_with_a_valid_hash_in_the_backend_is_found(backend: Backend) -> None:
    records = _fill(backend)
    backend.tamper.replace_record(forged(3, records[1].hash))
    assert codes(verify_chain(backend.store.audit_records())) == {(4, "chain_broken")}


def test_a_record_deleted_in_the_backend_is_found(backend: Backend) -> None:
    _fill(backend)
    backend.tamper.delete(4)
    assert codes(verify_chain(backend.store.audit_records())) == {(5, "gap"), (5, "chain_broken")}


def test_a_deleted_last_record_is_found_at_the_next_append_or_by_anchor(backend: Backend) -> None:
    records = _fill(backend)
    backend.tamper.delete(6)
    assert codes(verify_chain(backend.store.audit_records(), anchor=(6, records[5].hash))) == {(6, "anchor_missing")}
    appended = backend.store.audit_append({"action": "revoke"}, at=2000)
    assert appended.seq == 7  # the append cursor is kept apart from the records
    assert codes(verify_chain(backend.store.audit_records())) == {(7, "gap"), (7, "chain_broken")}


def test_records_reordered_in_the_backend_are_found(backend: Backend) -> None:
    _fill(backend)
    backend.tamper.swap(2, 5)
    problems = verify_chain(backend.store.audit_records())
    # both moved records, and the links around them, are named
    assert {2, 3, 5, 6} <= {
        p.seq for p in problems if p.problem in {"chain_broken", "hash_mismatch", "gap", "out_of_order"}
    }


def test_a_record_inserted_in_the_backend_is_found(backend: Backend) -> None:
    records = _fill(backend)
    backend.tamper.insert_after(3, forged(4, records[2].hash))
    found = codes(verify_chain(backend.store.audit_records()))
    # The record that followed the insertion point no longer links to its predecessor. SQLite had to
    # renumber it (4 -> 5) to make room, which also breaks the hashes of the renumbered records.
    if backend.kind == "sqlite":
        assert found == {(5, "chain_broken"), (5, "hash_mismatch"), (6, "hash_mismatch"), (7, "hash_mismatch")}
    else:
        assert found == {(4, "chain_broken"), (4, "out_of_order")}


def test_garbage_written_into_the_backend_is_reported_as_malformed(backend: Backend) -> None:
    _fill(backend, 3)
    if backend.kind == "sqlite":
        backend.tamper._exec(("UPDATE audit SET event = 'not json' WHERE seq = 2", ()))  # type: ignore[attr-defined]
    else:
        backend.tamper.client.zadd(backend.tamper.key, {"not json": 2.5})  # type: ignore[attr-defined]
    problems = verify_chain(backend.store.audit_records())
    assert any(p.problem == "malformed" for p in problems)


# ---------------------------------------------------------------------------- the command line


def _config(backend: Backend, tmp_path: Path) -> str:
    s: Settings = backend.settings
    path = tmp_path / "broker.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data_dir": s.data_dir,
                "store": {
                    "backend": s.store.backend,
                    "url": s.store.url.get_secret_value(),
                    "namespace": s.store.namespace,
                },
            }
        )
    )
    return str(path)


def test_audit_verify_command_prints_ok_with_the_count(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = _fill(backend, 4)
    config = _config(backend, tmp_path)
    assert main(["-c", config, "audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: 4 audit record(s)")
    assert f"4:{records[3].hash}" in out
    assert main(["-c", config, "audit", "verify", "--anchor", f"4:{records[3].hash}"]) == 0


def test_audit_verify_command_lists_each_problem_and_exits_1(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = _fill(backend, 5)
    backend.tamper.edit_event(2, {"action": "grant", "actor": "mallory"})
    backend.tamper.delete(4)
    config = _config(backend, tmp_path)
    assert main(["-c", config, "audit", "verify"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("seq 2: hash_mismatch")
    assert any(line.startswith("seq 5: gap") for line in lines)
    assert any(line.startswith("seq 5: chain_broken") for line in lines)
    assert lines[-1] == "FAILED: 3 problem(s) in 4 audit record(s)"
    assert main(["-c", config, "audit", "verify", "--anchor", f"4:{records[3].hash}"]) == 1


def test_audit_verify_command_with_no_store_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "nothing-here")}))
    assert main(["-c", str(config), "audit", "verify"]) == 1
    assert "no SQLite store" in capsys.readouterr().err
    assert not (tmp_path / "nothing-here").exists()  # verifying creates nothing


def test_audit_verify_command_refuses_a_bad_anchor(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", _config(backend, tmp_path), "audit", "verify", "--anchor", "nope"]) == 2
    assert "--anchor" in capsys.readouterr().err


# ---------------------------------------------------------------------------- audit list / export


def _events(backend: Backend) -> None:
    """A day of mixed events: gateway decisions, DAC changes, a login, at known times."""
    day = 1_767_225_600  # 2026-01-01T00:00:00Z
    append = backend.store.audit_append
    append({"event": "login", "identity_id": "id-alice", "connector": "local"}, at=day + 60)
    append({"event": "grants.create", "actor": "id-dac", "identity": "id-alice", "dataset": "DS1", "reason": "ok"}, day)
    append(
        {"event": "gateway.decision", "actor": "id-alice", "subject": "id-alice", "dataset": "DS1",
         "object_path": "a.bam", "outcome": "allow", "reason": ""},
        at=day + 3600,
    )  # fmt: skip
    append(
        {"event": "gateway.decision", "actor": "id-bob", "subject": "id-bob", "dataset": "DS1",
         "object_path": "a.bam", "outcome": "deny", "reason": "missing_visa"},
        at=day + 7200,
    )  # fmt: skip
    append({"event": "grants.revoke", "actor": "id-dac", "identity": "id-alice", "dataset": "DS1"}, at=day + 86400)
    append({"event": "gateway.decision", "subject": "id-alice", "dataset": "DS2", "outcome": "deny"}, at=day + 90000)


def _export(config: str, capsys: pytest.CaptureFixture[str], *filters: str) -> list[dict]:  # type: ignore[type-arg]
    assert main(["-c", config, "audit", "export", *filters]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_audit_export_filters_by_holder_dataset_event_and_time(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _events(backend)
    config = _config(backend, tmp_path)
    assert [r["seq"] for r in _export(config, capsys)] == [1, 2, 3, 4, 5, 6]
    assert [r["seq"] for r in _export(config, capsys, "--holder", "id-alice")] == [1, 2, 3, 5, 6]
    assert [r["seq"] for r in _export(config, capsys, "--holder", "id-alice", "--dataset", "DS1")] == [2, 3, 5]
    assert [r["seq"] for r in _export(config, capsys, "--event", "gateway.")] == [3, 4, 6]
    assert [r["seq"] for r in _export(config, capsys, "--event", "grants.revoke", "--event", "login")] == [1, 5]
    assert [r["seq"] for r in _export(config, capsys, "--actor", "id-dac")] == [2, 5]
    window = _export(config, capsys, "--since", "2026-01-01T01:00:00Z", "--until", "2026-01-02")
    assert [r["seq"] for r in window] == [3, 4]  # until is exclusive: the revoke at midnight is out
    assert _export(config, capsys, "--holder", "id-alice*") == []  # exact match, never a pattern
    assert _export(config, capsys, "--event", "gateway") == []  # a prefix must end in a dot


def test_audit_export_lines_carry_the_chain_so_an_excerpt_can_be_checked(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _events(backend)
    config = _config(backend, tmp_path)
    everything = _export(config, capsys)
    rebuilt = [AuditRecord(r["seq"], r["at"], r["event"], r["prev_hash"], r["hash"]) for r in everything]
    assert verify_chain(rebuilt) == []
    assert everything[0]["time"] == "2026-01-01T00:01:00Z"
    out = tmp_path / "excerpt.jsonl"
    assert main(["-c", config, "audit", "export", "--dataset", "DS2", "--out", str(out)]) == 0
    assert "wrote 1 audit record(s)" in capsys.readouterr().out
    assert [json.loads(line)["seq"] for line in out.read_text().splitlines()] == [6]


def test_audit_list_shows_the_newest_matches_as_a_table(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _events(backend)
    config = _config(backend, tmp_path)
    assert main(["-c", config, "audit", "list", "--event", "gateway.", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["SEQ", "TIME", "(UTC)", "EVENT", "ACTOR", "HOLDER", "DATASET", "DETAIL"]
    assert [line.split()[0] for line in lines[1:]] == ["4", "6"]  # the two newest, oldest first
    assert "deny missing_visa a.bam" in lines[1]
    assert main(["-c", config, "audit", "list", "--holder", "nobody"]) == 0
    assert "(no audit record matches)" in capsys.readouterr().out
    assert main(["-c", config, "audit", "list", "--json", "--limit", "1"]) == 0
    assert [r["seq"] for r in json.loads(capsys.readouterr().out)] == [6]


def test_audit_list_accepts_an_age_and_refuses_a_bad_time(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _events(backend)
    backend.store.audit_append({"event": "login", "identity_id": "id-now"}, at=int(time.time()) - 30)
    config = _config(backend, tmp_path)
    assert main(["-c", config, "audit", "list", "--since", "5m"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["7"]
    assert main(["-c", config, "audit", "list", "--since", "yesterday"]) == 2
    assert "--since: expected an ISO date" in capsys.readouterr().err
    assert main(["-c", config, "audit", "list", "--limit", "-1"]) == 2


def test_audit_list_never_creates_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "broker.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "nothing-here")}))
    for command in (["audit", "list"], ["audit", "export"]):
        assert main(["-c", str(config), *command]) == 1
        assert "no SQLite store" in capsys.readouterr().err
    assert not (tmp_path / "nothing-here").exists()


def test_audit_list_prints_control_characters_in_events_harmlessly(
    backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An event field comes from a request (a dataset id, a path): it must not drive the terminal."""
    backend.store.audit_append({"event": "gateway.decision", "dataset": "DS\x1b[2J", "outcome": "deny"}, at=1000)
    assert main(["-c", _config(backend, tmp_path), "audit", "list"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "DS?[2J" in out
