"""The FastAPI application: HTML pages and the same data as JSON, one process (`visextract serve`).

    from visextract.web.app import WebConfig, create_app
    app = create_app(WebConfig(db="sqlite:///photos.db"))     # an ASGI app; `serve(config)` runs it

Routes live in `pages.py` (HTML), `api.py` (JSON) and `media.py` (images); the safety layers in
`security.py`. Routes only parse, call the store or the Python API, and render.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from visextract.store import Store
from visextract.store.browse import refresh_statistics
from visextract.web.security import Security, SecurityMiddleware, is_loopback, require_csrf

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


def create_app(config: WebConfig, store: Store | None = None) -> FastAPI:
    """The web app over the database at `config.db` (which must exist: serving never creates one)."""
    from visextract.extractor import default_artifacts_dir
    from visextract.query import open_store
    from visextract.store.readonly_sql import warn_about_privileges
    from visextract.web import api, media, pages

    if not is_loopback(config.host) and not config.token:
        raise ValueError("a token is required to serve off loopback: use WebConfig.with_token()")
    store = store or open_store(config.db)
    warn_about_privileges(store.url)
    refresh_statistics(store)
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(WEB_DIR / "templates"), autoescape=True)
    templates = Jinja2Templates(env=environment)
    thumbs_dir = config.thumbs_dir or default_artifacts_dir(config.db) / "thumbs"
    app = FastAPI(
        title="visextract",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(require_csrf)],
    )
    app.state.web = WebContext(config, store, templates, thumbs_dir)
    app.state.security = Security.for_host(config.host, config.token, config.max_body_bytes)
    templates.env.globals["static_url"] = _static_url(app.state.web)
    app.add_middleware(SecurityMiddleware, security=app.state.security)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(media.router)
    return app


def _static_url(context: WebContext) -> Any:
    def static_url(name: str) -> str:
        return f"/static/{name}?v={context.static_versions.get(name, '0')}"

    return static_url


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A malformed body or parameter: 422 in the same `{"errors": [{"field", "message"}]}` shape as reviews."""
    errors = [
        {"field": ".".join(str(part) for part in error["loc"] if part != "body") or "body", "message": error["msg"]}
        for error in exc.errors()
    ]
    return JSONResponse({"errors": errors}, 422)


def check_port_free(host: str, port: int) -> None:
    """A UsageError now, naming the port, when another program listens on it."""
    import socket

    from visextract.errors import UsageError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}): pass --port N or --host H") from None


def serve(config: WebConfig) -> None:
    """Run the app with uvicorn until Ctrl-C (the config must already carry its token when off loopback)."""
    import uvicorn

    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", proxy_headers=False)
