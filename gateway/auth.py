"""The gateway's bearer token, and the ASGI guard that demands it on every HTTP request.

    token = gateway_token(cfg.gateway, cfg.home)   # $OMNI_GATEWAY_TOKEN, or the sandbox's generated file
    app = BearerAuth(starlette_app, token)
"""
from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from config import GatewayConfig

TOKEN_FILE = "gateway.token"


class MissingToken(RuntimeError):
    pass


def gateway_token(gateway: GatewayConfig, home: Path) -> str:
    """The token from `gateway.token_env`; else, where allowed, the one in `$OMNI_HOME/gateway.token`
    (created once, mode 0600)."""
    token = os.environ.get(gateway.token_env, "").strip()
    if token:
        return token
    path = home / TOKEN_FILE
    if not gateway.generate_token:
        raise MissingToken(f"set the environment variable {gateway.token_env} (gateway.token_env): "
                           "the gateway refuses to run without a bearer token")
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


class BearerAuth:
    """Refuse any HTTP request without `Authorization: Bearer <token>` (401), before MCP sees it."""

    def __init__(self, app: Any, token: str):
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self._authorised(scope):
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"www-authenticate", b'Bearer realm="omni"')]})
            await send({"type": "http.response.body",
                        "body": b'{"error": "missing or wrong bearer token in the Authorization header"}'})
            return
        await self._app(scope, receive, send)

    def _authorised(self, scope: dict[str, Any]) -> bool:
        given = dict(scope.get("headers") or []).get(b"authorization", b"")
        return hmac.compare_digest(given, self._expected)
