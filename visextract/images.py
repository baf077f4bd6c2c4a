"""Finding image files under paths, and loading one: bytes, sha256, decode, EXIF orientation."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from visextract.errors import UsageError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)


class ImageLoadError(Exception):
    """This file cannot be used as an image; the message is the one-line reason stored with it."""


def find_images(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Image files under `paths`, recursively, sorted per folder, each absolute path once.

    Files named explicitly are taken whatever their extension. Symlinked files are kept under their
    own path; symlinked folders are followed, but a folder already visited (a symlink loop) is not
    entered again.
    """
    seen_dirs: set[str] = set()
    seen_files: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if not path.exists() and not path.is_symlink():
            raise UsageError(f"no such file or folder: {raw}")
        if path.is_dir():
            yield from _walk(path, seen_dirs, seen_files)
        elif path not in seen_files:
            seen_files.add(path)
            yield path


def _walk(folder: Path, seen_dirs: set[str], seen_files: set[Path]) -> Iterator[Path]:
    real = os.path.realpath(folder)
    if real in seen_dirs:
        return
    seen_dirs.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    subfolders = []
    for entry in entries:
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError:
            is_dir = False
        if is_dir:
            subfolders.append(path)
        elif path.suffix.lower() in IMAGE_EXTENSIONS and path not in seen_files:
            seen_files.add(path)
            yield path
    for sub in subfolders:
        yield from _walk(sub, seen_dirs, seen_files)


@dataclass(frozen=True)
class ImageFile:
    """A file's bytes and content hash, read before any decoding."""

    path: Path
    data: bytes
    sha256: str

    @property
    def size_bytes(self) -> int:
        return len(self.data)


def read_image_file(path: Path) -> ImageFile:
    """Read and hash a file. Raises ImageLoadError with a one-line reason."""
    try:
        data = path.read_bytes()
    except PermissionError:
        raise ImageLoadError("permission denied: the file cannot be read") from None
    except IsADirectoryError:
        raise ImageLoadError("is a directory") from None
    except OSError as exc:
        raise ImageLoadError(f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise ImageLoadError("empty file (0 bytes)")
    return ImageFile(path=path, data=data, sha256=hashlib.sha256(data).hexdigest())


@dataclass
class LoadedImage:
    """A decoded image, upright (EXIF orientation applied), in RGB.

    `rgb` is a working copy whose longest side is at most `max_side`; `scale` maps its pixel
    coordinates back to the original upright image (`original = working * scale`).
    """

    file: ImageFile
    format: str
    width: int
    height: int
    rgb: Image.Image
    scale: float
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def sha256(self) -> str:
        return self.file.sha256


_EXIF_KEEP = {"DateTimeOriginal", "DateTime", "Make", "Model", "Software", "LensModel"}


def decode_image(file: ImageFile, *, max_side: int, max_pixels: int) -> LoadedImage:
    """Decode, orient and convert an image file. Raises ImageLoadError with a one-line reason."""
    Image.MAX_IMAGE_PIXELS = max_pixels  # PIL checks it in open(), before decoding anything
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(file.data))
            fmt = image.format or "unknown"
            width, height = image.size
            metadata = _exif_metadata(image)
            if fmt == "JPEG" and max(width, height) > 2 * max_side:
                shrink = max_side / max(width, height)
                image.draft("RGB", (int(width * shrink), int(height * shrink)))  # fast DCT downscale
            image.seek(0)  # first frame of animations
            upright = ImageOps.exif_transpose(image)
            rgb = _to_rgb(upright)
        except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageLoadError(_short_reason(exc)) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageLoadError(f"cannot decode image: {_short_reason(exc)}") from None
    # the upright size in original pixels (EXIF rotation may swap width and height)
    if _swaps_axes(image):
        width, height = height, width
    scale = max(width, height) / max(rgb.size)
    if max(rgb.size) > max_side:
        rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        scale = max(width, height) / max(rgb.size)
    return LoadedImage(file=file, format=fmt, width=width, height=height, rgb=rgb, scale=scale, metadata=metadata)


def _swaps_axes(image: Image.Image) -> bool:
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return orientation in (5, 6, 7, 8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB for every mode: alpha composited on white, 16-bit scaled, CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        array = np.asarray(image, dtype=np.float64)
        peak = array.max() or 1.0
        image = Image.fromarray((array * (255.0 / max(peak, 255.0))).astype("uint8"), "L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode != "RGB":
        image = image.convert("RGB")
    image.load()
    return image


def _exif_metadata(image: Image.Image) -> dict[str, str]:
    try:
        exif = image.getexif()
        tags = {**exif, **exif.get_ifd(ExifTags.IFD.Exif)}
    except Exception:  # broken EXIF must not fail an otherwise good image
        return {}
    out = {}
    for tag, value in tags.items():
        name = ExifTags.TAGS.get(tag)
        if name in _EXIF_KEEP and isinstance(value, str | int | float):
            out[name] = str(value).strip("\x00 ")
    return out


def _short_reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, UnidentifiedImageError):
        return "not an image file (unrecognised format)"
    if isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
        return (
            f"image too large (possible decompression bomb): {text} "
            "Raise VISEXTRACT_MAX_IMAGE_PIXELS if the image is genuine."
        )
    return text[:300]
