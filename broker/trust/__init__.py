"""The one trust configuration and the hardened JWKS fetcher."""
