"""The Flask app factory: wires settings, store, key ring and the web-facing parts.

``create_app`` is the only place that builds a process's parts; importing any module
of the broker starts nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response

from broker.runtime import Runtime
from broker.settings import Settings, load_settings
from broker.web import errors as web_errors

if TYPE_CHECKING:
    from broker.core.policy.reload import PolicyStore
    from broker.login.service import LoginArea

log = logging.getLogger("broker.app")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# JSON endpoints render nothing; pages get their own, stricter-than-default policy.
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the broker's WSGI app from settings (embedded defaults when None)."""
    from broker.keys.ring import KeyRing
    from broker.store import open_store

    settings = settings or load_settings()
    app = Flask("broker")
    app.config["MAX_CONTENT_LENGTH"] = 2 * 1024 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if runtime is None:
        store = open_store(settings)
        keyring = KeyRing.open(
            settings.keys, settings.keys_path, store.kernel, leeway_seconds=settings.limits.clock_leeway_seconds
        )
        runtime = Runtime(settings=settings, store=store, keyring=keyring)
    app.extensions["broker"] = runtime

    _install_error_handlers(app, settings.issuer)
    _install_security_headers(app, https=settings.issuer.startswith("https://"))
    _install_health_routes(app)
    login = _install_oidc(app)
    _install_dac(app)
    _install_clearinghouse(app, upstream_visas=login.upstream_visas.visas)
    _install_gateway(app)
    return app


def open_policies(settings: Settings) -> PolicyStore:
    """The dataset rules in force (:func:`broker.core.policy.settings.policy_directory`).

    A configured directory that is missing or broken stops the broker (PolicyLoadError)."""
    from broker.core.policy.reload import PolicyStore
    from broker.core.policy.settings import policy_directory

    directory, embedded = policy_directory(settings.policy)
    if embedded:
        log.warning("no policy directory %r: no dataset rules, every data request is denied", settings.policy.directory)
    return PolicyStore.open(directory)


def _install_gateway(app: Flask) -> None:
    """The data gateway (broker/gateway): streaming, offload, decision endpoint, DRS, metrics."""
    from broker.gateway import init_app
    from broker.gateway.passport_authorizer import PassportAuthorizer
    from broker.oidc.tokens import verify_access_token

    rt = current_runtime_of(app)
    settings = rt.settings
    # Our own URL, never the caller's Host header, is what DRS hands out and what passports
    # addressed to this gateway must name in `aud` (a passport for another service is refused).
    gateway_settings = settings.gateway
    if gateway_settings.public_base_url is None:
        gateway_settings = gateway_settings.model_copy(update={"public_base_url": settings.issuer.rstrip("/")})
    if rt.policies is None:
        rt.policies = open_policies(settings)
    assert rt.verifier is not None

    def check_access_token(token: str) -> Any:
        return verify_access_token(rt.keyring, settings, rt.store, token)

    authorizer = PassportAuthorizer(
        verifier=rt.verifier,
        policies=rt.policies,
        own_issuer=settings.issuer,
        audience=gateway_settings.public_base_url,
        check_access_token=check_access_token,
        visas_for=lambda access_token: rt.passport_visas(access_token.sub),
    )

    def audit(event: Any) -> None:
        record = {"event": f"gateway.{event.kind}", "actor": event.subject, **_plain(dataclasses.asdict(event))}
        rt.store.audit_append(record, int(time.time()))

    init_app(app, authorizer, gateway_settings, data_dir=settings.data_path, audit=audit)


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready data (tuples to lists, enums and unknown objects to text)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _install_clearinghouse(app: Flask, upstream_visas: Callable[[str], list[str]]) -> None:
    """The process's verifier (with its cache) and the gatherer of a researcher's visas.

    ``upstream_visas`` gives the visas a researcher's logins yield (``LoginArea.upstream_visas``).
    """
    from broker.clearinghouse import build_verifier, own_keys_of
    from broker.core.cache import VerifiedCache
    from broker.visas.collect import collect_visas
    from broker.visas.minting import VisaMinter, revocation_check
    from broker.visas.remote import sources_from_settings

    rt = current_runtime_of(app)
    settings = rt.settings
    if rt.verified_cache is None:
        rt.verified_cache = VerifiedCache(settings.limits.verified_cache_entries)
    cache = rt.verified_cache
    if rt.verifier is None:
        rt.verifier = build_verifier(settings, own_keys_of(rt.keyring), cache=cache, revoked=revocation_check(rt.store))
    # A revoked grant must not survive in cached verdicts (GA-14): our visa jti is "<grant id>.<random>".
    rt.revocation_listeners.append(lambda grant: cache.evict_jti_prefix(grant.id))
    if rt.visas_for is None:
        services = app.extensions["dac"].services
        minter = VisaMinter(rt.keyring, settings.issuer, services.directory, services.grants, services.registered)
        remote = sources_from_settings(settings, rt.verifier) if settings.visa_sources else None
        limit = settings.limits.max_visas_per_passport

        def visas_for(identity_id: str) -> list[str]:
            visas, problems = collect_visas(
                identity_id,
                store=rt.store,
                minter=minter,
                remote=remote,
                limit=limit,
                upstream=upstream_visas,
            )
            for problem in problems:
                log.warning("visas for a passport: %s", problem)
            return visas

        rt.visas_for = visas_for


