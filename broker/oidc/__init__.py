"""The OpenID Provider: authorization, token, userinfo, introspection, revocation, device flow."""
