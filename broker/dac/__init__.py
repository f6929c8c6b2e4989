"""Data access committees: who governs which dataset, grants, memberships and registered access.

Layout: ``settings`` (the ``dac:`` section), ``committees`` (the directory), ``records`` (typed
records), ``repository`` (their kinds and keys on the store kernel, and the transaction every
change runs in), ``grants`` / ``members`` / ``registered`` (the services: rules, authorization,
audit), ``services`` (building them together), ``migrate`` (the first release's records),
``web/`` (REST API, permissions API, OpenAPI document, pages). The CLI is ``broker.cli.dac``.
"""