def start_background(app: Flask) -> None:
    """Per-process background work for a serving process (never at import or in create_app):
    the watcher that carries revocations made by other processes into this one's caches."""
    from broker.visas.revocation import RevocationWatcher

    rt = current_runtime_of(app)
    cache = rt.verified_cache
    if cache is not None:
        RevocationWatcher(rt.store, cache.evict_jti_prefix, interval=0.5).start()
    if rt.policies is not None and rt.settings.policy.watch:
        rt.policies.start_watching()


def _install_dac(app: Flask) -> None:
    """DAC REST API, permissions API and pages (broker/dac), given their services and callables.

    Until the composition root (broker/container.py) builds them, this is where the DAC
    services meet the runtime: the kernel under the typed store, identities read through
    ``broker.store.legacy.IDENTITIES``, and the revocation hook bridged to the runtime's
    listeners. The built :class:`~broker.dac.web.DacWeb` stays in ``app.extensions["dac"]``
    for ``_install_clearinghouse`` (the views never read it from there).
    """
    from flask import Request

    from broker.dac.services import build_services
    from broker.dac.web import DacWeb, api_blueprint, pages_blueprint
    from broker.dac.web.auth import client_authenticator, token_authenticator
    from broker.login.session import BrowserSession
    from broker.oidc.client_auth import AuthenticatedClient
    from broker.oidc.client_auth import authenticate as authenticate_client
    from broker.oidc.tokens import AccessToken, verify_access_token
    from broker.store.base import Grant, Identity
    from broker.store.legacy import IDENTITIES, LegacyStore
    from broker.store.records import Records
    from broker.visas.minting import VisaMinter

    rt = current_runtime_of(app)
    settings = rt.settings
    if not isinstance(rt.store, LegacyStore):
        raise TypeError("the DAC area needs the store kernel: open the store with broker.store.open_store")
    kernel = rt.store.kernel

    def on_revoke(record_id: str) -> None:
        # The runtime's listeners take a Grant and read only its id (the composition root replaces this bridge).
        rt.revoked(Grant(id=record_id, identity_id="", dataset="", dac="", granted_by="", granted_at=0, start=0, end=0))

    identities: Records[Identity] = Records(kernel, IDENTITIES)
    services = build_services(settings.dac, settings.issuer, kernel, identities, on_revoke=(on_revoke,))

    def verify(token: str) -> AccessToken:
        return verify_access_token(rt.keyring, settings, rt.store, token)

    def check_client(form: dict[str, str], authorization: str | None, url: str) -> AuthenticatedClient:
        return authenticate_client(settings, rt.store, form, authorization, url, allow_public=False)

    def load_session(request: Request) -> BrowserSession | None:
        return BrowserSession.load(settings, rt.store, request)

    minter = VisaMinter(rt.keyring, settings.issuer, services.directory, services.grants, services.registered)
    web = DacWeb(
        services=services,
        issuer=settings.issuer,
        authenticate=token_authenticator(verify),
        authenticate_client=client_authenticator(check_client, settings.issuer),
        visas_for=minter.tokens,
        load_session=load_session,
        identity_of=rt.store.get_identity,
        links_of=rt.store.links_of,
        consents_of=rt.store.consents_of,
    )
    app.extensions["dac"] = web
    app.register_blueprint(api_blueprint(web))
    app.register_blueprint(pages_blueprint(web))


