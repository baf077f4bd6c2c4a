"""Images by content hash: `/image/{sha256}` (the original bytes) and `/thumb/{sha256}` (a cached JPEG).

Only images in the database are served, found by their sha256; no URL ever takes a filesystem path.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse

from visextract.store.browse import is_image
from visextract.web.context import Context, WebContext
from visextract.web.params import Sha256

THUMB_SIDE = 320

router = APIRouter()


@router.get("/image/{sha256}")
def original(sha: Sha256, ctx: Context) -> FileResponse:
    if not is_image(ctx.store, sha):  # a known file that never decoded is not an image: never served
        raise HTTPException(404, "no such image")
    source = ctx.store.image_source(sha)
    if source is None or not holds(source, sha):
        raise HTTPException(404, "the image file is missing (no path holds this content any more)")
    return FileResponse(source, headers={"ETag": f'"{sha}"', "Cache-Control": "private, max-age=3600"})


def holds(path: Path, sha: str) -> bool:
    """Whether the file still holds that content (it may have been overwritten since the last run)."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest() == sha
    except OSError:
        return False


@router.get("/thumb/{sha256}")
def thumbnail(request: Request, sha: Sha256, ctx: Context) -> Response:
    """The cached preview (made on first request). Small enough to send from memory in one step."""
    if not is_image(ctx.store, sha):
        raise HTTPException(404, "no such image")
    etag = f'"{sha}-{THUMB_SIDE}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=31536000, immutable"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    cached = ctx.thumbs_dir / sha[:2] / f"{sha}-{THUMB_SIDE}.jpg"
    try:
        jpeg = cached.read_bytes()
    except FileNotFoundError:
        jpeg = make_thumbnail(ctx, sha, cached)
    return Response(jpeg, media_type="image/jpeg", headers=headers)


def make_thumbnail(ctx: WebContext, sha: str, target: Path) -> bytes:
    """Decode the original once and keep the preview (written atomically: readers never see half a file)."""
    from visextract.images import ImageLoadError
    from visextract.thumbnails import thumbnail_jpeg

    source = ctx.store.image_source(sha)
    if source is None:
        raise HTTPException(404, "the image file is missing (no path holds this content any more)")
    try:
        jpeg = thumbnail_jpeg(source, THUMB_SIDE, sha256=sha)
    except ImageLoadError as exc:
        raise HTTPException(404, f"cannot make a preview: {exc}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as handle:
        handle.write(jpeg)
    os.replace(handle.name, target)
    return jpeg
