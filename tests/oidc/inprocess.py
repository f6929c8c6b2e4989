"""Calling an in-process OP (``op_parts``) the way the web adapter does: OAuthRequests in, Answers out."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable
from typing import Any

import pytest

from broker.oidc.consent import now_ms
from broker.oidc.errors import OAuthError
from broker.oidc.passwords import token_hash
from broker.oidc.provider import OpenIDProvider
from broker.oidc.records import AuthorizationCode
from broker.oidc.server import OAuthRequest
from broker.oidc.tokens import InvalidToken
from tests.oidc.conftest import CALLBACK, IN_PROCESS_SECRET


def basic(client_id: str, secret: str = IN_PROCESS_SECRET) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def call(op: OpenIDProvider, path: str, params: dict[str, str], client_id: str | None = "app") -> dict[str, Any]:
    """POST ``params`` to one of the OP's token-style endpoints as ``client_id`` (HTTP Basic; None: public)."""
    authorization = basic(client_id) if client_id is not None else None
    request = OAuthRequest("POST", op.endpoint_url(path), params, authorization=authorization)
    handler = {"/token": op.token, "/device_authorization": op.device_authorization, "/introspect": op.introspect}
    answer = handler[path](request)
    assert isinstance(answer.body, dict)
    return answer.body


def code_for(op: OpenIDProvider, client_id: str = "app", identity_id: str = "alice-id") -> str:
    """A code as the authorization endpoint keeps it (authorized now, redirect CALLBACK, scope openid)."""
    code = secrets.token_urlsafe(32)
    now = op.now()
    op.repository.codes.put(
        AuthorizationCode(
            code_hash=token_hash(code),
            client_id=client_id,
            redirect_uri=CALLBACK,
            scope=("openid",),
            identity_id=identity_id,
            auth_time=now,
            issued_ms=now_ms(),
            expires_at=now + 60,
        )
    )
    return code


def redeem(op: OpenIDProvider, code: str, client_id: str = "app") -> dict[str, Any]:
    return call(op, "/token", {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK}, client_id)


def refresh(op: OpenIDProvider, token: object, client_id: str = "app", **extra: str) -> dict[str, Any]:
    return call(op, "/token", {"grant_type": "refresh_token", "refresh_token": str(token), **extra}, client_id)


def error_of(call_: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    """The OAuth error code ``call_`` refuses with."""
    with pytest.raises(OAuthError) as raised:
        call_(*args, **kwargs)
    return raised.value.code


def access_ok(op: OpenIDProvider, token: object) -> bool:
    try:
        op.tokens.verify(str(token))
    except InvalidToken:
        return False
    return True