def current_runtime_of(app: Flask) -> Runtime:
    """The Runtime ``create_app`` put in ``app``; usable outside a request."""
    return app.extensions["broker"]


class _LateVerifier:
    """The process's verifier, which ``_install_clearinghouse`` builds after the login area."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def verify_visas(self, visas: Any) -> Any:
        if self._rt.verifier is None:
            raise RuntimeError("the verifier is not built (create_app builds it)")
        return self._rt.verifier.verify_visas(visas)


def _install_oidc(app: Flask) -> LoginArea:
    """The OpenID Provider, the login area and the identity service (broker/oidc, broker/login, broker/identity).

    Each service gets only its own settings section and parts; the blueprints get the services.
    Returns the login area (its ``upstream_visas`` feed the clearinghouse's ``visas_for``).
    """
    from broker.identity.service import IdentityService
    from broker.login.material import UpstreamVisas
    from broker.login.service import LoginArea
    from broker.login.upstreams import Upstreams
    from broker.login.web import login_blueprint
    from broker.oidc.provider import OpenIDProvider
    from broker.oidc.tokens import ACCESS_TOKEN_CACHE
    from broker.oidc.web import oidc_blueprint
    from broker.web.session import Sessions

    rt = current_runtime_of(app)
    settings = rt.settings
    kernel = rt.store.kernel  # type: ignore[attr-defined]
    limits = settings.limits
    sessions = Sessions(
        kernel,
        secure=settings.issuer.startswith("https://"),
        lifetime_seconds=settings.login.session_lifetime_seconds,
    )
    identities = IdentityService(kernel)
    op = OpenIDProvider(
        settings=settings.oidc,
        issuer=settings.issuer,
        kernel=kernel,
        keys=rt.keyring,
        identities=identities,
        sessions=sessions,
        visas_for=rt.passport_visas,
        leeway=limits.clock_leeway_seconds,
        max_json_depth=limits.max_json_depth,
        interaction_lifetime_seconds=settings.login.interaction_lifetime_seconds,
        token_cache=ACCESS_TOKEN_CACHE,
    )
    upstream_visas = UpstreamVisas(
        kernel,
        identities,
        rt.keyring,
        issuer=settings.issuer,
        connectors=[c.id for c in settings.login.connectors],
        visa_lifetime_seconds=settings.oidc.visa_lifetime_seconds,
        material_lifetime_seconds=settings.oidc.refresh_token_lifetime_seconds,
    )
    login = LoginArea(
        settings.login,
        issuer=settings.issuer,
        kernel=kernel,
        sessions=sessions,
        identities=identities,
        pending=op,
        consents=op.consents,
        upstream_visas=upstream_visas,
        upstreams=Upstreams(
            own_issuer=settings.issuer, fetch=settings.trust.fetch, max_json_depth=limits.max_json_depth
        ),
        verifier=_LateVerifier(rt),
        leeway=limits.clock_leeway_seconds,
        max_json_depth=limits.max_json_depth,
    )
    app.register_blueprint(oidc_blueprint(op))
    app.register_blueprint(login_blueprint(login))
    return login


def _install_health_routes(app: Flask) -> None:
    """/healthz, /readyz and the JWKS, answered in bounded time whatever the store does (broker.web.health)."""
    from broker.web.health import health_sources_of, install_health_routes

    rt = current_runtime_of(app)
    install_health_routes(app, health_sources_of(rt, rt.settings.server.readyz_timeout_seconds))


def _install_error_handlers(app: Flask, realm: str) -> None:
    web_errors.install(app, realm)


def _install_security_headers(app: Flask, https: bool) -> None:
    @app.after_request
    def add_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Content-Security-Policy", API_CSP)
        if https:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
        return response
