"""``ga4gh-broker demo``: a ready broker in one folder, and a check that runs its session.

- :mod:`broker.demo.genomics`: synthetic bgzipped VCF + .tbi and BAM + .bai, in pure Python;
- :mod:`broker.demo.folder`: the folder (settings, policies, files, accounts, DAC, first grants);
- :mod:`broker.demo.check`: the printed session run without a person (``demo --check``).

It sits between the command line and the researcher's client in the layers: it builds on the
areas' services to make the folder and talks to a broker over HTTP (and the ``ga4gh-broker``
commands) to check it.
"""
