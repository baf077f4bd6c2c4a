"""The web app's safety layers, each on its own:

- Host check: only the names the server is reached by (stops DNS-rebinding pages from reading it);
- Origin check: a request sent from another site's page is refused (403);
- token: off loopback, every request needs `Authorization: Bearer T` or the cookie `/?token=T` sets (401);
- body size: a request body over the limit is refused (413) before the app reads it;
- CSRF: every state-changing request needs `X-CSRF-Token` equal to the pages' `<meta name="csrf-token">` (403);
- response headers: a Content-Security-Policy that runs only the app's own scripts, no framing, no sniffing.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import HTTPException, Request
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "visextract_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address to bind) is only reachable from this machine."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Security:
    """What the safety layers check. `token=None` means no token is asked for (loopback only)."""

    token: str | None
    csrf_token: str
    allowed_hosts: frozenset[str] | None  # host names the server may be reached by; None: any
    max_body_bytes: int = 1 << 20

    @classmethod
    def for_host(cls, host: str, token: str | None, max_body_bytes: int = 1 << 20) -> Security:
        """Loopback binds answer only to loopback names; other binds need a token and accept any name."""
        allowed = None if not is_loopback(host) else LOOPBACK_NAMES | {host}
        return cls(token, secrets.token_urlsafe(32), allowed, max_body_bytes)

    def token_ok(self, headers: Headers) -> bool:
        if self.token is None:
            return True
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(value.strip().encode(), self.token.encode()):
            return True
        cookie = _cookies(headers).get(TOKEN_COOKIE, "")
        return bool(cookie) and secrets.compare_digest(cookie.encode(), self.token.encode())


class SecurityMiddleware:
    """Host, Origin, token and body-size checks in front of every request (pure ASGI, so streams stay streams)."""

    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        started = False
        refused = False  # the body grew past the limit: 413 was sent, the app's own answer is dropped

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
                extra = MutableHeaders(scope=message)
                extra.setdefault("content-security-policy", CONTENT_SECURITY_POLICY)
                extra.setdefault("x-content-type-options", "nosniff")
                extra.setdefault("x-frame-options", "DENY")
                extra.setdefault("referrer-policy", "no-referrer")
            await send(message)

        limit = self.security.max_body_bytes
        received = 0

        async def receive_bounded() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not started:
                    await _too_large(limit)(scope, receive, send_with_headers)
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, receive_bounded, send_with_headers)

    def _refusal(self, scope: Scope, headers: Headers) -> Response | None:
        security = self.security
        host = headers.get("host", "")
        if security.allowed_hosts is not None and _host_name(host) not in security.allowed_hosts:
            return JSONResponse({"detail": f"unknown host {host!r}: open the URL visextract serve printed"}, 403)
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"{scope.get('scheme', 'http')}://{host}".lower():
            return JSONResponse({"detail": "cross-origin request refused"}, 403)
        if security.token is not None and not security.token_ok(headers):
            return self._token_login(scope) or JSONResponse(
                {"detail": "a token is required: open the URL visextract serve printed (…/?token=…)"},
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > security.max_body_bytes):
            return _too_large(security.max_body_bytes)
        return None

    def _token_login(self, scope: Scope) -> Response | None:
        """`GET /?token=T` with the right token: set the cookie and drop the token from the address."""
        if scope["method"] not in SAFE_METHODS or self.security.token is None:
            return None
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = dict(query).get("token", "")
        if not given or not secrets.compare_digest(given.encode(), self.security.token.encode()):
            return None
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        response = RedirectResponse(scope["path"] + (f"?{rest}" if rest else ""), status_code=303)
        response.set_cookie(TOKEN_COOKIE, self.security.token, httponly=True, samesite="strict", path="/")
        return response


async def require_csrf(request: Request) -> None:
    """Depends: a state-changing request must carry the page's CSRF token in `X-CSRF-Token`."""
    if request.method in SAFE_METHODS:
        return
    security: Security = request.app.state.security
    given = request.headers.get(CSRF_HEADER, "")
    if not given or not secrets.compare_digest(given.encode(), security.csrf_token.encode()):
        raise HTTPException(403, "missing or wrong X-CSRF-Token header: send the page's csrf-token meta value")


def _too_large(limit: int) -> Response:
    return JSONResponse({"detail": f"request body over {limit} bytes"}, 413)


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _cookies(headers: Headers) -> dict[str, Any]:
    cookies = {}
    for part in headers.get("cookie", "").split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies[name] = value
    return cookies
