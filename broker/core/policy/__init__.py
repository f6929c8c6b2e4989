"""Dataset access rules: load, compile, decide, explain (the language is in ``policies/README.md``).

- ``language.py`` / ``yaml_nodes.py``: parse policy YAML with file and line for every mistake;
- ``loader.py`` / ``compile.py``: a directory to an immutable :class:`~broker.core.policy.compile.PolicySet`
  (dataset id index, compiled matchers in ``matchers.py``, data use terms in ``duo.py``);
- ``decide.py`` (fast path, over a per-request ``pool.py``), ``decision.py`` (the answer),
  ``trace.py`` / ``explain.py`` (visa-by-visa explanations), ``required.py`` (required-visas document);
- ``personas.py``: policy tests as data and the dry-run diff; ``reload.py``: the rules in force and
  their atomic reload; ``commands.py``: ``ga4gh-broker policy ...``.

Typical use::

    store = PolicyStore.open(settings.policy.directory)      # raises PolicyLoadError on bad rules
    decision = store.current.decide(result.accepted, None, "EGAD00001000001",
                                    purpose=purpose, holder=(result.iss, result.sub),
                                    identity_binding=result.identity_binding)
"""
