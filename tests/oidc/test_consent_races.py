"""Issue 10's race and fault rules for consent withdrawal against token issue, on SQLite and Redis.

Token issue starts a grant (``OidcRepository.start_grant``, the transaction that redeeming a code
or a device code commits before any token is minted); withdrawing consent writes the withdrawal
record (``OidcRepository.withdraw_consent``). One of the two runs in another process and is
paused inside its transaction at the kernel's fault hook (SQLite ``before_commit``: it has read,
decided, written and holds the write lock; Redis ``before_exec``: it has read and WATCHed, and
queued its writes), while the other runs here; then the paused one is released. Whatever the
order the backend imposes, a grant authorized before the withdrawal never yields a token that
works: either the grant is not started, or it is started and every access token from it is
refused as "consent withdrawn". A withdrawal cut before its commit leaves nothing (no record, no
audit line, the consent still remembered) and its retry makes it once.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from broker.keys.settings import KeySettings
from broker.oidc.consent import Consents
from broker.oidc.records import Consent, OAuthGrant
from broker.oidc.repository import OidcRepository
from broker.oidc.tokens import AccessTokens, InvalidToken
from broker.settings import Settings
from broker.store import open_kernel
from broker.store.base import StoreUnavailable
from broker.store.kernel import Kernel
from broker.store.settings import StoreSettings
from tests.dac.faults import fail_once
from tests.support.keys import open_ring

PAUSE_POINTS = {"sqlite": "before_commit", "redis": "before_exec"}
WAIT_SECONDS = 20.0
WHO, CLIENT = "alice-id", "app"


@pytest.fixture(params=["sqlite", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    store = StoreSettings()
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        store = StoreSettings(backend="redis", url=SecretStr(server.url), namespace=f"t-{uuid.uuid4().hex}")
    return Settings(
        issuer="https://op.example/",
        data_dir=str(tmp_path / "data"),
        store=store,
        keys=KeySettings(rotate_every_days=0),
    )


@pytest.fixture
def kernel(settings: Settings) -> Iterator[Kernel]:
    opened = open_kernel(settings.store, settings.sqlite_path)
    yield opened
    opened.close()


def _grant(authorized_ms: int) -> OAuthGrant:
    now = int(time.time())
    return OAuthGrant(
        grant_id=f"g-{uuid.uuid4().hex}",
        identity_id=WHO,
        client_id=CLIENT,
        scope=("openid",),
        authorized_ms=authorized_ms,
        started_at=now,
        expires_at=now + 3600,
        keep_until=now + 7200,
    )


def _child(settings: Settings, action: str, args: dict[str, Any], reached: Any, go: Any, out: Any) -> None:
    kernel = open_kernel(settings.store, settings.sqlite_path)
    repository = OidcRepository(kernel, family_marker_seconds=3600)
    point = PAUSE_POINTS[settings.store.backend]
    paused = threading.Event()

    def fault(name: str) -> None:
        if name == point and not paused.is_set():  # the first attempt only; a re-run goes straight through
            paused.set()
            reached.set()
            if not go.wait(WAIT_SECONDS):
                raise RuntimeError("never released")

    kernel.fault = fault  # type: ignore[attr-defined]
    try:
        if action == "start_grant":
            out.put(("ok", repository.start_grant(args["grant"])))
        else:
            out.put(("ok", Consents(repository, settings.oidc).withdraw(WHO, CLIENT, at_ms=args["at_ms"])))
    except BaseException as exc:  # seen by the test, never lost in the child's stderr
        out.put(("crash", f"{exc.__class__.__name__}: {exc}"))
    finally:
        reached.set()
        kernel.close()


class Paused:
    """One change in another process (spawn: its own interpreter and store client), paused in its transaction."""

    def __init__(self, settings: Settings, action: str, **args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._reached, self._go, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._process = ctx.Process(
            target=_child, args=(settings, action, args, self._reached, self._go, self._out), daemon=True
        )
        self._process.start()
        if not self._reached.wait(WAIT_SECONDS):
            self._process.kill()
            raise AssertionError("the other process never reached its transaction")

    def release(self) -> Any:
        self._go.set()
        kind, value = self._out.get(timeout=WAIT_SECONDS)
        self._process.join(WAIT_SECONDS)
        assert kind == "ok", value
        return value


def _meanwhile(change: Any, paused: Paused, settle: float = 0.3) -> tuple[Any, Any]:
    """Run ``change`` here while ``paused`` waits (on SQLite it blocks on the write lock), then release it."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(change()))
    thread.start()
    thread.join(settle)
    other = paused.release()
    thread.join(WAIT_SECONDS)
    assert result, "the change in this process never finished"
    return result[0], other


