"""The OP's rate limits (THREAT-MODEL OA-18, OA-25; RFC 8628 5.1): past one, ``429`` with ``Retry-After``.

Counted on the kernel by :class:`broker.web.rate_limit.RateLimiter`, so every process of one
broker counts together. Each limit is a fixed window; a burst straddling two windows can
reach twice the count, and the counts are set with that in mind.
"""

from __future__ import annotations

from broker.web.rate_limit import Limit

#: Failed client authentications per (claimed client_id, client address): token, introspection,
#: revocation and device authorization endpoints (OA-18).
CLIENT_AUTH_FAILURES = Limit("client_auth_failure", count=20, window=60)
#: Failed client authentications per client address, whatever client_id each claims: a fresh
#: client_id per request never trips the limit above (issue 11 item 2). Higher, because clients
#: behind one proxy or NAT share it.
CLIENT_AUTH_FAILURES_PER_ADDRESS = Limit("client_auth_failure_address", count=100, window=60)
#: Permissions API requests per authenticated client: each one mints and signs visas.
PERMISSIONS_REQUESTS = Limit("permissions_request", count=300, window=60)
#: Introspection answers ``{"active": false}`` per authenticated client (OA-25 token scanning).
INTROSPECTION_MISSES = Limit("introspection_miss", count=120, window=60)
#: Device authorization requests per (client_id, client address): each one adds a live user code.
DEVICE_AUTHORIZATIONS = Limit("device_authorization", count=30, window=60)
#: Unknown user codes typed at /device, per logged-in account and per client address (RFC 8628 5.1).
USER_CODE_FAILURES = Limit("user_code_failure", count=10, window=300)
USER_CODE_FAILURES_PER_ADDRESS = Limit("user_code_failure_address", count=50, window=300)
