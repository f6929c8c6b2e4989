"""CSV import of grants: all or nothing, with a per-line error report."""

from __future__ import annotations

import pytest

from broker.dac.errors import Forbidden, ImportRejected, ValidationError
from broker.dac.services import DacServices
from tests.dac.conftest import T0
from tests.support.legacy_store import Store

GOOD = (
    "identity,dataset,end,start,reason\n"
    "researcher,EGAD-A1,2025-12-31,,study one\n"
    'researcher-2,A-7,2025-09-01T12:00:00Z,1750100000,"study, two"\n'
    "\n"
    "researcher,A-8,1760000000,,\n"
)


def _all_grants(svc: DacServices) -> list[object]:
    return [*svc.repository.grants_of("researcher"), *svc.repository.grants_of("researcher-2")]


def test_good_file_imports_every_line_with_audit(svc: DacServices, store: Store) -> None:
    made = svc.grants.import_csv("chair-a", GOOD)
    assert [(g.identity_id, g.dataset, g.end) for g in made] == [
        ("researcher", "EGAD-A1", 1_767_139_200),
        ("researcher-2", "A-7", 1_756_728_000),
        ("researcher", "A-8", 1_760_000_000),
    ]
    assert made[1].start == 1_750_100_000 and made[1].reason == "study, two"
    assert all(g.granted_by == "chair-a" and g.dac == "A" and g.granted_at == T0 for g in made)
    assert len(_all_grants(svc)) == 3
    events = [r.event for r in store.audit_records()]
    assert [e["event"] for e in events] == ["grants.import", "grants.create", "grants.create", "grants.create"]
    assert events[0]["count"] == 3 and events[0]["actor"] == "chair-a"


def test_bad_lines_are_reported_by_number_and_nothing_is_imported(svc: DacServices, store: Store) -> None:
    text = (
        "identity,dataset,end\n"  # line 1
        "researcher,EGAD-A1,2025-12-31\n"  # 2 good
        "nobody,A-1,2025-12-31\n"  # 3 unknown identity
        "researcher,A-2,someday\n"  # 4 bad date
        "researcher,A-3\n"  # 5 too few fields
        "researcher,EGAD-A1,2025-11-30\n"  # 6 same identity and dataset as line 2
        "researcher,bad id,2025-12-31\n"  # 7 bad dataset id
        "researcher,A-4,2025-06-01\n"  # 8 end before now
    )
    with pytest.raises(ImportRejected) as info:
        svc.grants.import_csv("chair-a", text)
    lines = [(e.line, e.message) for e in info.value.errors]
    assert [n for n, _ in lines] == [3, 4, 5, 6, 7, 8]
    assert "identity" in lines[0][1] and "end" in lines[1][1] and "expected 3 fields" in lines[2][1]
    assert "line 2" in lines[3][1] and "dataset" in lines[4][1] and "end" in lines[5][1]
    assert info.value.body()["lines"][0] == {"line": 3, "message": lines[0][1]}
    assert _all_grants(svc) == []
    assert list(store.audit_records()) == []


def test_ga12_a_line_for_another_dac_refuses_the_whole_file(svc: DacServices, store: Store) -> None:
    text = "identity,dataset,end\nresearcher,EGAD-A1,2025-12-31\nresearcher,EGAD-B1,2025-12-31\n"
    with pytest.raises(Forbidden) as info:
        svc.grants.import_csv("chair-a", text)
    assert info.value.extra["lines"] == [{"line": 3, "message": "you may not grant access to this dataset"}]
    assert _all_grants(svc) == []
    assert [r.event["event"] for r in store.audit_records()] == ["dac.denied"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "empty"),
        ("who,dataset,end\nresearcher,A-1,2025-12-31\n", "missing column(s) identity"),
        ("identity,dataset,end,colour\n", "unknown column(s) colour"),
        ("identity,dataset,end,end\n", "named twice"),
        ('identity,dataset,end\n"researcher,A-1,2025-12-31\n', "unreadable"),
    ],
)
def test_broken_files_are_rejected_with_line_numbers(svc: DacServices, text: str, expected: str) -> None:
    with pytest.raises(ImportRejected) as info:
        svc.grants.import_csv("chair-a", text)
    assert expected in info.value.errors[0].message


def test_header_only_file_holds_no_grants(svc: DacServices) -> None:
    with pytest.raises(ValidationError):
        svc.grants.import_csv("chair-a", "identity,dataset,end\n")