def _a_token_works(settings: Settings, kernel: Kernel, grant: OAuthGrant) -> bool:
    """Whether an access token of ``grant`` passes the live checks (what every resource server asks)."""
    repository = OidcRepository(kernel, family_marker_seconds=3600)
    ring = open_ring(settings, kernel, auto_maintain_seconds=None)
    ring.maintain()
    tokens = AccessTokens(
        issuer=settings.issuer, settings=settings.oidc, keys=ring, repository=repository, leeway=5, max_json_depth=16
    )
    token, _ = tokens.mint(sub=WHO, client_id=CLIENT, scope=("openid",), grant=grant.grant_id, now=int(time.time()))
    try:
        tokens.verify(token)
    except InvalidToken as exc:
        assert exc.reason == "revoked", exc.reason
        return False
    return True


def test_consent_withdrawal_interleaved_with_token_issue_paused_in_another_process(
    settings: Settings, kernel: Kernel
) -> None:
    """Token issue paused inside its transaction; the withdrawal commits meanwhile (or waits for it)."""
    at_ms = time.time_ns() // 1_000_000
    grant = _grant(authorized_ms=at_ms - 1000)  # the researcher said yes before withdrawing
    issue = Paused(settings, "start_grant", grant=grant)
    repository = OidcRepository(kernel, family_marker_seconds=3600)
    withdrew, started = _meanwhile(lambda: Consents(repository, settings.oidc).withdraw(WHO, CLIENT, at_ms), issue)

    assert repository.withdrawn_at_ms(WHO, CLIENT) == at_ms
    if settings.store.backend == "sqlite":  # the issue held the write lock: it committed first
        assert started is True and repository.grant(grant.grant_id) is not None
    else:  # the withdrawal committed first: the issue's EXEC found its read changed, ran again and refused
        assert started is False and repository.grant(grant.grant_id) is None
    assert not _a_token_works(settings, kernel, grant)
    assert withdrew is False  # no consent was remembered


def test_token_issue_interleaved_with_a_consent_withdrawal_paused_in_another_process(
    settings: Settings, kernel: Kernel
) -> None:
    """The withdrawal paused inside its transaction; token issue runs meanwhile (or waits for it)."""
    repository = OidcRepository(kernel, family_marker_seconds=3600)
    repository.consents.put(Consent(WHO, CLIENT, ("openid",), int(time.time())))
    at_ms = time.time_ns() // 1_000_000
    grant = _grant(authorized_ms=at_ms - 1000)
    withdrawal = Paused(settings, "withdraw", at_ms=at_ms)
    started, withdrew = _meanwhile(lambda: repository.start_grant(grant), withdrawal)

    assert withdrew is True and repository.consent(WHO, CLIENT) is None
    if settings.store.backend == "sqlite":  # the issue waited for the withdrawal, then saw it
        assert started is False and repository.grant(grant.grant_id) is None
    else:  # the issue committed while the withdrawal was paused; the withdrawal then ended it
        assert started is True
    assert not _a_token_works(settings, kernel, grant)
    # a grant the researcher authorizes after the withdrawal is not touched
    later = _grant(authorized_ms=at_ms + 1)
    assert repository.start_grant(later) is True and _a_token_works(settings, kernel, later)


def test_consent_withdrawal_cut_before_its_commit_leaves_nothing_and_its_retry_makes_it_once(
    settings: Settings, kernel: Kernel
) -> None:
    repository = OidcRepository(kernel, family_marker_seconds=3600)
    consents = Consents(repository, settings.oidc)
    repository.consents.put(Consent(WHO, CLIENT, ("openid",), int(time.time())))
    grant = _grant(authorized_ms=time.time_ns() // 1_000_000 - 1000)
    assert repository.start_grant(grant) is True
    mark = kernel.audit_last_seq()
    kernel.fault = fail_once(PAUSE_POINTS[settings.store.backend])  # type: ignore[attr-defined]

    with pytest.raises(StoreUnavailable):
        consents.withdraw(WHO, CLIENT)
    assert repository.withdrawn_at_ms(WHO, CLIENT) is None and repository.consent(WHO, CLIENT) is not None
    assert [r.event for r in kernel.audit_records(mark)] == [], "a cut withdrawal left an audit record"
    assert _a_token_works(settings, kernel, grant)  # nothing happened: the grant still works

    assert consents.withdraw(WHO, CLIENT) is True  # the researcher (or the page) retries
    assert repository.withdrawn_at_ms(WHO, CLIENT) is not None and repository.consent(WHO, CLIENT) is None
    assert [r.event["event"] for r in kernel.audit_records(mark)] == ["oidc.consent_withdrawn"]
    assert not _a_token_works(settings, kernel, grant)
