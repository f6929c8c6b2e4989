"""Coverage-guided fuzzing of the broker's parsers and verifiers with atheris (issue 11, "Fuzzing").

``fuzz/targets.py`` holds one target per hostile-input boundary, each asserting the boundary's
documented contract (only the module's own typed errors escape, plus a few invariants);
``fuzz/run.py`` runs one target under atheris/libFuzzer, or a bounded campaign over all of them
(``bench/fuzz.py`` is the same campaign as a bench script). ``fuzz/regressions/<target>/`` keeps
every input that once crashed a target: they seed each run and the short CI pass
(tests/core/test_fuzz_short_pass.py) replays them.
"""
