"""``python -m broker`` is ``ga4gh-broker``."""

from broker.cli import main

raise SystemExit(main())
