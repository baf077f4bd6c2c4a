"""What every web route needs: the server's config and the context handed in through `Depends`.

async def route(web: Context) -> ...: web.store, web.templates, web.config
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.templating import Jinja2Templates

from visextract.store import Store
from visextract.web.security import is_loopback

WEB_DIR = Path(__file__).parent
DEFAULT_PORT = 8765


@dataclass(frozen=True)
class WebConfig:
    """How `visextract serve` runs. Off loopback a token is required (generated when not given)."""

    db: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    max_body_bytes: int = 1 << 20
    thumbs_dir: Path | None = None  # default: `thumbs/` in the database's artifacts folder

    def with_token(self) -> WebConfig:
        """This config, with a generated token when the host is not loopback and none was given."""
        if self.token or is_loopback(self.host):
            return self
        return WebConfig(self.db, self.host, self.port, secrets.token_urlsafe(24), self.max_body_bytes, self.thumbs_dir)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")


@dataclass
class WebContext:
    """What every route needs, handed in through `Depends(web_context)`."""

    config: WebConfig
    store: Store
    templates: Jinja2Templates
    thumbs_dir: Path

    @cached_property
    def static_versions(self) -> dict[str, str]:
        """A content hash per static file, so browsers refetch exactly when a file changes."""
        return {
            path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:10]
            for path in (WEB_DIR / "static").iterdir()
            if path.is_file()
        }


async def web_context(request: Request) -> WebContext:
    """Depends: the app's context (async: plain dependencies need no trip through the thread pool)."""
    return request.app.state.web


Context = Annotated[WebContext, Depends(web_context)]
