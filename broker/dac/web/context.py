"""What the DAC's Flask adapters are given: :class:`DacWeb`, built once by the composition root.

The blueprint factories (:func:`broker.dac.web.api.api_blueprint`,
:func:`broker.dac.web.pages.pages_blueprint`) close over one ``DacWeb``; no view looks anything
up in ``current_app`` or a process-wide locator. Everything outside the DAC area reaches the
views as a callable: who the caller is (``authenticate``, ``authenticate_client``,
``load_session``), their visas (``visas_for``) and what the account page shows of them
(``identity_of``, ``links_of``, ``consents_of``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from flask import Request

from broker.dac.services import DacServices
from broker.identity.records import Identity


@dataclass(frozen=True)
class Principal:
    """Who is calling: the identity (``sub``) acting, or a client acting for itself."""

    identity: str | None
    client_id: str | None
    scopes: frozenset[str] = frozenset()


#: Authenticates one request or raises a BrokerError (401 / 400); see :mod:`broker.dac.web.auth`.
Authenticate = Callable[[Request], Principal]


class PageSession(Protocol):
    """The browser session of the login pages, as the DAC pages use it."""

    @property
    def identity_id(self) -> str | None: ...

    def csrf_token(self, purpose: str) -> str: ...

    def csrf_ok(self, purpose: str, presented: str | None) -> bool: ...


@dataclass(frozen=True)
class DacWeb:
    """The DAC services and the callables the REST API, the permissions API and the pages need.

    - ``issuer``: our issuer URL (the OpenAPI server, the same-origin rule of the forms);
    - ``authenticate(request)``: a bearer access token of ours -> :class:`Principal`;
    - ``authenticate_client(request)``: an OAuth client authenticating itself -> :class:`Principal`;
    - ``visas_for(identity_id)``: the visa JWS strings the permissions API and the account page show;
    - ``load_session(request)``: the login pages' browser session, or None;
    - ``identity_of(id)``, ``links_of(id)``, ``consents_of(id)``: the account facts the visas page shows;
    - ``search_people(query)``: identities by name, e-mail, id or linked upstream subject (DAC lookups);
    - ``clock``: epoch seconds (``live`` flags in answers).
    """

    services: DacServices
    issuer: str
    authenticate: Authenticate
    authenticate_client: Authenticate
    visas_for: Callable[[str], Sequence[str]]
    load_session: Callable[[Request], PageSession | None]
    identity_of: Callable[[str], object | None]
    links_of: Callable[[str], Sequence[object]]
    consents_of: Callable[[str], Sequence[object]]
    search_people: Callable[[str], Sequence[Identity]]
    clock: Callable[[], float] = time.time
