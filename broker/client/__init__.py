"""A researcher's client for brokers of this kind: log in, show who you are, get a passport,
list a dataset, download files.

The commands (``ga4gh-broker login|whoami|ls|download`` and ``passport get``) are in
:mod:`broker.cli.researcher`; the library parts are usable on their own:

- :mod:`broker.client.http`: one bounded HTTP client (timeouts, size caps, https except on
  loopback, never a ``.netrc`` credential), and the typed :class:`~broker.client.http.ClientError`;
- :mod:`broker.client.credentials`: the token file in the user's config folder (0600 in a 0700
  folder, written atomically, one file lock around refreshes);
- :mod:`broker.client.oauth`: discovery, the device flow (RFC 8628), refresh with rotation,
  token exchange for a passport (RFC 8693), userinfo;
- :mod:`broker.client.drs`: DRS objects and dataset bundles of a broker's gateway;
- :mod:`broker.client.download`: resumable, verified, parallel downloads.

It assumes nothing about a broker's settings: only its discovery document, its DRS endpoints
and the data route its DRS objects name. Importing this package starts nothing.
"""
