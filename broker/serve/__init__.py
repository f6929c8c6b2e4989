"""Serving the broker: the production server, its WSGI layer, its logging, and workers that die with it.

**The server is granian** (a Rust HTTP server on hyper and tokio, with a WSGI interface), in
worker processes started by ``ga4gh-broker serve``, bound straight to the network. Why:

- Connections are read by tokio, not by Python threads: an open connection that is still
  sending its head costs a few kilobytes and no thread, and hyper closes one that has not sent a
  whole head within ``server.header_timeout_seconds``. Python threads (``server.threads``) only
  run requests that have fully arrived. A slowloris cannot take them.
- The measurement that chose it (``python -m tests.availability.measure --seconds 15``: 200
  slow-header connections dripping one header line every 2 s, plus 20 slow readers reading an
  8 MiB download 16 bytes every 0.5 s, while /healthz and a gateway decision are timed on fresh
  connections; 2 workers, one 2-core machine shared with other work):

  ======================================  =====================  =====================
  server                                  /healthz p99           decision p99
  ======================================  =====================  =====================
  gunicorn gthread 2x4 (before)           >5 s (timeouts)        >5 s (timeouts)
  granian, 2x32 threads, backpressure 64  5.0 s (backpressure)   5.0 s
  granian, 2x32 threads, backpressure 1k  17 ms                  43 ms
  ======================================  =====================  =====================

- It is one pip dependency with wheels for Linux (x86-64, arm64) and no monkey-patching: the
  store clients (sqlite3, redis-py) and every thread in the broker stay as they are. An event-loop
  worker (gevent, eventlet) would patch sockets and threads process-wide, and a blocking sqlite3
  call (a locked file waits out its busy timeout) would then stop every request of the worker.
- An nginx front (gunicorn on a unix socket behind it) also stops slowloris, but makes ``serve``
  start and supervise a second program that the image and every machine must carry; the gateway's
  nginx examples (examples/nginx) remain for offload and auth_request deployments.

What granian does not do, and what we do instead:

- A response body is streamed from a Python thread until the client has read it, so a slow
  reader holds a thread (as under every WSGI server). :class:`~broker.serve.middleware.ServeMiddleware`
  joins short bodies (sent without a thread) and caps the long ones at ``server.stream_threads`` per
  worker, so the other threads always answer tokens, decisions and pages. Large deployments
  should offload downloads to nginx (gateway ``mode: offload``).
- It gives WSGI apps no raw request target (no ``RAW_URI``): ``PATH_INFO`` arrives decoded once,
  and the gateway's path rules (:func:`broker.gateway.routes.raw_target`) re-encode it, so a
  ``%`` can never be decoded twice; an encoded ``%2F`` arrives as ``/``.
- It copies the process environment into every WSGI environ: the middleware removes it
  (``BROKER_*`` variables hold secrets).
- Workers do not notice a master killed with SIGKILL: :mod:`broker.serve.parent` makes them die
  with it, so the port is free for the supervisor's restart at once.

Modules: :mod:`~broker.serve.production` (the server and its settings), :mod:`~broker.serve.middleware`,
:mod:`~broker.serve.logs`, :mod:`~broker.serve.parent`. ``--dev`` runs Flask's own server with the
same middleware and logging (``broker.cli.serve.run_dev``). Operations: docs/operations.md.
"""
