"""The data gateway: the enforcement point in front of dataset files.

Modes, all from one decision (:mod:`broker.gateway.service`): ``stream`` (the gateway
sends the bytes), ``offload`` (``X-Accel-Redirect`` to nginx), the decision endpoint for
nginx ``auth_request`` / Envoy ``ext_authz``, DRS 1.2 with signed URLs, htsget 1.3 tickets
(:mod:`broker.gateway.htsget_routes`) and Crypt4GH re-encryption (:mod:`broker.gateway.encrypted`).

The gateway is built and its routes registered by :mod:`broker.gateway.wiring`. This package
file imports nothing on purpose: importing one gateway module never imports the others.
"""
