"""The FastAPI application: HTML pages and the same data as JSON, one process (`visextract serve`).

    from visextract.web.app import WebConfig, create_app
    app = create_app(WebConfig(db="sqlite:///photos.db"))     # an ASGI app; `serve(config)` runs it

Routes live in `pages.py` (HTML), `api.py` (JSON) and `media.py` (images); the safety layers in
`security.py`. Routes only parse, call the store or the Python API, and render.
"""

from __future__ import annotations

from typing import Any

import jinja2
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from visextract.store import Store
from visextract.store.browse import refresh_statistics
from visextract.web.context import WEB_DIR, WebConfig, WebContext
from visextract.web.security import Security, SecurityMiddleware, is_loopback, require_csrf


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


async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """A malformed body or parameter: 422 in the same `{"errors": [{"field", "message"}]}` shape as reviews,
    or, for a page a browser asked for (e.g. `/?status=bogus`), a page naming what is wrong."""
    from visextract.web.pages import render

    errors = [
        {"field": ".".join(str(part) for part in error["loc"] if part != "body") or "body", "message": error["msg"]}
        for error in exc.errors()
    ]
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        problems = [f"{error['field'].removeprefix('query.')}: {error['message']}" for error in errors]
        return render(
            request, request.app.state.web, "problem.html", 422, nav="", heading="Bad address", problems=problems
        )
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
