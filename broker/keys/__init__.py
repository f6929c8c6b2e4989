"""Our signing key ring: generation, rotation, JWKS publication."""
