"""The scopes our OpenID Provider knows: those every client gets by default, and two it must be given.

:data:`DEFAULT_SCOPES` is what discovery advertises (``scopes_supported``) and what a client
gets when ``clients add`` or the settings file names no scopes, so a newcomer's client can ask
for everything the discovery document offers. :data:`DAC_SCOPE` (a token acting for a person in
the DAC API) and :data:`PERMISSIONS_SCOPE` (a service reading users' visas through the
permissions API) are privileges an operator grants one client at a time, never by default, so
they are registrable but left out of discovery.
"""

from __future__ import annotations

from broker.core.models import PASSPORT_SCOPE

DEFAULT_SCOPES: tuple[str, ...] = ("openid", "profile", "email", PASSPORT_SCOPE)
DAC_SCOPE = "dac"
PERMISSIONS_SCOPE = "ga4gh_permissions"
#: Every scope a client may be registered for.
SCOPES: tuple[str, ...] = (*DEFAULT_SCOPES, DAC_SCOPE, PERMISSIONS_SCOPE)
