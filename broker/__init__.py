"""ga4gh-broker: GA4GH Passport broker, visa issuer, clearinghouse and data gateway."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ga4gh-broker")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
