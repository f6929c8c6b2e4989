"""The one trust configuration and the hardened JWKS fetcher.

- ``config``: :class:`TrustConfig` (who we believe: our own issuer, visa issuers with exact
  ``jku`` allow-lists and pinned keys, trusted brokers), built from settings.
- ``jwks``: :class:`KeyResolver`, which turns a token's header into one verification key,
  checking trust before any network request, with a bounded, single-flight JWKS cache.
- ``fetch``: the hardened HTTPS GET of an allow-listed JWKS URL.
- ``keyset``: JWK parsing (PyJWT) and the rules for which key may verify which ``alg``.
"""
