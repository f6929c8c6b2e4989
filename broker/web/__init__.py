"""Shared web helpers for the broker's HTML pages: server-side sessions, CSRF tokens, rate limits, templates."""
