"""Who may call a visextract HTTP server (`serve`, `mcp --http`): anyone on loopback, else holders of a token.

    token = access_token(host, given_token)      # None on 127.0.0.1 without --token; generated off loopback
    app = RequireBearerToken(app, token) if token else app

The rule (DESIGN.md, "Web app" -> Safety): a server binds 127.0.0.1 by default. On any other host a token is
required: the one given with `--token`, or a random one that the command prints with the URL. Requests must
then send `Authorization: Bearer TOKEN`; without it they get 401 and reach nothing.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def access_token(host: str, token: str | None) -> str | None:
    """The token requests must carry: `token` when given, a new random one off loopback, else None."""
    if token is not None and not token.strip():
        from visextract.errors import UsageError

        raise UsageError("--token must not be empty")
    if token:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(24)


def bearer_matches(authorization: str | None, token: str) -> bool:
    """Whether an `Authorization` header value is `Bearer TOKEN` (compared in constant time)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


class RequireBearerToken:
    """ASGI middleware: HTTP requests without `Authorization: Bearer TOKEN` get 401 and never reach `app`."""

    def __init__(self, app: AsgiApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            headers = dict(scope.get("headers") or [])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if not bearer_matches(authorization, self.token):
                await _unauthorized(scope, send)
                return
        await self.app(scope, receive, send)


async def _unauthorized(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = json.dumps({"error": "unauthorized: send the header 'Authorization: Bearer TOKEN'"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="visextract"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
