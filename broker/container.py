"""The composition root: every service of one broker process, built once from settings.

:meth:`Container.build` is the only code that knows every area. It builds the parts bottom-up,
each from its own settings section and the parts it needs, so the order of construction is the
order of dependencies and nothing is filled in later:

    store kernel (with a per-request deadline and a circuit breaker)
      -> key ring -> verified-token cache -> trust, key resolver, verifier -> dataset policies
      -> identities, browser sessions, revocation listeners
      -> DAC services -> visa minter, remote visa sources, upstream login visas -> visas_for
      -> OpenID Provider -> login area -> gateway (authorizer, audit)

The result is frozen: a service is never swapped under a running request. ``create_app`` in
:mod:`broker.app` turns it into a WSGI app; the command line builds one per process. Importing
this module starts nothing; :meth:`Container.start_background` starts the per-process watchers
of a serving process, and :meth:`Container.close` releases the store.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing.util
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from broker.core.cache import VerifiedCache
from broker.core.policy.decision import Withdrawn
from broker.core.policy.reload import PolicyStore
from broker.core.policy.settings import policy_directory
from broker.core.verify import Verifier
from broker.dac.services import DacServices, build_services
from broker.dac.web import DacWeb
from broker.dac.web.auth import client_authenticator, token_authenticator
from broker.gateway.decision_cache import DecisionCache
from broker.gateway.passport_authorizer import PassportAuthorizer
from broker.gateway.service import AuditEvent, Gateway
from broker.gateway.wiring import build_gateway
from broker.identity.service import IdentityService
from broker.keys.pepper import load_pepper
from broker.keys.ring import KeyRing
from broker.login.material import UpstreamVisas
from broker.login.service import LoginArea
from broker.login.upstreams import Upstreams
from broker.oidc.client_auth import METHODS as CLIENT_AUTH_METHODS
from broker.oidc.client_auth import AuthenticatedClient
from broker.oidc.errors import OAuthError
from broker.oidc.provider import OpenIDProvider
from broker.oidc.rate_limit import PERMISSIONS_REQUESTS
from broker.settings import Settings
from broker.store import open_kernel
from broker.store.audit import AccessAudit
from broker.store.deadline import DeadlineKernel
from broker.store.kernel import Kernel
from broker.trust.config import TrustConfig
from broker.trust.jwks import KeyResolver
from broker.trust.keyset import ResolvedKey
from broker.visas.collect import collect_visas
from broker.visas.minting import VisaMinter, revocation_check
from broker.visas.remote import RemoteVisaSources, sources_from_settings
from broker.visas.revocation import RevocationWatcher
from broker.web.health import MAX_JWKS_AGE, HealthSources
from broker.web.rate_limit import RateLimited
from broker.web.session import Sessions

log = logging.getLogger("broker.container")

#: How often a serving process reads the audit log for revocations made by other processes.
REVOCATION_POLL_SECONDS = 0.5


@dataclass
class Revocations:
    """Who must hear, in this process, that a decision (a grant, a registered-access record) was revoked.

    Listeners get the record id; visas minted from it carry ``jti`` ``<record id>.<random>``, so
    caches evict by that prefix (GA-14).
    """

    listeners: list[Callable[[str], object]] = field(default_factory=list)

    def revoked(self, record_id: str) -> None:
        for listener in self.listeners:
            try:
                listener(record_id)
            except Exception:  # one failing cache must not keep the others from evicting
                log.exception("revocation listener failed for %s", record_id)


@dataclass(frozen=True)
class Container:
    """The services of one broker process (see the module docstring)."""

    settings: Settings
    kernel: Kernel
    keyring: KeyRing
    verified_cache: VerifiedCache
    trust: TrustConfig
    verifier: Verifier
    policies: PolicyStore
    identities: IdentityService
    sessions: Sessions
    revocations: Revocations
    dac: DacServices
    dac_web: DacWeb
    minter: VisaMinter
    remote_visas: RemoteVisaSources | None
    upstream_visas: UpstreamVisas
    op: OpenIDProvider
    login: LoginArea
    gateway: Gateway
    access_audit: AccessAudit
    health: HealthSources
    _background: list[Any] = field(default_factory=list, compare=False, repr=False)

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, settings: Settings, *, kernel: Kernel | None = None) -> Container:
        """Every service for ``settings``; ``kernel`` replaces the store the settings name (tests)."""
        limits = settings.limits
        issuer = settings.issuer
        server = settings.server
        if kernel is None:
            deadline = DeadlineKernel(
                open_kernel(settings.store, settings.sqlite_path),
                open_seconds=server.store_breaker_seconds,
                max_threads=server.threads,
            )
            kernel = deadline
        keyring = KeyRing.open(settings.keys, settings.keys_path, kernel, leeway_seconds=limits.clock_leeway_seconds)
        verified_cache = VerifiedCache(limits.verified_cache_entries)
        trust = TrustConfig.from_settings(settings.trust, issuer, own_keys=own_keys_of(keyring))
        verifier = Verifier(
            trust,
            KeyResolver(trust, settings.trust.fetch),
            limits,
            cache=verified_cache,
            revoked=revocation_check(kernel),
        )
        policies = open_policies(settings)
        identities = IdentityService(kernel)
        sessions = Sessions(
            kernel, secure=issuer.startswith("https://"), lifetime_seconds=settings.login.session_lifetime_seconds
        )
        # A revoked decision must not survive in cached verdicts (GA-14).
        revocations = Revocations([verified_cache.evict_jti_prefix])
        dac = build_services(
            settings.dac, issuer, kernel, identities, on_revoke=(revocations.revoked,), product=settings.site.product
        )
        minter = VisaMinter(keyring, issuer, dac.directory, dac.grants, dac.registered)
        remote = sources_from_settings(settings, verifier) if settings.visa_sources else None
        upstream_visas = UpstreamVisas(
            kernel,
            identities,
            keyring,
            issuer=issuer,
            connectors=[c.id for c in settings.login.connectors],
            visa_lifetime_seconds=settings.oidc.visa_lifetime_seconds,
            material_lifetime_seconds=settings.oidc.refresh_token_lifetime_seconds,
        )

        def visas_for(identity_id: str) -> list[str]:
            """Every visa a passport or userinfo answer for ``identity_id`` carries right now."""
            visas, problems = collect_visas(
                identity_id,
                identities=identities,
                minter=minter,
                remote=remote,
                limit=limits.max_visas_per_passport,
                upstream=upstream_visas.visas,
            )
            for problem in problems:
                log.warning("visas for a passport: %s", problem)
            return visas

        op = OpenIDProvider(
            settings=settings.oidc,
            issuer=issuer,
            kernel=kernel,
            keys=keyring,
            identities=identities,
            sessions=sessions,
            visas_for=visas_for,
            leeway=limits.clock_leeway_seconds,
            max_json_depth=limits.max_json_depth,
            interaction_lifetime_seconds=settings.login.interaction_lifetime_seconds,
            token_cache=VerifiedCache(limits.verified_cache_entries),
            pepper=load_pepper(settings.keys, settings.keys_path),
        )
        login = LoginArea(
            settings.login,
            issuer=issuer,
            kernel=kernel,
            sessions=sessions,
            identities=identities,
            pending=op,
            consents=op.consents,
            upstream_visas=upstream_visas,
            upstreams=Upstreams(own_issuer=issuer, fetch=settings.trust.fetch, max_json_depth=limits.max_json_depth),
            verifier=verifier,
            leeway=limits.clock_leeway_seconds,
            max_json_depth=limits.max_json_depth,
        )

        confidential = tuple(method for method in CLIENT_AUTH_METHODS if method != "none")

        def check_client(
            form: dict[str, str], authorization: str | None, url: str, address: str
        ) -> AuthenticatedClient:
            """Permissions API callers: failures limited per address as at /token, then requests per client."""
            found = op.authenticator.authenticate(form, authorization, url, methods=confidential, address=address)
            try:
                op.limiter.take(PERMISSIONS_REQUESTS, found.client.client_id)
            except RateLimited as exc:
                raise OAuthError.too_many(exc.retry_after) from None
            return found

        dac_web = DacWeb(
            services=dac,
            issuer=issuer,
            authenticate=token_authenticator(op.tokens.verify),
            authenticate_client=client_authenticator(check_client, issuer),
            visas_for=minter.tokens,
            load_session=sessions.load,
            identity_of=identities.get,
            links_of=identities.links_of,
            consents_of=op.consents.of,
            search_people=identities.search,
        )
        gateway_settings = settings.gateway
        access_audit = AccessAudit(
            kernel,
            window_seconds=gateway_settings.audit_window_seconds,
            flush_seconds=gateway_settings.audit_flush_seconds,
        )
        decisions = None
        if gateway_settings.decision_cache_entries:
            decisions = DecisionCache(gateway_settings.decision_cache_entries, gateway_settings.decision_cache_seconds)
            revocations.listeners.append(decisions.revoked)  # a revocation empties it (GA-14)
        gateway = _gateway(
            settings, kernel, verifier, policies, op, visas_for, minter.withdrawn, dac, access_audit, decisions
        )
        health = HealthSources(
            backend=kernel.backend,
            store_health=kernel.health,
            signing_key_ready=lambda: keyring.signing_key() is not None,
            jwks=keyring.jwks,
            jwks_max_age=min(MAX_JWKS_AGE, settings.keys.publish_ahead_seconds),
            check_timeout_seconds=server.readyz_timeout_seconds,
        )
        return cls(
            settings=settings,
            kernel=kernel,
            keyring=keyring,
            verified_cache=verified_cache,
            trust=trust,
            verifier=verifier,
            policies=policies,
            identities=identities,
            sessions=sessions,
            revocations=revocations,
            dac=dac,
            dac_web=dac_web,
            minter=minter,
            remote_visas=remote,
            upstream_visas=upstream_visas,
            op=op,
            login=login,
            gateway=gateway,
            access_audit=access_audit,
            health=health,
        )

    def visas_for(self, identity_id: str) -> list[str]:
        """Every visa a passport for ``identity_id`` carries right now (as userinfo and token exchange hand out)."""
        visas: list[str] = self.op.visas_for(identity_id)
        return visas

    # ------------------------------------------------------------------ lifecycle

    def start_background(self) -> None:
        """Per-process work of a serving process (never at import, never in ``build``).

        The watcher that carries revocations made by other processes into this one's caches
        (woken at once by the store's change notifications where it has them), and the policy
        file watcher.
        """
        watcher = RevocationWatcher(self.kernel, self.revocations.revoked, interval=REVOCATION_POLL_SECONDS)
        watcher.start()
        self._background.append(watcher)
        listen = getattr(self.kernel, "listen_audit", None)
        if listen is not None:
            listener = listen(lambda _seq: watcher.wake())
            if listener is not None:
                self._background.append(listener)
        self.access_audit.start()
        self._background.append(self.access_audit)  # close() writes the last summaries
        # Granian's workers leave through multiprocessing, which runs its finalizers but not
        # atexit: the counters of a worker stopped between flushes are written on the way out.
        multiprocessing.util.Finalize(self.access_audit, self.access_audit.close, exitpriority=10)
        if self.settings.policy.watch:
            self.policies.start_watching()
            self._background.append(_Stopper(self.policies.stop_watching))

    def close(self) -> None:
        """Stop background work and release the store."""
        for part in reversed(self._background):
            stop = getattr(part, "stop", None) or getattr(part, "close", None)
            if stop is not None:
                try:
                    stop()
                except Exception:
                    log.exception("stopping %s failed", type(part).__name__)
        self._background.clear()
        self.kernel.close()


@dataclass(frozen=True)
class _Stopper:
    """Something started in the background, and how to stop it."""

    stop: Callable[[], object]


class _OwnKeys(Mapping[str, ResolvedKey]):
    """Our published keys at one moment; looking up a kid the ring does not hold makes it reload once."""

    def __init__(self, keyring: KeyRing) -> None:
        self._ring = keyring
        self._keys = self._read()

    def _read(self, kid: str | None = None) -> dict[str, ResolvedKey]:
        return {k: ResolvedKey(k, alg, key) for k, (alg, key) in self._ring.public_keys(kid=kid).items()}

    def __getitem__(self, kid: str) -> ResolvedKey:
        if kid not in self._keys:
            self._keys = self._read(kid)  # a key another process just made (rate-limited in the ring)
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)


def own_keys_of(keyring: KeyRing) -> Callable[[], Mapping[str, ResolvedKey]]:
    """Our published keys as ``kid -> ResolvedKey``, read live from the ring (it reloads at most once a second,
    and at once, rate-limited, for a kid it does not hold)."""

    def keys() -> Mapping[str, ResolvedKey]:
        return _OwnKeys(keyring)

    return keys


def open_policies(settings: Settings) -> PolicyStore:
    """The dataset rules in force (:func:`broker.core.policy.settings.policy_directory`).

    A configured directory that is missing or broken stops the broker (PolicyLoadError)."""
    directory, embedded = policy_directory(settings.policy)
    if embedded:
        log.warning("no policy directory %r: no dataset rules, every data request is denied", settings.policy.directory)
    return PolicyStore.open(directory)


def _gateway(
    settings: Settings,
    kernel: Kernel,
    verifier: Verifier,
    policies: PolicyStore,
    op: OpenIDProvider,
    visas_for: Callable[[str], list[str]],
    withdrawn_for: Callable[[str], Sequence[Withdrawn]],
    dac: DacServices,
    access_audit: AccessAudit,
    decisions: DecisionCache | None,
) -> Gateway:
    """The data gateway, deciding with passports or our access tokens, auditing to the store."""
    # Our own URL, never the caller's Host header, is what DRS hands out and what passports
    # addressed to this gateway must name in `aud` (a passport for another service is refused).
    gateway_settings = settings.gateway
    if gateway_settings.public_base_url is None:
        gateway_settings = gateway_settings.model_copy(update={"public_base_url": settings.issuer.rstrip("/")})
    authorizer = PassportAuthorizer(
        verifier=verifier,
        policies=policies,
        own_issuer=settings.issuer,
        audience=gateway_settings.public_base_url,
        check_access_token=lambda token: op.tokens.verify(token),
        visas_for=lambda access_token: visas_for(access_token.sub),
        withdrawn_for=withdrawn_for,
        decisions=decisions,
        passport_revoked=op.tokens.passport_revoked,
    )

    def audit(event: AuditEvent) -> None:
        """Decisions: the first of a window durably before any byte, repeats counted; transfers counted."""
        key: tuple[str | None, ...]
        if event.kind == "decision":
            key = (
                event.credential,
                event.subject,
                event.dataset,
                event.object_path,
                event.outcome,
                event.reason,
                event.route,
                event.purpose,
                ",".join(event.regions),
                event.recipient,
            )
            access_audit.decision(key, lambda: audit_record(event))
        else:
            key = (event.subject, event.dataset, event.object_path, event.route, event.outcome)
            access_audit.transfer(key, lambda: audit_record(event), event.bytes_sent or 0)

    def apply_url(dataset: str) -> str | None:
        """The page where a researcher applies for ``dataset``, when a DAC governs it."""
        if dac.directory.governing(dataset) is None:
            return None
        return settings.issuer.rstrip("/") + "/account/apply?" + urlencode({"datasets": dataset})

    return build_gateway(authorizer, gateway_settings, data_dir=settings.data_path, audit=audit, apply_url=apply_url)


def audit_record(event: AuditEvent) -> dict[str, Any]:
    """The audit event of a gateway decision or transfer (the credential digest is left out)."""
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "credential"}
    return {"event": f"gateway.{event.kind}", "actor": event.subject, **_plain(fields)}


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data (tuples to lists, enums and unknown objects to text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


__all__ = ["Container", "Revocations", "open_policies", "own_keys_of"]
