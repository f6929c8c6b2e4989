"""Logging researchers in: one module per connector kind (``local``, ``oidc``) and the shared views."""
