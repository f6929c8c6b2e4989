"""Outbound network access: the one bounded HTTP client (:mod:`broker.net.http`)."""
