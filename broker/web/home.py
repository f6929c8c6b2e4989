"""``/``: where a person or a program starts.

A browser gets a page naming the product and linking to what a person does here (log in,
the account and its visas, the DAC pages) and to the documents a developer needs (OpenID
discovery, the OpenAPI document of the DAC API, the JWKS, DRS service-info). A program
(``Accept: application/json``, or no ``text/html``) gets the same links as a small JSON index.
Nothing on it depends on who is asking, so it needs no session and reads no store.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from broker import __version__
from broker.web.negotiation import wants_html
from broker.web.pages import page

PRODUCT = "ga4gh-broker"
DESCRIPTION = "GA4GH Passport broker: sign-in, visas and passports, data access committees and data access."
#: (key, path, what a person finds there) of the people's pages.
PEOPLE_LINKS = (
    ("login", "/login?next=/account", "Log in"),
    ("account", "/account", "Your account, linked identities and consents"),
    ("visas", "/account/visas", "Your visas"),
    ("dac", "/dac", "Data access committees: review and grant access"),
)
#: (key, path, what a program finds there) of the machine-readable documents.
API_LINKS = (
    ("openid_configuration", "/.well-known/openid-configuration", "OpenID Provider metadata (discovery)"),
    ("jwks", "/.well-known/jwks.json", "The keys our tokens, visas and passports are signed with"),
    ("openapi", "/api/openapi.json", "OpenAPI 3.1 document of the DAC and permissions API"),
    ("drs_service_info", "/ga4gh/drs/v1/service-info", "GA4GH DRS service-info"),
)


def index(issuer: str) -> dict[str, Any]:
    """The JSON index: product, version, issuer and absolute links."""
    base = issuer.rstrip("/")
    return {
        "name": PRODUCT,
        "description": DESCRIPTION,
        "version": __version__,
        "issuer": issuer,
        "links": {key: base + path for key, path, _ in (*PEOPLE_LINKS, *API_LINKS)},
    }


def home_blueprint(issuer: str) -> Blueprint:
    """The ``/`` route for the broker at ``issuer`` (links are built from it, never from the Host header)."""
    bp = Blueprint("home", __name__, template_folder="templates")

    @bp.get("/", endpoint="home")
    def home() -> Response:
        if not wants_html(request):
            response = jsonify(index(issuer))
            response.vary.add("Accept")
            return response
        response = page(
            "home.html",
            title=PRODUCT,
            product=PRODUCT,
            description=DESCRIPTION,
            version=__version__,
            people=PEOPLE_LINKS,
            documents=API_LINKS,
        )
        response.vary.add("Accept")
        return response

    return bp
