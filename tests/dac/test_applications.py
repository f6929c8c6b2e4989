"""Applications: the state machine, four-eyes decisions, conflicts of interest, comments, revocation.

Runs on SQLite and the session's real redis-server (the ``settings`` fixture of conftest). DAC A
needs two distinct approvals here and has versioned terms on its datasets; DAC B keeps the
default of one approval and no terms.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.dac.applications import Answers, Notice
from broker.dac.errors import Conflict, Forbidden, ValidationError
from broker.dac.grants import GrantRequest
from broker.dac.records import Application
from broker.dac.services import DacServices
from broker.dac.settings import ApplicationSettings, DatasetTermsSettings
from broker.settings import Settings
from tests.dac.conftest import DAY, ISSUER, T0, Clock, SettingsWithDac, dac_config, store_settings
from tests.dac.interleave import PausedChange, meanwhile
from tests.dac.test_invariants import concurrently
from tests.support.legacy_store import Store

TERMS_V = "2026-1"
FULL = Answers(
    title="Rare variants in kidney disease",
    purpose_codes=["DUO:0000007"],
    purpose_text="Association study of rare variants.",
    institution="Example University",
    co_applicants=["Researcher-2@example.org"],
    accepted_terms=[f"EGAD-A1@{TERMS_V}"],
)


def four_eyes_config() -> object:
    base = dac_config()
    a, b = base.committees
    a = a.model_copy(
        update={
            "application": ApplicationSettings(
                required_approvals=2,
                terms=[DatasetTermsSettings(datasets=["EGAD-A1", "A-*"], version=TERMS_V, text="Use it well.")],
            )
        }
    )
    return base.model_copy(update={"committees": [a, b]})


@pytest.fixture(params=["sqlite", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> SettingsWithDac:
    return SettingsWithDac(
        issuer=ISSUER,
        data_dir=str(tmp_path / "data"),
        dac=four_eyes_config(),
        store=store_settings(request.param, request),
    )


@pytest.fixture
def heard(svc: DacServices) -> list[Notice]:
    out: list[Notice] = []
    svc.applications.notify.append(out.append)
    return out


def submitted(svc: DacServices, who: str = "researcher", answers: Answers = FULL) -> Application:
    app = svc.applications.create(who, ["EGAD-A1"], answers)
    return svc.applications.submit(who, app.id)


def events(store: Store) -> list[str]:
    return [r.event["event"] for r in store.audit_records()]


def test_a_draft_is_submitted_only_when_every_required_field_and_the_current_terms_are_there(
    svc: DacServices, store: Store
) -> None:
    draft = svc.applications.create("researcher", ["EGAD-A1"], Answers(title="Only a title"))
    assert draft.state == "draft" and draft.dac == "A"
    with pytest.raises(ValidationError) as missing:
        svc.applications.submit("researcher", draft.id)
    assert set(missing.value.fields) == {"purpose_codes", "purpose_text", "institution", "accepted_terms"}
    with pytest.raises(ValidationError) as stale:
        svc.applications.update("researcher", draft.id, Answers(accepted_terms=["EGAD-A1@2025-9"]))
    assert "accepted_terms" in stale.value.fields
    svc.applications.update("researcher", draft.id, FULL)
    sent = svc.applications.submit("researcher", draft.id)
    assert sent.state == "submitted" and sent.co_applicants == ("researcher-2@example.org",)
    assert events(store) == ["applications.create", "applications.update", "applications.submit"]
    (record,) = [r.event for r in store.audit_records() if r.event["event"] == "applications.submit"]
    assert (record["actor"], record["from"], record["to"], record["dataset"]) == (
        "researcher",
        "draft",
        "submitted",
        "EGAD-A1",
    )


def test_bad_answers_name_each_field(svc: DacServices) -> None:
    with pytest.raises(ValidationError) as bad:
        svc.applications.create(
            "researcher",
            ["EGAD-A1"],
            Answers(purpose_codes=["DUO:9999999"], co_applicants=["not-an-address"], title="x" * 500),
        )
    assert set(bad.value.fields) == {"purpose_codes", "co_applicants", "title"}
    with pytest.raises(ValidationError) as mixed:
        svc.applications.create("researcher", ["EGAD-A1", "EGAD-B1"])
    assert mixed.value.fields == {"datasets": "governed by different DACs"}
    with pytest.raises(ValidationError):
        svc.applications.create("researcher", ["NOBODY-1"])
    with pytest.raises(Forbidden):
        svc.applications.create(None, ["EGAD-A1"])


def test_four_eyes_two_distinct_members_must_approve_and_the_grant_ends_at_the_earliest_end(
    svc: DacServices, store: Store, clock: Clock, heard: list[Notice]
) -> None:
    app = submitted(svc)
    first = svc.applications.approve("member-a", app.id, T0 + 200 * DAY, "fine")
    assert first.state == "submitted" and first.approvals == ("member-a",) and first.grants == ()
    again = svc.applications.approve("member-a", app.id, T0 + 200 * DAY, "fine")
    assert again.approvals == ("member-a",), "one member counts once"
    assert svc.grants.live_grants("researcher") == []
    second = svc.applications.approve("chair-a", app.id, T0 + 100 * DAY, "agreed")
    assert second.state == "approved" and second.approvals == ("member-a", "chair-a")
    ((grant, committee),) = svc.grants.live_grants("researcher")
    assert (grant.end, grant.application, grant.purpose_codes, committee.id) == (
        T0 + 100 * DAY,
        app.id,
        ("DUO:0000007",),
        "A",
    )
    assert second.grants == (grant.id,)
    assert [n.event for n in heard] == ["submitted", "approved"]
    created = [r.event for r in store.audit_records() if r.event["event"] == "grants.create"]
    assert len(created) == 1 and created[0]["via"] == "application" and created[0]["purpose"] == ["DUO:0000007"]


def test_nobody_decides_an_application_they_are_an_applicant_or_co_applicant_on(svc: DacServices, store: Store) -> None:
    own = submitted(svc, "member-a", Answers(**{**FULL.__dict__, "co_applicants": []}))
    for action in (
        lambda: svc.applications.approve("member-a", own.id, T0 + 10 * DAY),
        lambda: svc.applications.reject("member-a", own.id, "no"),
        lambda: svc.applications.send_back("member-a", own.id, "fix"),
    ):
        with pytest.raises(Forbidden):
            action()
    co = submitted(svc, "researcher", Answers(**{**FULL.__dict__, "co_applicants": ["chair-a@example.org"]}))
    with pytest.raises(Forbidden):
        svc.applications.approve("chair-a", co.id, T0 + 10 * DAY)
    assert svc.applications.get("chair-a", co.id).state == "submitted"
    assert events(store).count("dac.denied") == 4


def test_other_dacs_and_researchers_cannot_see_or_decide(svc: DacServices) -> None:
    app = submitted(svc)
    for who in ("member-b", "researcher-2-not-co"):
        with pytest.raises(Forbidden):
            svc.applications.get(who, app.id)
    with pytest.raises(Forbidden):
        svc.applications.approve("member-b", app.id, T0 + 10 * DAY)
    with pytest.raises(Forbidden):
        svc.applications.list("researcher")
    assert [a.id for a in svc.applications.list("member-a")] == [app.id]
    assert svc.applications.list("member-b") == []
    assert [a.id for a in svc.applications.list("admin", dac="A", state="submitted")] == [app.id]


def test_return_then_resubmit_starts_a_new_review(svc: DacServices, heard: list[Notice]) -> None:
    app = submitted(svc)
    svc.applications.approve("member-a", app.id, T0 + 30 * DAY)
    with pytest.raises(ValidationError):
        svc.applications.send_back("chair-a", app.id, "")
    back = svc.applications.send_back("chair-a", app.id, "Say which cohort.")
    assert (back.state, back.decision_reason, back.approvals) == ("returned", "Say which cohort.", ())
    svc.applications.update("researcher", app.id, Answers(purpose_text="Cohort 2 only."))
    again = svc.applications.submit("researcher", app.id)
    assert again.state == "submitted" and again.approvals == ()
    assert svc.applications.approve("chair-a", app.id, T0 + 30 * DAY).state == "submitted"
    assert [n.event for n in heard] == ["submitted", "returned", "submitted"]


def test_reject_is_final_and_withdrawn_cannot_be_approved(svc: DacServices) -> None:
    app = submitted(svc)
    rejected = svc.applications.reject("chair-a", app.id, "Out of scope.")
    assert rejected.state == "rejected"
    with pytest.raises(Conflict):
        svc.applications.approve("member-a", app.id, T0 + 30 * DAY)
    other = submitted(svc)
    with pytest.raises(Forbidden):
        svc.applications.withdraw("member-a", other.id)  # only the applicant
    assert svc.applications.withdraw("researcher", other.id, "no longer needed").state == "withdrawn"
    with pytest.raises(Conflict):
        svc.applications.approve("member-a", other.id, T0 + 30 * DAY)
    assert svc.grants.live_grants("researcher") == []


def test_comment_thread_between_applicant_side_and_dac(svc: DacServices, clock: Clock) -> None:
    app = submitted(svc)
    svc.applications.comment("member-a", app.id, "Which cohort?")
    clock.advance(60)
    svc.applications.comment("researcher-2", app.id, "Cohort 2 (co-applicant).")
    with pytest.raises(Forbidden):
        svc.applications.comment("member-b", app.id, "hello")
    with pytest.raises(ValidationError):
        svc.applications.comment("researcher", app.id, "   ")
    thread = svc.applications.comments("researcher", app.id)
    assert [(c.author, c.side, c.text) for c in thread] == [
        ("member-a", "dac", "Which cohort?"),
        ("researcher-2", "applicant", "Cohort 2 (co-applicant)."),
    ]
    assert [a.id for a in svc.applications.mine("researcher-2")] == [app.id]
    with pytest.raises(Forbidden):
        svc.applications.approve("researcher-2", app.id, T0 + DAY)


def test_revocation_closes_the_application_with_a_reason_the_researcher_sees(
    svc: DacServices, revoked: list[str], heard: list[Notice]
) -> None:
    app = submitted(svc)
    svc.applications.approve("member-a", app.id, T0 + 30 * DAY)
    approved = svc.applications.approve("chair-a", app.id, T0 + 30 * DAY)
    closed = svc.applications.revoke("chair-a", app.id, "Data shared outside the project.")
    assert (closed.state, closed.closed_reason) == ("closed", "Data shared outside the project.")
    mine = svc.grants.grants_of("researcher", "researcher")
    assert [(g.id, g.revoke_reason) for g in mine] == [(approved.grants[0], "Data shared outside the project.")]
    assert revoked == list(approved.grants) and svc.grants.live_grants("researcher") == []
    assert svc.applications.get("researcher", app.id).closed_reason == "Data shared outside the project."
    assert heard[-1].event == "revoked"


def test_revoking_the_grant_directly_closes_its_application(svc: DacServices) -> None:
    app = submitted(svc)
    svc.applications.approve("member-a", app.id, T0 + 30 * DAY)
    approved = svc.applications.approve("chair-a", app.id, T0 + 30 * DAY)
    svc.grants.revoke("member-a", approved.grants[0], "misuse")
    after = svc.applications.get("researcher", app.id)
    assert (after.state, after.closed_reason) == ("closed", "misuse")


def test_a_failing_notification_never_blocks_a_decision(svc: DacServices) -> None:
    def broken(notice: Notice) -> None:
        raise OSError("mail server down")

    svc.applications.notify.append(broken)
    app = submitted(svc)
    svc.applications.approve("member-a", app.id, T0 + 30 * DAY)
    assert svc.applications.approve("chair-a", app.id, T0 + 30 * DAY).state == "approved"


def test_direct_grants_are_for_chairs_and_admins_and_never_to_oneself(svc: DacServices, store: Store) -> None:
    with pytest.raises(Forbidden):
        svc.grants.grant("member-a", GrantRequest("researcher", "EGAD-A1", end=T0 + DAY))
    with pytest.raises(Forbidden):
        svc.grants.grant("chair-a", GrantRequest("chair-a", "EGAD-A1", end=T0 + DAY))
    with pytest.raises(Forbidden):
        svc.grants.grant("admin", GrantRequest("admin", "EGAD-A1", end=T0 + DAY))
    with pytest.raises(Forbidden):
        svc.grants.import_csv("member-a", f"identity,dataset,end\nresearcher,A-1,{T0 + DAY}\n")
    with pytest.raises(Forbidden):
        svc.grants.import_csv("chair-a", f"identity,dataset,end\nchair-a,A-1,{T0 + DAY}\n")
    made = svc.grants.grant("chair-a", GrantRequest("member-a", "EGAD-A1", end=T0 + DAY, reason="reviewer"))
    with pytest.raises(Forbidden):
        svc.grants.renew("member-a", made.id, T0 + 2 * DAY)
    assert svc.grants.renew("admin", made.id, T0 + 2 * DAY).end == T0 + 2 * DAY
    denied = [r.event for r in store.audit_records() if r.event["event"] == "dac.denied"]
    assert [e.get("why") for e in denied if e["action"] == "grants.create"] == ["role", "self", "self"]


def test_settings_refuse_unknown_purpose_codes_and_terms_without_text(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="DUO term"):
        Settings(
            issuer=ISSUER,
            data_dir=str(tmp_path),
            dac={
                "committees": [
                    {
                        "id": "A",
                        "source": "https://dac.example/A",
                        "application": {"purpose_codes": ["GRU"]},
                    }
                ]
            },
        )
    with pytest.raises(Exception, match="licence text or its url"):
        Settings(
            issuer=ISSUER,
            data_dir=str(tmp_path),
            dac={
                "committees": [
                    {
                        "id": "A",
                        "source": "https://dac.example/A",
                        "application": {"terms": [{"datasets": ["X"], "version": "1"}]},
                    }
                ]
            },
        )


# ---------------------------------------------------------------------------- races (two processes / clients)


def _grants_of(svc: DacServices) -> list[str]:
    return [g.id for g in svc.repository.grants_of("researcher")]


def test_two_approvers_at_the_same_moment_under_four_eyes_make_exactly_one_grant(
    settings: Settings, store: Store, svc: DacServices, clock: Clock
) -> None:
    app = submitted(svc)
    results = concurrently(
        settings,
        clock,
        [
            lambda s: s.applications.approve("member-a", app.id, T0 + 30 * DAY),
            lambda s: s.applications.approve("chair-a", app.id, T0 + 30 * DAY),
        ],
    )
    assert all(isinstance(r, Application) for r in results), results
    final = svc.applications.get("admin", app.id)
    assert final.state == "approved" and set(final.approvals) == {"member-a", "chair-a"}
    assert _grants_of(svc) == list(final.grants) and len(final.grants) == 1
    assert events(store).count("grants.create") == 1


def test_an_approval_paused_inside_its_transaction_and_a_second_approval_meanwhile_make_one_grant(
    settings: Settings, store: Store, svc: DacServices, clock: Clock
) -> None:
    app = submitted(svc)
    paused = PausedChange(settings, clock(), "approve", actor="member-a", application=app.id, end=T0 + 30 * DAY)
    result, other = meanwhile(lambda: svc.applications.approve("chair-a", app.id, T0 + 30 * DAY), paused)
    assert isinstance(result, Application) and other.ok, (result, other)
    final = svc.applications.get("admin", app.id)
    assert final.state == "approved" and len(final.grants) == 1 and _grants_of(svc) == list(final.grants)
    assert events(store).count("grants.create") == 1


@pytest.mark.parametrize("paused_side", ["approve", "withdraw"])
def test_a_withdrawal_racing_the_deciding_approval_never_leaves_a_grant_after_the_withdrawal(
    settings: Settings, store: Store, svc: DacServices, clock: Clock, paused_side: str
) -> None:
    app = submitted(svc)
    svc.applications.approve("member-a", app.id, T0 + 30 * DAY)  # one approval in; the next one decides
    if paused_side == "approve":
        paused = PausedChange(settings, clock(), "approve", actor="chair-a", application=app.id, end=T0 + 30 * DAY)
        here, other = meanwhile(lambda: svc.applications.withdraw("researcher", app.id, "changed plans"), paused)
    else:
        paused = PausedChange(settings, clock(), "withdraw", actor="researcher", application=app.id)
        here, other = meanwhile(lambda: svc.applications.approve("chair-a", app.id, T0 + 30 * DAY), paused)
    final = svc.applications.get("admin", app.id)
    live = svc.grants.live_grants("researcher")
    if final.state == "withdrawn":
        assert live == [] and _grants_of(svc) == [] and "grants.create" not in events(store)
    else:
        assert final.state == "approved" and len(live) == 1 and "applications.withdraw" not in events(store)
    outcomes = [here if not isinstance(here, Conflict) else None, other if other.ok else None]
    assert sum(o is not None for o in outcomes) == 1, (here, other)  # exactly one of the two took effect


def test_an_application_for_a_dataset_already_held_renews_that_grant(svc: DacServices, store: Store) -> None:
    first = submitted(svc)
    svc.applications.approve("member-a", first.id, T0 + 30 * DAY)
    (grant_id,) = svc.applications.approve("chair-a", first.id, T0 + 30 * DAY).grants
    again = submitted(svc)
    svc.applications.approve("member-a", again.id, T0 + 300 * DAY)
    renewed = svc.applications.approve("chair-a", again.id, T0 + 300 * DAY)
    assert renewed.state == "approved" and renewed.grants == (grant_id,)
    ((grant, _),) = svc.grants.live_grants("researcher")
    assert (grant.id, grant.end, grant.application) == (grant_id, T0 + 300 * DAY, again.id)
    renew = [r.event for r in store.audit_records() if r.event["event"] == "grants.renew"]
    assert len(renew) == 1 and renew[0]["previous_end"] == T0 + 30 * DAY and renew[0]["via"] == "application"
    shorter = submitted(svc)
    svc.applications.approve("member-a", shorter.id, T0 + 10 * DAY)
    with pytest.raises(Conflict):  # a renewal never shortens what the applicant holds
        svc.applications.approve("chair-a", shorter.id, T0 + 10 * DAY)
